"""The abuse-limit counters of the running daemon (issue #11 §3): what
``mailserver limits show/reset`` and ``/api/v1/limits`` read and lift.

They live in the daemon's counter service (``counters/service.py``; with
``workers = 1`` the single process answers on the same socket,
``counters/admin_socket.py``), asked over ``data_dir/run/counters.stream``
with its one-line requests: ``S [NAME]`` (a JSON list back) and ``X NAME``
(the number of entries dropped).  Blocking calls: the admin service runs
them in a thread.
"""

from __future__ import annotations

import json
from pathlib import Path

from mailserver.admin.views import LimitCounter
from mailserver.counters.client import ask_service
from mailserver.errors import Cannot, InvalidName

#: Longest name asked for: an account address (RFC 5321 §4.5.3.1: 64 + 1 + 255).
MAX_NAME = 320


def _name(name: str, *, required: bool) -> str:
    """``name`` checked: an IP, a network (``a.b.c.0/24``) or an account, one
    token of printable characters.  Raises InvalidName."""
    if (required and not name) or len(name) > MAX_NAME or any(
            c.isspace() or not c.isprintable() for c in name):
        raise InvalidName(f"not an IP address, network or account: {name[:80]!r}")
    return name


def _ask(run_dir: Path, request: str) -> bytes:
    try:
        return ask_service(run_dir, request.encode() + b"\n")
    except OSError:
        raise Cannot(f"the daemon is not running (no counter service in {run_dir})") from None


def show_limits(run_dir: Path, name: str = "") -> list[LimitCounter]:
    """The live rate counters (every one, or those of ``name``), each with
    its window (``minute``, ``hour``, ``day``), kind, name and the sliding
    count.  Raises InvalidName, Cannot (no daemon runs)."""
    raw = json.loads(_ask(run_dir, f"S {_name(name, required=False)}".rstrip()))
    return [LimitCounter(str(e["window"]), str(e["kind"]), str(e["name"]), float(e["count"]))
            for e in raw]


def reset_limits(run_dir: Path, name: str) -> int:
    """Forget every counter of ``name`` in every worker at once; returns how
    many were dropped.  Raises InvalidName, Cannot (no daemon runs)."""
    return int(_ask(run_dir, f"X {_name(name, required=True)}"))
