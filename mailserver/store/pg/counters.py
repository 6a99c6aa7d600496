"""Limit counters shared by every node, in PostgreSQL (issue #17 §2; the abuse
limits of issue #11 §3 across machines).

The same estimate as the in-process ``counters/rate.py`` (two fixed windows,
the previous one weighted by how much of it still lies in the sliding
window), kept in rows of ``counters`` (schema v1): one row per key and
window start.  ``count`` adds and checks in one statement: the row's lock
(``ON CONFLICT DO UPDATE ... WHERE``) makes check-and-add atomic across
nodes, so a limit of N lets exactly N through however many nodes count at
once.  ``prune`` drops windows that no longer weigh in (rows are bounded by
the keys active in the last two windows).
"""

from __future__ import annotations

import math
from typing import Any

_COUNT = """
WITH prev AS (
    SELECT coalesce((SELECT value FROM counters
                     WHERE name = $1::text AND window_start = $2::float8 - $3::float8), 0)
           * $4::float8 AS weighted
)
INSERT INTO counters (name, window_start, value)
SELECT $1::text, $2::float8, $5::float8 FROM prev
 WHERE $6::float8 IS NULL OR prev.weighted + $5::float8 <= $6::float8
ON CONFLICT (name, window_start) DO UPDATE SET value = counters.value + EXCLUDED.value
    WHERE $6::float8 IS NULL
       OR counters.value + EXCLUDED.value + (SELECT weighted FROM prev) <= $6::float8
RETURNING value
"""


class PgCounters:
    """Sliding-window rates per key over ``window`` seconds (see the module doc)."""

    def __init__(self, window: float) -> None:
        if window <= 0:
            raise ValueError("window must be more than 0")
        self.window = window

    def _start(self, now: float) -> tuple[float, float]:
        start = math.floor(now / self.window) * self.window
        return start, max(0.0, 1.0 - (now - start) / self.window)

    async def count(self, conn: Any, key: str, now: float, limit: float | None = None,
                    n: int = 1) -> bool:
        """Add ``n`` events of ``key`` at ``now`` (POSIX seconds) unless the
        estimate would pass ``limit``; True when counted.  Atomic across nodes."""
        start, weight = self._start(now)
        value = await conn.fetchval(_COUNT, key, start, self.window, weight, float(n),
                                    None if limit is None else float(limit))
        return value is not None

    async def peek(self, conn: Any, key: str, now: float) -> float:
        """The estimated events of ``key`` in the last ``window`` seconds."""
        start, weight = self._start(now)
        rows = await conn.fetch("SELECT window_start, value FROM counters WHERE name = $1 "
                                "AND window_start IN ($2, $3)", key, start, start - self.window)
        values = {r["window_start"]: r["value"] for r in rows}
        return float(values.get(start, 0.0) + values.get(start - self.window, 0.0) * weight)

    async def reset(self, conn: Any, key: str) -> int:
        """Forget ``key`` (``limits reset``); rows dropped."""
        done = await conn.execute("DELETE FROM counters WHERE name = $1", key)
        return int(done.split()[-1])

    async def prune(self, conn: Any, now: float) -> int:
        """Drop windows that no longer weigh in; rows dropped."""
        start, _ = self._start(now)
        done = await conn.execute("DELETE FROM counters WHERE window_start < $1",
                                  start - self.window)
        return int(done.split()[-1])
