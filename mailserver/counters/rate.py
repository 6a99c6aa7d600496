"""Rates per key over a window, with bounded memory.  Sans-IO: the caller gives the time.

The estimate is the sliding-window approximation of two fixed windows (the
one running and the one before it): ``previous * (1 - elapsed / window) +
current``.  It never under-counts a steady rate and costs two integers per
key, which is what an abuse limit needs (mox's ratelimit package counts
fixed windows; the sliding estimate avoids the burst of twice the limit
across a window boundary).

Memory is bounded whatever the clients do: at most ``max_keys`` keys are
kept.  A key touched moves to the end of the (insertion-ordered) table; when
a new key would exceed the cap, the least recently touched is dropped first.
An address-spraying attacker therefore only evicts its own earlier
addresses, and a dropped key counts from zero again, which errs towards
letting a client through (the limit is a protection, not an accounting).
Keys idle for two windows carry nothing and are dropped when met.

Invariants: ``len(table) <= max_keys``; ``count`` never refuses below
``limit`` when the estimate plus ``n`` stays within it; a refusal adds nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["RateEntry", "RateTable"]


@dataclass(frozen=True, slots=True)
class RateEntry:
    """One key's counts (for ``limits show`` and persistence).

    ``start`` is the start (seconds, the caller's clock) of the running window,
    ``current`` its count, ``previous`` the count of the window before it.
    """

    key: str
    start: float
    previous: int
    current: int


class RateTable:
    """Events per key over a sliding ``window`` (seconds), at most ``max_keys`` keys."""

    __slots__ = ("window", "max_keys", "_entries")

    def __init__(self, window: float, max_keys: int = 100_000) -> None:
        if window <= 0 or max_keys < 1:
            raise ValueError("window must be > 0 and max_keys >= 1")
        self.window = window
        self.max_keys = max_keys
        # key -> [window start, previous count, current count]; dict order = recency.
        # An OrderedDict, not a dict: evicting from the old end of a plain
        # dict scans the deleted slots left there (about 10 us a key at
        # 100,000 keys, under exactly the spray the bound is for).
        self._entries: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        """Number of keys held (never more than ``max_keys``)."""
        return len(self._entries)

    def _roll(self, entry: list[float], now: float) -> None:
        """Advance ``entry`` to the window holding ``now``."""
        elapsed = now - entry[0]
        if elapsed < self.window:
            return
        if elapsed < 2 * self.window:
            entry[0] += self.window
            entry[1], entry[2] = entry[2], 0
        else:
            entry[0] = now - (elapsed % self.window)
            entry[1] = entry[2] = 0

    def _estimate(self, entry: list[float], now: float) -> float:
        weight = 1.0 - (now - entry[0]) / self.window
        return entry[1] * max(0.0, weight) + entry[2]

    def peek(self, key: str, now: float) -> float:
        """The estimated number of events of ``key`` in the last ``window`` seconds."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        self._roll(entry, now)
        return self._estimate(entry, now)

    def count(self, key: str, now: float, limit: float | None = None, n: int = 1) -> bool:
        """Add ``n`` events of ``key`` at ``now`` unless that would pass ``limit``.

        Returns True when counted (always, with no ``limit``); False (nothing
        added) when the estimate plus ``n`` would exceed ``limit``.
        """
        entries = self._entries
        entry = entries.get(key)
        if entry is None:
            if limit is not None and n > limit:
                return False
            entry = [now, 0, 0]
            if len(entries) >= self.max_keys:
                self._evict(now)
            entries[key] = entry  # at the end: most recently touched
        else:
            self._roll(entry, now)
            entries.move_to_end(key)
        if limit is not None and self._estimate(entry, now) + n > limit:
            if entry[1] == 0 and entry[2] == 0:
                del entries[key]
            return False
        entry[2] += n
        return True

    def _evict(self, now: float) -> None:
        """Drop the least recently touched key (and any idle ones met on the way)."""
        entries = self._entries
        entries.popitem(last=False)
        # Opportunistically drop a few more idle keys from the old end (bounded work).
        for _ in range(8):
            if not entries:
                return
            oldest = next(iter(entries))
            if now - entries[oldest][0] < 2 * self.window:
                return
            entries.popitem(last=False)

    def reset(self, key: str) -> bool:
        """Forget ``key`` (``limits reset``); True when it was held."""
        return self._entries.pop(key, None) is not None

    def reset_prefix(self, prefix: str) -> int:
        """Forget every key starting with ``prefix``; how many were dropped."""
        doomed = [k for k in self._entries if k.startswith(prefix)]
        for k in doomed:
            del self._entries[k]
        return len(doomed)

    def entries(self, now: float, prefix: str = "") -> list[RateEntry]:
        """The live keys (starting with ``prefix``), oldest touched first."""
        out = []
        for key, entry in list(self._entries.items()):
            if not key.startswith(prefix):
                continue
            self._roll(entry, now)
            if entry[1] or entry[2]:
                out.append(RateEntry(key, entry[0], int(entry[1]), int(entry[2])))
        return out

    def dump(self, now: float) -> list[RateEntry]:
        """Everything worth keeping across a restart (``restore`` reads it back)."""
        return self.entries(now)

    def restore(self, saved: list[RateEntry]) -> None:
        """Load entries ``dump`` returned (the caller's clock must be the same kind:
        wall time, since monotonic clocks restart with the process)."""
        for item in saved:
            self._entries.pop(item.key, None)
            if len(self._entries) >= self.max_keys:
                self._evict(item.start)
            self._entries[item.key] = [item.start, item.previous, item.current]
