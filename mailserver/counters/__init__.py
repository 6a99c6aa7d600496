"""Counters that protect the server, in one place for every worker.

Two kinds (``Counters``):

* connection slots, per listener and per client IP (``limits.max_connections``,
  ``limits.max_connections_per_ip``; RFC 5321 §4.5.3.2 and RFC 3501 leave the
  limits to us): ``acquire`` at accept, ``release`` at close;
* new connections per minute per client IP and per network (``ConnectionRate``
  over ``rate.RateTable``; ``limits.connections_per_minute_per_ip`` /
  ``_per_network``, ``limits.trusted_networks`` skip them), checked with the
  slot.  A worker spends its spare slots only on the rate credit the service
  gave with them (connections counted in the rate in advance, granted only
  while the rate is at or below half its limits); once spent, a spare costs a
  ``C`` round trip for the rate alone, so the rate holds across workers;
* failed logins per client IP (``auth/throttle.py``): ``auth_failure`` counts
  one and answers the delay to impose before the failure reply.

With ``workers = 1`` the table lives in the process (``LocalCounters``: no
I/O, no await that suspends).  With more workers it lives in the supervisor
(``service.py``) and each worker reaches it over one unix socket
(``client.py``).  Far from a limit, the service hands a worker a few spare
slots with the one it asked for (``ConnectionSlots.acquire_many``); the
worker spends them on the next connections of that client and keeps those
given back at close, so a client that reconnects (one connection per
message) costs no round trip; unused spares go back after a second.  Near a
limit there are no spares: every slot is one round trip, and the limit is
exact.  Spares are held slots in the service's table, so a limit is never
exceeded; at worst a client near its limit is refused while another worker
still holds a spare of its for up to a second.  One round trip per failed
login.  Slots a worker holds are released when its connection to the
service ends, so a worker that dies gives its slots back.  Counting per
worker would multiply every limit by the number of workers.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from mailserver.auth.throttle import AuthThrottle
from mailserver.config import Limits
from mailserver.counters.rate import RateEntry, RateTable


class Counters(Protocol):
    """What listeners and AUTH/LOGIN use (in-process or the supervisor's)."""

    async def acquire(self, scope: str, ip: str, max_total: int, max_per_ip: int) -> bool:
        """Take one connection slot of ``scope`` (a listener name) for ``ip``:
        False (and nothing taken) when ``scope`` already holds ``max_total``
        or ``ip`` holds ``max_per_ip`` of it."""
        ...

    def release(self, scope: str, ip: str) -> None:
        """Give back a slot ``acquire`` took (once per successful acquire)."""
        ...

    async def auth_failure(self, ip: str) -> float:
        """Count one failed login of ``ip``; the delay (seconds) to impose now."""
        ...

    async def rate(self, checks: tuple[tuple[str, int, str], ...], n: int = 1) -> bool:
        """Count ``n`` events under every ``(window, limit, key)`` of ``checks``
        (window: ``"minute"`` or ``"day"``) unless one would pass its limit: then
        count nothing and answer False (``RateLimits.take``)."""
        ...

    def reconfigure(self, limits: Limits) -> None:
        """SIGHUP: apply the reloaded ``[limits]`` from the next connection on."""
        ...

    async def close(self) -> None:
        """Let go of the counters (the in-process table: nothing to do)."""
        ...


@functools.lru_cache(maxsize=4096)
def host_of(ip: str) -> str:
    """What counts as one client for the per-IP limits: an IPv4 address (/32),
    or the IPv6 /64 it lies in (a host is routinely given a whole /64, RFC
    7421, and could otherwise take a fresh address for every connection).
    ``ip`` itself when it does not parse (a unix socket peer)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if addr.version == 4:
        return ip
    return str(ipaddress.ip_network((addr, 64), strict=False))


@functools.lru_cache(maxsize=4096)
def network_of(ip: str) -> str:
    """The network ``ip`` belongs to for rate limits: IPv4 /24, IPv6 /48 (the
    tier above ``host_of``: a site's usual allocation).  ``ip`` itself when it
    does not parse (a unix socket peer)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network((addr, prefix), strict=False))


class ConnectionRate:
    """New connections per minute per IP and per network (``limits.
    connections_per_minute_per_ip`` / ``_per_network``; 0 turns one off).  Sans-IO
    over ``RateTable``; ``clock`` gives wall seconds."""

    def __init__(self, per_ip: int, per_network: int, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.time,
                 trusted: tuple[str, ...] = ()) -> None:
        self.set_trusted(trusted)
        self.per_ip = per_ip
        self.per_network = per_network
        self.table = RateTable(60.0, max_keys)
        self._clock = clock

    def admit(self, ip: str, n: int = 1) -> bool:
        """Count ``n`` new connections of ``ip`` unless that passes a limit (then
        count nothing and answer False).  Trusted clients are always admitted."""
        if self.is_trusted(ip):
            return True
        now = self._clock()
        table = self.table
        net = "net:" + network_of(ip) if self.per_network else ""
        if net and table.peek(net, now) + n > self.per_network:
            return False
        if self.per_ip and not table.count("ip:" + host_of(ip), now, self.per_ip, n):
            return False
        if net:
            table.count(net, now, None, n)
        return True

    def set_trusted(self, trusted: tuple[str, ...]) -> None:
        """The networks (CIDR strings) whose clients are never limited."""
        self.trusted = tuple(ipaddress.ip_network(n, strict=False) for n in trusted)
        self._trusted_cache: dict[str, bool] = {}

    def is_trusted(self, ip: str) -> bool:
        """Whether ``ip`` is in ``limits.trusted_networks``."""
        if not self.trusted:
            return False
        hit = self._trusted_cache.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
                hit = any(addr in net for net in self.trusted)
            except ValueError:
                hit = False
            if len(self._trusted_cache) >= 4096:  # bounded under a spray
                self._trusted_cache.clear()
            self._trusted_cache[ip] = hit
        return hit

    def headroom(self, ip: str) -> int:
        """How many more connections ``ip`` may open while staying at or below half
        of each rate limit (spares are granted only within it)."""
        room = 1 << 30
        if self.is_trusted(ip):
            return room
        now = self._clock()
        if self.per_ip:
            room = min(room, int(self.per_ip // 2 - self.table.peek("ip:" + host_of(ip), now)))
        if self.per_network:
            net = "net:" + network_of(ip)
            room = min(room, int(self.per_network // 2 - self.table.peek(net, now)))
        return max(0, room)


#: Windows of ``RateLimits``, in seconds.
WINDOWS = {"minute": 60.0, "day": 86400.0}


class RateLimits:
    """Message and recipient rates (per IP, per account) in a few ``RateTable``s, one
    per window in ``WINDOWS``.  Sans-IO; ``clock`` gives wall seconds."""

    def __init__(self, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.tables = {name: RateTable(w, max_keys) for name, w in WINDOWS.items()}
        self._clock = clock

    def take(self, checks: tuple[tuple[str, int, str], ...], n: int = 1) -> bool:
        """Count ``n`` under each ``(window, limit, key)`` unless one would pass its
        limit (then nothing is counted: False).  Raises ``KeyError`` for an unknown
        window."""
        now = self._clock()
        tables = self.tables
        for window, limit, key in checks:
            if tables[window].peek(key, now) + n > limit:
                return False
        for window, _, key in checks:
            tables[window].count(key, now, None, n)
        return True


class ConnectionSlots:
    """The slot table: held slots per scope and per (scope, ip), and the rate of new
    connections (``ConnectionRate``, when given).  Sans-IO."""

    def __init__(self, rate: ConnectionRate | None = None) -> None:
        # Plain dicts, not Counters: Counter.__missing__ is a Python call per new key.
        self._total: dict[str, int] = {}
        self._per_ip: dict[tuple[str, str], int] = {}
        self.rate = rate

    def acquire(self, scope: str, ip: str, max_total: int, max_per_ip: int) -> bool:
        """Take one slot of ``scope`` for ``ip``; False (nothing taken) when either count
        is already at its limit, or ``ip`` opens connections too fast.
        """
        total = self._total.get(scope, 0)
        key = (scope, ip)
        count = self._per_ip.get(key, 0)
        if total >= max_total or count >= max_per_ip:
            return False
        if self.rate is not None and not self.rate.admit(ip):
            return False
        self._total[scope] = total + 1
        self._per_ip[key] = count + 1
        return True

    def acquire_many(self, scope: str, ip: str, max_total: int, max_per_ip: int,
                     want: int) -> int:
        """Take one slot as ``acquire`` does, plus up to ``want - 1`` spares while
        the counts stay at or below half of each limit (spares never crowd a
        limit).  Returns how many were taken: 0 (refused) to ``want``."""
        if not self.acquire(scope, ip, max_total, max_per_ip):
            return 0
        total = self._total[scope]
        key = (scope, ip)
        count = self._per_ip[key]
        spares = max(0, min(want - 1, max_total // 2 - total, max_per_ip // 2 - count))
        if spares:
            self._total[scope] = total + spares
            self._per_ip[key] = count + spares
        return 1 + spares

    def rate_credit(self, ip: str, want: int) -> int:
        """Connections ``ip`` may open on a worker's spare slots without asking again
        (``-1``: no rate applies): up to ``want``, only while the rate stays at or
        below half its limits, and counted in the rate now (a credit left unused
        over-counts a little, far from the limit)."""
        rate = self.rate
        if rate is None or rate.is_trusted(ip):
            return -1
        credit = min(want, rate.headroom(ip))
        if credit:
            rate.admit(ip, credit)
        return credit

    def rate_admit(self, ip: str, want: int) -> tuple[bool, int]:
        """Count one new connection of ``ip`` that a worker serves on a spare slot it
        holds, plus a fresh ``rate_credit``: (admitted, credit)."""
        rate = self.rate
        if rate is None or rate.is_trusted(ip):
            return True, -1
        if not rate.admit(ip):
            return False, 0
        return True, self.rate_credit(ip, want)

    def release(self, scope: str, ip: str, n: int = 1) -> None:
        """Give back ``n`` slots of ``scope`` held by ``ip`` (counts never go below zero)."""
        key = (scope, ip)
        count = self._per_ip.get(key, 0) - n
        if count > 0:
            self._per_ip[key] = count
        else:
            self._per_ip.pop(key, None)
        total = self._total.get(scope, 0) - n
        if total > 0:
            self._total[scope] = total
        else:
            self._total.pop(scope, None)

    def held(self, scope: str, ip: str | None = None) -> int:
        """Slots held in ``scope`` (by ``ip`` when given)."""
        if ip is None:
            return self._total.get(scope, 0)
        return self._per_ip.get((scope, ip), 0)


#: File (under ``data_dir/state``) of the day windows kept across restarts.
STATE_FILE = "limits.json"


def save_rates(rates: RateLimits, path: Path) -> None:
    """Write the windows longer than a minute (``day``) to ``path`` (JSON; written to
    a temporary file, synced and renamed, so a crash leaves the old file or the
    new).  Raises ``OSError``."""
    now = rates._clock()
    saved = {"day": [[e.key, e.start, e.previous, e.current]
                     for e in rates.tables["day"].dump(now)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(saved, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_rates(rates: RateLimits, path: Path) -> None:
    """Read what ``save_rates`` wrote (a missing or damaged file: start from zero)."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        entries = [RateEntry(str(k), float(t), int(p), int(c)) for k, t, p, c in saved["day"]]
    except (OSError, ValueError, KeyError, TypeError):
        return
    rates.tables["day"].restore(entries)


def _name_of(key: str) -> str:
    return key.split(":", 1)[1] if ":" in key else key


def show(counters: LocalCounters, name: str = "") -> list[dict[str, object]]:
    """Live rate entries (``limits show``): every one, or those of ``name`` (an IP,
    a network such as ``192.0.2.0/24``, or an account).  Each: ``window``,
    ``kind`` (ip/net: connections, msg, rcpt, acct), ``name``, ``count`` (the
    sliding estimate)."""
    tables = [("minute", counters.slots.rate.table)] if counters.slots.rate else []
    tables += list(counters.rates.tables.items())
    now = time.time()
    out: list[dict[str, object]] = []
    for window, table in tables:
        for e in table.entries(now):
            if name and _name_of(e.key) != name:
                continue
            out.append({"window": window, "kind": e.key.split(":", 1)[0],
                        "name": _name_of(e.key), "count": round(table.peek(e.key, now), 2)})
    return out


def reset(counters: LocalCounters, name: str) -> int:
    """Forget every rate entry of ``name`` (``limits reset``); how many were dropped."""
    tables = [counters.slots.rate.table] if counters.slots.rate else []
    tables += list(counters.rates.tables.values())
    dropped = 0
    for table in tables:
        for e in table.entries(time.time()):
            if _name_of(e.key) == name:
                dropped += table.reset(e.key)
    return dropped


class LocalCounters:
    """``Counters`` of a single-process daemon: the tables in this process.

    ``state_file``: where the day windows are kept across restarts (read now,
    written by ``close``); None keeps nothing."""

    def __init__(self, limits: Limits, state_file: Path | None = None) -> None:
        rate = None
        if limits.connections_per_minute_per_ip or limits.connections_per_minute_per_network:
            rate = ConnectionRate(limits.connections_per_minute_per_ip,
                                  limits.connections_per_minute_per_network,
                                  trusted=limits.trusted_networks)
        self.slots = ConnectionSlots(rate)
        self.rates = RateLimits()
        self.state_file = state_file
        if state_file is not None:
            load_rates(self.rates, state_file)
        self.throttle = AuthThrottle(limits.auth_failure_delay, limits.auth_failure_delay_max)

    def reconfigure(self, limits: Limits) -> None:
        """SIGHUP: take the new ``[limits]`` that these tables enforce
        themselves (connections per minute per IP and per network, trusted
        networks, AUTH failure delays); the counts so far are kept.  The
        other limits travel with each worker's request and follow its own
        reload."""
        per_ip = limits.connections_per_minute_per_ip
        per_net = limits.connections_per_minute_per_network
        rate = self.slots.rate
        if not (per_ip or per_net):
            self.slots.rate = None
        elif rate is None:
            self.slots.rate = ConnectionRate(per_ip, per_net, trusted=limits.trusted_networks)
        else:
            rate.per_ip, rate.per_network = per_ip, per_net
            rate.set_trusted(limits.trusted_networks)
        self.throttle.base = limits.auth_failure_delay
        self.throttle.maximum = limits.auth_failure_delay_max

    async def acquire(self, scope: str, ip: str, max_total: int, max_per_ip: int) -> bool:
        """``Counters.acquire``: the in-process table, no suspension."""
        return self.slots.acquire(scope, ip, max_total, max_per_ip)

    def release(self, scope: str, ip: str) -> None:
        """``Counters.release``."""
        self.slots.release(scope, ip)

    async def auth_failure(self, ip: str) -> float:
        """``Counters.auth_failure``: the delay in seconds from ``AuthThrottle``."""
        return self.throttle.record_failure(ip)

    async def rate(self, checks: tuple[tuple[str, int, str], ...], n: int = 1) -> bool:
        """``Counters.rate``: the in-process tables, no suspension."""
        return self.rates.take(checks, n)

    async def close(self) -> None:
        """``Counters.close``: keep the day windows in ``state_file`` (if any)."""
        if self.state_file is not None:
            try:
                save_rates(self.rates, self.state_file)
            except OSError:
                pass  # a limit forgotten errs towards letting clients through
        return None
