"""``mailserver limits show [NAME]`` / ``limits reset NAME``: the abuse-limit counters of
the running daemon (its counter service, ``data_dir/run/counters.stream``; a
daemon with ``workers = 1`` answers there itself, ``counters/admin_socket.py``)."""

from __future__ import annotations

import argparse

from mailserver.admin.limits import reset_limits, show_limits
from mailserver.cli.common import load_config


def cmd_limits(args: argparse.Namespace) -> int:
    """``limits show [NAME]``: one line per live counter (window, kind, name, count);
    ``limits reset NAME``: forget NAME's counters (an IP, a network, an account).
    The same functions as ``/api/v1/limits`` (``admin/limits.py``); errors
    (InvalidName, Cannot: no daemon) are raised for ``main``."""
    name = args.name or ""
    run_dir = load_config(args).data_dir / "run"
    if args.action == "reset":
        dropped = reset_limits(run_dir, name)
        print(f"reset {dropped} counter(s) of {name}")
        return 0
    entries = show_limits(run_dir, name)
    for e in entries:
        count = int(e.count) if e.count == int(e.count) else e.count
        print(f"{e.window:<6} {e.kind:<5} {e.name:<40} {count}")
    if not entries:
        print("no counters" + (f" for {name}" if name else ""))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add the ``limits`` command (``show``, ``reset``) to ``sub``."""
    limits = sub.add_parser("limits", help="inspect and lift abuse limits of the running daemon")
    lsub = limits.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = lsub.add_parser("show", parents=[common], help="show live counters (of NAME)")
    p.add_argument("name", nargs="?", metavar="NAME", help="an IP, a network or an account")
    p = lsub.add_parser("reset", parents=[common], help="forget NAME's counters")
    p.add_argument("name", metavar="NAME", help="an IP, a network (a.b.c.0/24) or an account")
    limits.set_defaults(func=cmd_limits)
