"""``mailserver top``: a live terminal view of the mail flow (issue 14 §4).

It reads the admin API like any other tool (``GET /api/v1/stats`` once per
``--interval``), never the store: the daemon's URL comes from ``--url`` or
the configuration's first ``http`` listener, the token from ``--token`` or
``MAILSERVER_TOKEN`` (``mailserver token create NAME --read-only``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from mailserver.cli.common import CliError, load_config

ENV_TOKEN = "MAILSERVER_TOKEN"
KINDS = ("received", "refused", "delivered", "queued", "attempt", "deferred", "bounced",
         "expired", "auth_failure", "imap_login")


def _url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    for listener in load_config(args).listeners:
        if listener.protocol == "http":
            host = listener.address if listener.address not in ("", "0.0.0.0", "::") \
                else "127.0.0.1"
            scheme = "https" if listener.tls == "implicit" else "http"
            return f"{scheme}://{host}:{listener.port}"
    raise CliError("no http listener in the configuration: give --url")


def fetch(url: str, token: str) -> dict[str, Any]:
    """``GET url/api/v1/stats``.  Raises ``CliError``."""
    request = urllib.request.Request(url + "/api/v1/stats",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            body: dict[str, Any] = json.loads(r.read())
            return body
    except urllib.error.HTTPError as err:
        raise CliError(f"{url}: {err.code} {err.reason}") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"{url}: {exc}") from None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def render(stats: dict[str, Any]) -> Group:
    """The view of one ``/stats`` answer: totals per window, latencies, top
    domains by flow and the top sender domains."""
    windows = stats["windows"]
    names = list(windows)
    totals = Table(title="mail flow", expand=False)
    totals.add_column("event")
    for name in names:
        totals.add_column(name, justify="right")
    for kind in KINDS:
        totals.add_row(kind, *(str(windows[n]["totals"].get(kind, 0)) for n in names))
    totals.add_row("bytes in", *(str(windows[n]["bytes"]) for n in names))
    lat = Table(title="latency (ms) p50 / p95 / p99")
    lat.add_column("what")
    for name in names:
        lat.add_column(name, justify="right")
    for what, label in (("data", "end of DATA -> 250"), ("local", "-> delivered locally"),
                        ("remote", "queued -> accepted remotely")):
        row = []
        for n in names:
            q = windows[n]["latency"][what]
            row.append(f"{_ms(q['p50'])} / {_ms(q['p95'])} / {_ms(q['p99'])}")
        lat.add_row(label, *row)
    top = Table(title="top domains (1h)")
    for col in ("domain", "direction", "kind", "result", "count"):
        top.add_column(col, justify="right" if col == "count" else "left")
    rows = sorted(windows.get("1h", windows[names[-1]])["by"], key=lambda r: -r[4])[:10]
    for kind, direction, domain, result, count in rows:
        top.add_row(domain or "-", direction or "-", kind, result or "-", str(count))
    senders = Table(title="top sender domains (1h)")
    senders.add_column("reverse-path domain")
    senders.add_column("received", justify="right")
    for domain, count in windows.get("1h", windows[names[-1]]).get("senders", [])[:10]:
        senders.add_row(domain, str(count))
    return Group(totals, lat, top, senders)


def cmd_top(args: argparse.Namespace) -> int:
    """Show the flow until interrupted (``--once``: one frame, then exit)."""
    token = args.token or os.environ.get(ENV_TOKEN, "")
    if not token:
        raise CliError(f"give --token or set {ENV_TOKEN} "
                       "(mailserver token create NAME --read-only)")
    url = _url(args)
    console = Console()
    if args.once:
        console.print(render(fetch(url, token)))
        return 0
    try:
        with Live(render(fetch(url, token)), console=console, screen=False,
                  auto_refresh=False) as live:
            while True:
                time.sleep(args.interval)
                live.update(render(fetch(url, token)), refresh=True)
    except KeyboardInterrupt:
        return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add the ``top`` command to ``sub``."""
    p = sub.add_parser("top", parents=[common], help="live view of the mail flow (from the API)")
    p.add_argument("--url", help="the daemon's http listener (default: from the configuration)")
    p.add_argument("--token", help=f"an API token (default: ${ENV_TOKEN})")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between updates")
    p.add_argument("--once", action="store_true", help="print one view and exit")
    p.set_defaults(func=cmd_top)
