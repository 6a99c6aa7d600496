"""The ``mailserver`` command line: run the daemon, check the config, administer the store.

::

    mailserver run            [-c FILE] [--data-dir DIR]
    mailserver check-config   [-c FILE]
    mailserver init           [-c FILE] [--data-dir DIR]
    mailserver domain|user|alias ...                          (directory.py)
    mailserver dkim|dns|queue ...                             (outbound.py)
    mailserver dmarc report DATE                              (dmarc.py)
    mailserver tlsrpt report DATE                             (tlsrpt.py)
    mailserver db migrate [--dry-run] | db status             (db.py)
    mailserver backup DIR | verify [DIR] | restore DIR        (backup.py)
    mailserver import mbox|maildir PATH ACCOUNT | export ACCOUNT mbox|maildir PATH  (mailio.py)
    mailserver token create NAME [--read-only] | list | revoke NAME   (tokens.py)
    mailserver quickstart ADDRESS [--hostname H] [-c DIR] [--data-dir DIR]  (quickstart.py)
    mailserver top [--url URL] [--token T] [--once]                 (top.py)

Argument parsing and printing only: every rule is the admin service's
(``mailserver.admin``).  The configuration is found as ``common.py`` says.

The admin commands open the same store as the daemon; LMDB serialises writers
across processes, so they are safe while the daemon runs.  They never create
a store: they name the data directory they use on stderr, and fail when it
holds no store (``mailserver run`` or ``mailserver init`` create it).
Expected failures (bad config, no such user, ...) print one
``mailserver: error: ...`` line on stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mailserver import log as logsetup
from mailserver.cli.backup import add_parsers as add_backup
from mailserver.cli.common import DEV_CONFIG, ENV_CONFIG, PROG, SYSTEM_CONFIG, error
from mailserver.cli.db import add_parsers as add_db
from mailserver.cli.directory import add_parsers as add_directory
from mailserver.cli.dmarc import add_parsers as add_dmarc
from mailserver.cli.junk import add_parsers as add_junk
from mailserver.cli.limits import add_parsers as add_limits
from mailserver.cli.mailio import add_parsers as add_mailio
from mailserver.cli.outbound import add_parsers as add_outbound
from mailserver.cli.quickstart import add_parsers as add_quickstart
from mailserver.cli.server import add_parsers as add_server
from mailserver.cli.server import cmd_run
from mailserver.cli.tlsrpt import add_parsers as add_tlsrpt
from mailserver.cli.tokens import add_parsers as add_tokens
from mailserver.cli.top import add_parsers as add_top
from mailserver.config import LogSettings
from mailserver.errors import MailserverError, UserError


def build_parser() -> argparse.ArgumentParser:
    """The ``mailserver`` argument parser: every subcommand sets ``func`` to its ``cmd_*``."""
    # SUPPRESS lets -c/--data-dir appear before or after the subcommand without
    # the subcommand's default wiping the value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS,
                        metavar="FILE", help=f"configuration file (default: ${ENV_CONFIG}, "
                        f"{DEV_CONFIG}, {SYSTEM_CONFIG}, then built-in)")
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, metavar="DIR",
                        help="use DIR instead of the configured data_dir")

    parser = argparse.ArgumentParser(prog=PROG, parents=[common],
                                     description="SMTP/IMAP mail server daemon and admin tool")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_server(sub, common)
    add_directory(sub, common)
    add_outbound(sub, common)
    add_dmarc(sub, common)
    add_tlsrpt(sub, common)
    add_db(sub, common)
    add_backup(sub, common)
    add_mailio(sub, common)
    add_limits(sub, common)
    add_junk(sub, common)
    add_tokens(sub, common)
    add_quickstart(sub)
    add_top(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mailserver`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.func is not cmd_run:
        # Admin commands print their own results; only problems should be logged.
        logsetup.configure(LogSettings(level="warning"))
    try:
        return int(args.func(args))
    except UserError as exc:
        error(exc.text)
    except MailserverError as exc:  # ConfigError, CliError, store open failures
        error(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        error(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return 1
