"""Summarise a ``py-spy record -f raw`` profile (collapsed stacks)::

    python bench/pyspy_top.py bench/results/profiles/ingress-20s-4k.txt [--top 25]

Prints the functions with the most *own* samples (the leaf frame: where the
CPU actually was) and with the most *inclusive* samples (anywhere on the
stack, counted once per stack), as percentages of all samples.  Idle samples
(the event loop waiting in epoll/select) are counted and reported apart.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_IDLE = ("select (selectors.py", "run_once", "_run_once", "poll (")


def _name(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)" so lines of one function merge.
    m = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame.strip())
    if not m:
        return frame.strip()
    path = m.group(2)
    short = "/".join(path.split("/")[-2:])
    return f"{m.group(1)} ({short})"


def summarise(path: Path, top: int) -> str:
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        frames = [f for f in m.group(1).split(";") if f]
        n = int(m.group(2))
        total += n
        if not frames:
            continue
        leaf = _name(frames[-1])
        if any(leaf.startswith(i) for i in _IDLE) or "epoll" in leaf:
            idle += n
            continue
        own[leaf] += n
        for f in {_name(f) for f in frames}:
            incl[f] += n
    busy = max(total - idle, 1)
    out = [f"{path.name}: {total} samples, {idle / max(total, 1):.0%} idle in the event loop",
           "", f"own time (% of busy samples, top {top}):"]
    out += [f"  {n / busy:6.1%}  {name}" for name, n in own.most_common(top)]
    out += ["", f"inclusive time (% of busy samples, top {top}):"]
    out += [f"  {n / busy:6.1%}  {name}" for name, n in incl.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="summarise a py-spy raw profile")
    ap.add_argument("file", type=Path)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    print(summarise(a.file, a.top))
