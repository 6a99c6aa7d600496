"""``mailserver tlsrpt report DATE``: print the day's TLS-RPT reports (RFC 8460 §4)."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from mailserver.cli.common import CliError, load_config
from mailserver.queue.reporting import report_sender
from mailserver.queue.tlsrpt import TlsReportLog, reports


def cmd_tlsrpt(args: argparse.Namespace) -> int:
    """``mailserver tlsrpt report DATE``: one RFC 8460 §4.4 JSON report per policy
    domain with outbound sessions recorded on DATE (UTC), one per line; exit 0,
    or 1 through ``main``'s error line."""
    config = load_config(args)
    try:
        day = dt.date.fromisoformat(args.date)
    except ValueError:
        raise CliError(f"{args.date!r} is not a date (YYYY-MM-DD)") from None
    lines = TlsReportLog(config.data_dir / "tlsrpt").read(day)
    out = reports(lines, day=day, org_name=config.hostname,
                  contact=report_sender(config.outbound.report_from,
                                          config.domains, config.hostname))
    for report in out.values():
        print(json.dumps(report, separators=(",", ":")))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add the ``tlsrpt`` command and its ``report`` action to ``sub``."""
    cmd = sub.add_parser("tlsrpt", help="SMTP TLS reporting (RFC 8460)")
    tsub = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = tsub.add_parser("report", parents=[common],
                        help="print the JSON reports of one UTC day, one per line")
    p.add_argument("date", metavar="DATE", help="YYYY-MM-DD")
    cmd.set_defaults(func=cmd_tlsrpt)
