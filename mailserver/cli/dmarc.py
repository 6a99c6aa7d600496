"""``mailserver dmarc report DATE``: print the day's DMARC aggregate reports (RFC 7489 §7.2)."""

from __future__ import annotations

import argparse
import datetime as dt

from mailserver.checks.dmarc_log import DmarcLog
from mailserver.checks.dmarc_report import reports
from mailserver.cli.common import CliError, load_config
from mailserver.queue.reporting import report_sender


def cmd_dmarc(args: argparse.Namespace) -> int:
    """``mailserver dmarc report DATE``: print the aggregate reports (RFC 7489 §7.2
    XML) of the verdicts recorded on DATE; exit 0, or 1 through ``main``'s error line."""
    config = load_config(args)
    try:
        day = dt.date.fromisoformat(args.date)
    except ValueError:
        raise CliError(f"{args.date!r} is not a date (YYYY-MM-DD)") from None
    lines = DmarcLog(config.data_dir / "dmarc").read(day)
    out = reports(lines, day=day, org_name=config.hostname,
                  email=report_sender(config.outbound.report_from,
                                      config.domains, config.hostname))
    for domain, xml in out.items():
        print(f"<!-- aggregate report for {domain} -->")
        print(xml, end="")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add the ``dmarc`` command and its ``report`` action to ``sub``."""
    dmarc = sub.add_parser("dmarc", help="DMARC aggregate reports")
    dsub = dmarc.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = dsub.add_parser("report", parents=[common],
                        help="print the aggregate reports (XML) of one UTC day")
    p.add_argument("date", metavar="DATE", help="YYYY-MM-DD")
    dmarc.set_defaults(func=cmd_dmarc)
