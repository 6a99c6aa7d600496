"""``mailserver token``: bearer tokens of the HTTP admin API (``/api/v1``).

::

    mailserver token create NAME [--read-only]
    mailserver token list
    mailserver token revoke NAME

``create`` prints the token once, alone on stdout (so that a script can
take it: ``TOKEN=$(mailserver token create grafana --read-only)``); only its
SHA-256 is kept (``admin.tokens``).  ``NAME`` is what the audit log names
for the token's changes.  The daemon sees a new or revoked token at its next
request: no restart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import TYPE_CHECKING

from mailserver.cli.common import PROG, admin_config, with_admin

if TYPE_CHECKING:
    from mailserver.admin import AdminService


def cmd_token(args: argparse.Namespace) -> int:
    """``mailserver token create|list|revoke``: manage the HTTP API's bearer tokens.

    ``list`` prints ``name<TAB>read-only|read-write<TAB>created (UTC)``.
    Exit status 0; errors (UserError, MailserverError, OSError) are raised for ``main``,
    which prints one ``mailserver: error:`` line and exits 1.
    """
    config = admin_config(args)

    async def go(admin: AdminService) -> None:
        if args.action == "create":
            info, token = await admin.create_token(args.name, read_only=args.read_only)
            kind = "read-only" if info.read_only else "read-write"
            print(f"{PROG}: made {kind} token {info.name!r}; it is shown only now:",
                  file=sys.stderr)
            print(token)
        elif args.action == "revoke":
            info = await admin.revoke_token(args.name)
            print(f"revoked token {info.name}")
        else:
            for info in await admin.list_tokens():
                when = dt.datetime.fromtimestamp(info.created, dt.UTC)
                kind = "read-only" if info.read_only else "read-write"
                print(f"{info.name}\t{kind}\t{when:%Y-%m-%d %H:%M:%S} UTC")

    with_admin(config, go)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add ``token`` to ``sub``."""
    token = sub.add_parser("token", help="bearer tokens of the HTTP admin API")
    tsub = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = tsub.add_parser("create", parents=[common],
                        help="make a token and print it (once: only its hash is kept)")
    p.add_argument("name", metavar="NAME", help="who the audit log names for its changes")
    p.add_argument("--read-only", action="store_true",
                   help="the token may only read (GET); changes are refused with 403")
    tsub.add_parser("list", parents=[common], help="list the tokens (never their values)")
    p = tsub.add_parser("revoke", parents=[common], help="remove a token")
    p.add_argument("name", metavar="NAME")
    token.set_defaults(func=cmd_token)
