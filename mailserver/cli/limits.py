"""``mailserver limits show [NAME]`` / ``limits reset NAME``: the abuse-limit counters of
the running daemon (its counter service, ``data_dir/run/counters.stream``; a
daemon with ``workers = 1`` answers there itself, ``counters/admin_socket.py``)."""

from __future__ import annotations

import argparse
import json

from mailserver.cli.common import CliError, load_config
from mailserver.counters.client import ask_service


def _ask(args: argparse.Namespace, request: bytes) -> bytes:
    config = load_config(args)
    try:
        return ask_service(config.data_dir / "run", request)
    except OSError:
        raise CliError(
            "the daemon is not running (no counter service in "
            f"{config.data_dir / 'run'})") from None


def cmd_limits(args: argparse.Namespace) -> int:
    """``limits show [NAME]``: one line per live counter (window, kind, name, count);
    ``limits reset NAME``: forget NAME's counters (an IP, a network, an account)."""
    name = (args.name or "").replace("\n", "")
    if args.action == "reset":
        dropped = int(_ask(args, f"X {name}\n".encode()))
        print(f"reset {dropped} counter(s) of {name}")
        return 0
    entries = json.loads(_ask(args, f"S {name}\n".encode()))
    for e in entries:
        print(f"{e['window']:<6} {e['kind']:<5} {e['name']:<40} {e['count']}")
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
