"""Shared helpers of the benchmark harness: process accounting, statistics, the corpus.

CPU and memory come from ``/proc`` (proc(5)): ``/proc/<pid>/stat`` fields 14-17
are utime, stime, cutime, cstime in clock ticks; ``/proc/<pid>/status`` has
VmRSS in kB.  A server is measured as its *process tree*: every live
descendant of the root PID plus what the root has reaped (cutime/cstime), so
Postfix's and Dovecot's short-lived helpers are counted too.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / ".." / "shared" / "corpus" / "messages"
TICK = os.sysconf("SC_CLK_TCK")


def corpus_messages() -> list[bytes]:
    """The 148 corpus messages, bytes as stored (never normalised), in file order."""
    files = sorted(CORPUS.glob("*.eml"))
    if not files:
        raise FileNotFoundError(f"no corpus under {CORPUS}")
    return [f.read_bytes() for f in files]


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces; everything after the last ')' is fixed.
    return raw[raw.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def tree(root: int) -> list[int]:
    """``root`` and every live descendant (PIDs)."""
    kids = _children()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def cpu_seconds(roots: Iterable[int]) -> float:
    """User+system CPU seconds of the process trees under ``roots`` (live + reaped)."""
    total = 0.0
    for root in roots:
        for pid in tree(root):
            f = _stat(pid)
            if f is None:
                continue
            # After ')' the fields start at 3 (state): utime=14 -> index 11.
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / TICK
    return total


def rss_bytes(roots: Iterable[int]) -> int:
    """Summed VmRSS (bytes) of the process trees under ``roots``."""
    total = 0
    for root in roots:
        for pid in tree(root):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def pss_bytes(roots: Iterable[int]) -> int:
    """Summed proportional set size (bytes): shared pages split between their users,
    so a many-process server (Dovecot) is not charged N times for its libraries."""
    total = 0
    for root in roots:
        for pid in tree(root):
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def wait_port(port: int, seconds: float = 30, host: str = "127.0.0.1") -> None:
    """Return once ``host:port`` accepts a TCP connection; raises the last
    ``OSError`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            _, w = await asyncio.open_connection(host, port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
