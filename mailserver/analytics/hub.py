"""The flow hub: per-minute aggregates, rolling windows, raw events, subscribers.

One per daemon (in the process with ``workers = 1``, in the supervisor with
more).  ``add`` is memory only; ``flush`` (once a second, by ``run``) writes
what is new to two append-only JSON-lines files per UTC day under
``data_dir/analytics``:

* ``events-YYYYMMDD.jsonl``: each event with its id (kept ``raw_days``, 7 by
  default) for ``/api/v1/events`` — about 230 bytes per event; a message
  received for one local account makes two (received, delivered): about
  0.5 GB per million messages, bounded by the retention;
* ``minutes-YYYYMMDD.jsonl``: one line per closed minute (kept
  ``retention_days``, 30 by default): counts by (kind, direction, domain,
  result) — at most ``MAX_KEYS`` keys —, received messages by reverse-path
  domain (as many at most), and a DDSketch per latency.  Its size
  grows with minutes, not messages: at most ~1440 lines a day (a few MB a
  day at the key bound, far less in practice), so about 0 bytes per million
  messages beyond the day's bound.

At start the minutes of the last 24 hours are read back, so a restart keeps
the windows.  Files older than their retention are deleted at each new day.

Event ids are integers that only grow (microseconds since the epoch, bumped
by one on a tie), so they survive restarts: the SSE ``Last-Event-ID`` and the
``/events`` cursor are such ids.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ddsketch import DDSketch

from mailserver.analytics import FlowEvent, Kind

#: Relative accuracy of the latency sketches (1 %: p99 within 1 % of the truth).
ACCURACY = 0.01
#: Windows of ``stats``: name -> minutes.
WINDOWS = {"1m": 1, "1h": 60, "24h": 1440}
#: Latency sketches: name -> the event kind that carries it.
LATENCIES = {"data": Kind.RECEIVED, "local": Kind.DELIVERED, "remote": Kind.ATTEMPT}
#: Most distinct (kind, direction, domain, result) keys in one minute; past it the
#: domain is counted as "(other)" (a spray of domains must not grow memory or files).
MAX_KEYS = 2000
#: Sender domains a window lists (the most frequent first).
TOP = 20
#: Raw events kept in memory for SSE resumption and fresh queries.
RING = 10_000
QUANTILES = (0.5, 0.95, 0.99)


def sketch_dump(s: DDSketch) -> dict[str, Any]:
    """A sketch as JSON (positive store only: latencies are never negative)."""
    store = s._store
    bins = {str(store.offset + i): c for i, c in enumerate(store.bins) if c}
    return {"bins": bins, "zero": s._zero_count, "count": s._count, "sum": s._sum,
            "min": s._min, "max": s._max}


def sketch_load(obj: dict[str, Any]) -> DDSketch:
    """The inverse of ``sketch_dump``.  Raises ``ValueError``/``KeyError``/``TypeError``."""
    s = DDSketch(ACCURACY)
    for key, count in obj["bins"].items():
        s._store.add(int(key), float(count))
    s._zero_count = float(obj["zero"])
    s._count = float(obj["count"])
    s._sum = float(obj["sum"])
    s._min = float(obj["min"])
    s._max = float(obj["max"])
    return s


class Minute:
    """The aggregate of one minute: counts by key and one sketch per latency."""

    __slots__ = ("start", "counts", "sketches", "bytes", "senders")

    def __init__(self, start: int) -> None:
        self.start = start  # POSIX seconds, a multiple of 60
        self.counts: dict[tuple[str, str, str, str], int] = {}
        self.sketches: dict[str, DDSketch] = {}
        self.bytes = 0
        #: Received messages by reverse-path domain (at most ``MAX_KEYS``).
        self.senders: dict[str, int] = {}

    def add(self, e: FlowEvent) -> None:
        """Count ``e`` (and its latency in the matching sketch)."""
        key = (e.kind.value, e.direction, e.domain, e.result)
        counts = self.counts
        if key not in counts and len(counts) >= MAX_KEYS:
            key = (e.kind.value, e.direction, "(other)", e.result)
        counts[key] = counts.get(key, 0) + 1
        if e.kind is Kind.RECEIVED:
            self.bytes += e.size
            if e.sender:
                senders = self.senders
                sender = e.sender if e.sender in senders or len(senders) < MAX_KEYS \
                    else "(other)"
                senders[sender] = senders.get(sender, 0) + 1
        if e.latency is not None:
            for name, kind in LATENCIES.items():
                if kind is e.kind and (kind is not Kind.ATTEMPT or e.result == "ok"):
                    s = self.sketches.get(name)
                    if s is None:
                        s = self.sketches[name] = DDSketch(ACCURACY)
                    s.add(max(0.0, e.latency))

    def to_json(self) -> dict[str, Any]:
        """One line of ``minutes-*.jsonl``."""
        return {"start": self.start, "bytes": self.bytes,
                "counts": [[*k, n] for k, n in self.counts.items()],
                "senders": [[d, n] for d, n in self.senders.items()],
                "sketches": {n: sketch_dump(s) for n, s in self.sketches.items()}}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Minute:
        """The inverse of ``to_json``."""
        m = cls(int(obj["start"]))
        m.bytes = int(obj.get("bytes", 0))
        m.senders = {str(d): int(n) for d, n in obj.get("senders", [])}
        for kind, direction, domain, result, n in obj["counts"]:
            m.counts[(kind, direction, domain, result)] = int(n)
        m.sketches = {n: sketch_load(s) for n, s in obj["sketches"].items()}
        return m


def _day(t: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(t))


def matches(obj: dict[str, Any], filters: dict[str, str]) -> bool:
    """Whether an event (JSON form) has every ``field: value`` of ``filters`` (a
    value may list alternatives separated by commas; domains compare lower-case)."""
    for field, want in filters.items():
        if not want:
            continue
        have = str(obj.get(field, ""))
        if field == "domain":
            have, want = have.lower(), want.lower()
        if have not in want.split(","):
            return False
    return True


class FlowHub:
    """The aggregates and raw events of the whole daemon (see the module docstring).

    ``directory``: where the files go (None: memory only); ``clock``: wall seconds.
    """

    def __init__(self, directory: Path | None, *, retention_days: int = 30,
                 raw_days: int = 7, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.retention_days = retention_days
        self.raw_days = raw_days
        self._clock = clock
        self.minutes: collections.OrderedDict[int, Minute] = collections.OrderedDict()
        self.ring: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(maxlen=RING)
        self.last_id = 0
        self._pending: list[tuple[float, str]] = []  # (time, line) not yet written
        self._written_minute = 0  # minutes before this one are in the files
        self._changed: asyncio.Event | None = None
        self._day = ""
        if directory is not None:
            self._load()

    # -- in ------------------------------------------------------------------------

    def add(self, e: FlowEvent) -> None:
        """Count one event (memory only; written by the next ``flush``)."""
        start = int(e.time // 60 * 60)
        m = self.minutes.get(start)
        if m is None:
            m = self.minutes[start] = Minute(start)
            if len(self.minutes) > 1 and next(reversed(self.minutes)) != start:
                self.minutes = collections.OrderedDict(sorted(self.minutes.items()))
        m.add(e)
        eid = max(self.last_id + 1, int(e.time * 1_000_000))
        self.last_id = eid
        obj = e.to_json()
        obj["id"] = eid
        self.ring.append((eid, obj))
        if self.directory is not None:
            self._pending.append((e.time, json.dumps(obj, separators=(",", ":"))))
        ev = self._changed
        if ev is not None and not ev.is_set():
            ev.set()

    def add_many(self, events: list[FlowEvent]) -> None:
        """``add`` each of ``events``."""
        for e in events:
            self.add(e)

    # -- out -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The rolling windows (``WINDOWS``): per window, totals by kind, counts by
        direction, domain and result (``by``: ``[kind, direction, domain, result,
        count]`` rows), received bytes, the ``TOP`` reverse-path domains of
        received mail (``senders``: ``[domain, count]``, most first), and
        p50/p95/p99 of each latency (seconds; null without samples), merged
        from the minutes' sketches."""
        now = self._clock()
        self._expire(now)
        out: dict[str, Any] = {"time": now, "windows": {}}
        for name, span in WINDOWS.items():
            since = now - span * 60
            counts: dict[tuple[str, str, str, str], int] = {}
            sketches: dict[str, DDSketch] = {}
            senders: dict[str, int] = {}
            nbytes = 0
            for start, m in self.minutes.items():
                if start + 60 <= since:
                    continue
                nbytes += m.bytes
                for d, n in m.senders.items():
                    senders[d] = senders.get(d, 0) + n
                for k, n in m.counts.items():
                    counts[k] = counts.get(k, 0) + n
                for sname, s in m.sketches.items():
                    acc = sketches.get(sname)
                    if acc is None:
                        acc = sketches[sname] = DDSketch(ACCURACY)
                    acc.merge(s)
            totals: dict[str, int] = {}
            for k, n in counts.items():
                totals[k[0]] = totals.get(k[0], 0) + n
            latency: dict[str, dict[str, float | int | None]] = {}
            for sname in LATENCIES:
                found = sketches.get(sname)
                latency[sname] = {
                    f"p{round(q * 100)}": (None if found is None or not found.count
                                           else found.get_quantile_value(q))
                    for q in QUANTILES}
                latency[sname]["count"] = 0 if found is None else int(found.count)
            out["windows"][name] = {
                "minutes": span, "totals": totals, "bytes": nbytes,
                "by": [[*k, n] for k, n in sorted(counts.items())], "latency": latency,
                "senders": [[d, n] for d, n in sorted(senders.items(),
                                                      key=lambda x: (-x[1], x[0]))[:TOP]]}
        return out

    def recent(self, after: int, filters: dict[str, str]) -> list[dict[str, Any]]:
        """Events of the ring with an id above ``after`` matching ``filters``."""
        return [obj for eid, obj in self.ring if eid > after and matches(obj, filters)]

    def query(self, since: float, until: float, filters: dict[str, str], after: int,
              limit: int) -> list[dict[str, Any]]:
        """Events with ``since <= time < until`` and an id above ``after`` (the
        cursor), matching ``filters``, oldest first, at most ``limit``."""
        out: list[dict[str, Any]] = []
        # Ids are microseconds at least: no event after the cursor is older than it.
        for obj in self._all_events(max(since, after / 1e6 - 1), until):
            if obj["id"] > after and since <= obj["time"] < until and matches(obj, filters):
                out.append(obj)
                if len(out) >= limit:
                    break
        return out

    def _all_events(self, since: float, until: float) -> Iterator[dict[str, Any]]:
        if self.directory is not None:
            self.flush()
            day = int(max(since, self._clock() - self.raw_days * 86400) // 86400 * 86400)
            while day < until:
                path = self.directory / f"events-{_day(day)}.jsonl"
                day += 86400
                try:
                    with open(path, encoding="utf-8") as f:
                        for line in f:
                            try:
                                obj = json.loads(line)
                            except ValueError:
                                continue  # a line cut by a crash
                            yield obj
                except FileNotFoundError:
                    continue
            return
        for _eid, obj in self.ring:
            yield obj

    def waiter(self) -> asyncio.Event:
        """An Event set by the next ``add`` (SSE streams: read ``recent``, then wait
        on this, with no await between)."""
        if self._changed is None or self._changed.is_set():
            self._changed = asyncio.Event()
        return self._changed

    # -- files ---------------------------------------------------------------------

    def flush(self, final: bool = False) -> None:
        """Append new events and closed minutes to the files (``final``: the current
        minute too, as at shutdown: a restart reads it back, and the line written
        when it closes later replaces it); prune old days.  Raises ``OSError``."""
        if self.directory is None:
            return
        now = self._clock()
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._pending:
            lines, self._pending = self._pending, []
            by_day: dict[str, list[str]] = {}
            for t, line in lines:
                by_day.setdefault(_day(t), []).append(line)
            for day, group in by_day.items():
                with open(self.directory / f"events-{day}.jsonl", "a", encoding="utf-8") as f:
                    f.write("\n".join(group) + "\n")
        current = int(now // 60 * 60)
        end = current + 60 if final else current
        closed = [m for s, m in self.minutes.items() if self._written_minute <= s < end]
        if closed:
            by_day2: dict[str, list[str]] = {}
            for m in closed:
                by_day2.setdefault(_day(m.start), []).append(
                    json.dumps(m.to_json(), separators=(",", ":")))
            for day, group in by_day2.items():
                with open(self.directory / f"minutes-{day}.jsonl", "a", encoding="utf-8") as f:
                    f.write("\n".join(group) + "\n")
            self._written_minute = current
        self._expire(now)
        today = _day(now)
        if today != self._day:
            self._day = today
            self._prune(now)

    def _expire(self, now: float) -> None:
        oldest = now - WINDOWS["24h"] * 60 - 60
        while self.minutes and next(iter(self.minutes)) < oldest:
            self.minutes.popitem(last=False)

    def _prune(self, now: float) -> None:
        assert self.directory is not None
        keep = {"events": _day(now - self.raw_days * 86400),
                "minutes": _day(now - self.retention_days * 86400)}
        for path in self.directory.glob("*-*.jsonl"):
            kind, _, day = path.stem.partition("-")
            if kind in keep and day < keep[kind]:
                path.unlink(missing_ok=True)

    def _load(self) -> None:
        assert self.directory is not None
        now = self._clock()
        since = now - WINDOWS["24h"] * 60 - 60
        for t in (since, now):
            path = self.directory / f"minutes-{_day(t)}.jsonl"
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    m = Minute.from_json(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    continue
                if m.start >= since:  # a later line of a minute replaces an earlier one
                    self.minutes[m.start] = m
        self.minutes = collections.OrderedDict(sorted(self.minutes.items()))
        self._written_minute = int(now // 60 * 60)  # earlier minutes are in the files
        # The last id, so ids keep growing across a restart.
        path = self.directory / f"events-{_day(now)}.jsonl"
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - 4096))
                for raw in f.read().splitlines():
                    try:
                        self.last_id = max(self.last_id, int(json.loads(raw)["id"]))
                    except (ValueError, KeyError, TypeError):
                        continue
        except OSError:
            pass

    async def run(self, interval: float = 1.0) -> None:
        """Flush every ``interval`` seconds until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    self.flush()
                except OSError:
                    pass  # a full disk: the next flush tries again
        finally:
            try:
                self.flush(final=True)
            except OSError:
                pass

