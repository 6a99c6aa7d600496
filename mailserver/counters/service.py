"""The supervisor's counter service (see ``__init__.py`` and ``wire.py``).

A unix stream socket ``data_dir/run/counters.stream``, apart from the store's
writer service so a counter never waits behind a commit.  Only the daemon's
user may connect (socket 0600, in the 0700 run directory; the peer's uid is
checked with SO_PEERCRED).  Each connection (one per worker) remembers the
slots it holds; when it ends (the worker exited or died) they are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any, cast

import structlog

from mailserver.analytics import FlowEvent
from mailserver.analytics.hub import FlowHub
from mailserver.analytics.remote import follow
from mailserver.config import AnalyticsSettings, Limits
from mailserver.counters import STATE_FILE, LocalCounters, reset, show, wire
from mailserver.store.writer_service import make_private_dir, peer_uid

log = structlog.get_logger("mailserver.counters")


class _Peer(asyncio.Protocol):
    """One worker's connection."""

    def __init__(self, service: CounterService) -> None:
        self._service = service
        self._transport: asyncio.Transport | None = None
        self._buf = b""
        self._held: dict[tuple[str, str], int] = {}
        self._follow: asyncio.Task[None] | None = None  # a W connection's writer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        try:
            uid = peer_uid(transport.get_extra_info("socket"))
        except OSError:
            uid = -1
        if uid != os.geteuid():
            log.warning("counters_peer_refused", peer_uid=uid)
            transport.abort()
            return
        if self._service.closed:  # accepted just before the close
            transport.abort()
            return
        self._transport = transport
        self._service.peers.add(self)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._follow is not None:
            self._follow.cancel()
        self._service.peers.discard(self)
        slots = self._service.counters.slots
        for (scope, ip), n in self._held.items():
            slots.release(scope, ip, n)
        self._held.clear()

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > (wire.MAX_EVENT_LINE if self._buf[:1] in b"EQW" else wire.MAX_LINE):
            log.warning("counters_peer_dropped", error="line too long")
            self._transport.abort()
            return
        out: list[bytes] = []
        for line in lines:
            try:
                answer = self._request(line.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                log.warning("counters_peer_dropped", error="bad request")
                self._transport.abort()
                return
            if answer is not None:
                out.append(answer)
        if out:
            self._transport.write(b"".join(out))

    def _request(self, line: str) -> bytes | None:
        counters = self._service.counters
        kind = line[:1]
        if kind == "A":
            _, max_total, max_per_ip, want, ip, scope = line.split(" ", 5)
            taken = counters.slots.acquire_many(scope, ip, int(max_total), int(max_per_ip),
                                                max(1, min(int(want), wire.MAX_WANT)))
            if taken:
                key = (scope, ip)
                self._held[key] = self._held.get(key, 0) + taken
            credit = counters.slots.rate_credit(ip, wire.MAX_WANT) if taken > 1 else 0
            return b"%d %d\n" % (taken, credit)
        if kind == "R":
            _, count, ip, scope = line.split(" ", 3)
            key = (scope, ip)
            held = self._held.get(key, 0)
            n = min(int(count), held)  # no more than this worker holds
            if n <= 0:
                return None  # not ours to give back
            if n == held:
                del self._held[key]
            else:
                self._held[key] = held - n
            counters.slots.release(scope, ip, n)
            return None
        if kind == "T":
            _, count, *items = line.split(" ")
            checks: list[tuple[str, int, str]] = []
            for item in items:
                window, limit, name = item.split(":", 2)  # name may hold ":" (IPv6)
                checks.append((window, int(limit), name))
            try:
                ok = counters.rates.take(tuple(checks), int(count))
            except KeyError:
                raise ValueError("unknown rate window") from None
            return b"1\n" if ok else b"0\n"
        if kind == "S":  # limits show [NAME]: one JSON line
            return json.dumps(show(counters, line[2:].strip())).encode() + b"\n"
        if kind == "X":  # limits reset NAME
            return b"%d\n" % reset(counters, line[2:].strip())
        if kind == "C":
            _, ip = line.split(" ", 1)
            ok, credit = counters.slots.rate_admit(ip, wire.MAX_WANT)
            return b"%d %d\n" % (ok, credit)
        if kind in "EQW":
            return self._flow(kind, line[2:])
        if kind == "F":
            _, ip = line.split(" ", 1)
            return f"{counters.throttle.record_failure(ip)!r}\n".encode()
        raise ValueError(f"unknown request {kind!r}")

    def _flow(self, kind: str, payload: str) -> bytes | None:
        """``E``/``Q``/``W`` (``wire.py``): the mail-flow hub (``analytics/``)."""
        hub = self._service.hub
        obj = json.loads(payload)  # ValueError: the peer is dropped
        if hub is None:  # analytics off: events dropped, empty answers
            return None if kind == "E" else b"null\n" if kind == "Q" else None
        if kind == "E":
            try:
                hub.add_many([FlowEvent.from_json(e) for e in obj])
            except (KeyError, TypeError) as exc:
                raise ValueError("bad event") from exc
            return None
        if kind == "Q":
            if obj.get("op") == "stats":
                answer: Any = hub.stats()
            else:
                answer = hub.query(float(obj["since"]), float(obj["until"]),
                                   dict(obj.get("filters") or {}), int(obj.get("after", 0)),
                                   int(obj.get("limit", 100)))
            return json.dumps(answer, separators=(",", ":")).encode() + b"\n"
        if self._follow is None:
            self._follow = asyncio.ensure_future(self._stream(
                hub, int(obj.get("after", 0)), dict(obj.get("filters") or {})))
        return None

    async def _stream(self, hub: FlowHub, after: int, filters: dict[str, str]) -> None:
        async for event in follow(hub, after, filters):
            transport = self._transport
            if transport is None:
                return
            transport.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")


class CounterService:
    """The tables, served on ``run_dir/counters.stream`` (``start``; ``close``)."""

    def __init__(self, counters: LocalCounters, server: asyncio.Server, path: Path,
                 hub: FlowHub | None = None) -> None:
        self.counters = counters
        self.hub = hub  # every worker's mail-flow events (None: analytics off)
        self._flusher: asyncio.Task[None] | None = (
            None if hub is None else asyncio.ensure_future(hub.run()))
        self.peers: set[_Peer] = set()
        self.closed = False
        self.path = path
        self._server = server

    @classmethod
    async def start(cls, run_dir: Path, limits: Limits,
                    analytics: AnalyticsSettings | None = None) -> CounterService:
        """Listen on ``run_dir/counters.stream``; with ``analytics`` enabled, keep
        the daemon's ``FlowHub`` (files in ``data_dir/analytics``).  Raises ``OSError``."""
        make_private_dir(run_dir)
        path = run_dir / wire.SERVICE_NAME
        path.unlink(missing_ok=True)
        counters = LocalCounters(limits, run_dir.parent / "state" / STATE_FILE)
        holder: list[CounterService] = []
        server = await asyncio.get_running_loop().create_unix_server(
            lambda: _Peer(holder[0]), str(path))
        os.chmod(path, 0o600)
        hub = None
        if analytics is not None and analytics.enabled:
            hub = FlowHub(run_dir.parent / "analytics", retention_days=analytics.retention_days,
                          raw_days=analytics.raw_days)
        service = cls(counters, server, path, hub)
        holder.append(service)
        return service

    async def close(self) -> None:
        """Stop listening, cut every worker's connection and remove the socket file."""
        self.closed = True
        self._server.close()
        # wait_closed waits for every connection (Python >= 3.11.6): cut them,
        # again for one accepted while we waited, as the workers are gone or going.
        while True:
            for peer in list(self.peers):
                peer.abort()
            try:
                async with asyncio.timeout(0.1):
                    await self._server.wait_closed()
                break
            except TimeoutError:
                continue
        self.path.unlink(missing_ok=True)
        if self._flusher is not None:
            self._flusher.cancel()  # it flushes once more on its way out
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.counters.close()  # the day windows, kept for the next start
