"""``mailserver domain | user | alias``: the directory of local domains,
accounts and aliases, through the admin service.

::

    mailserver domain add|del NAME      mailserver domain list
    mailserver user add ADDRESS [--quota BYTES] [--password-stdin]
    mailserver user passwd ADDRESS [--password-stdin]
    mailserver user quota ADDRESS BYTES
    mailserver user del ADDRESS         mailserver user list [DOMAIN]
    mailserver alias add ADDRESS TARGET mailserver alias del ADDRESS
    mailserver alias list [DOMAIN]
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from mailserver.cli.common import PROG, CliError, admin_config, with_admin
from mailserver.errors import DomainNotFound

if TYPE_CHECKING:
    from mailserver.admin import AdminService

T = TypeVar("T")


def read_password(args: argparse.Namespace, *, confirm: bool = True) -> str:
    """The new password: one line of stdin with ``--password-stdin``, else a
    no-echo prompt (twice).  The admin service checks it against the policy."""
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        return password[:-1] if password.endswith("\r") else password
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password on; use --password-stdin")
    password = getpass.getpass(f"Password for {args.address}: ")
    if confirm and getpass.getpass("Repeat it: ") != password:
        raise CliError("the passwords do not match")
    return password


async def _hinting(address: str, call: Awaitable[T]) -> T:
    """``await call``, a missing domain answered with the command that adds it."""
    try:
        return await call
    except DomainNotFound as exc:
        domain = address.rpartition("@")[2].strip().lower()
        raise CliError(f"{exc.text}; add it with: {PROG} domain add {domain}") from None


def cmd_domain(args: argparse.Namespace) -> int:
    """``mailserver domain add|del|list``: add or delete a local domain, or print one per line.

    Exit status 0; errors (UserError, MailserverError, OSError) are raised for ``main``,
    which prints one ``mailserver: error:`` line and exits 1.
    """
    config = admin_config(args)

    async def go(admin: AdminService) -> None:
        if args.action == "add":
            domain = await admin.add_domain(args.name)
            print(f"added domain {domain.name}")
        elif args.action == "del":
            await admin.delete_domain(args.name)
            print(f"deleted domain {args.name.strip().rstrip('.').lower()}")
        else:
            for info in await admin.list_domains():
                print(info.name)

    with_admin(config, go)
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    """``mailserver user add|passwd|quota|del|list``: manage accounts.

    ``add``/``passwd`` read the password (prompt or ``--password-stdin``: ``read_password``)
    before the store is opened; ``quota`` takes bytes (0: unlimited); ``list``
    prints ``address<TAB>used=N<TAB>quota=N|unlimited``.

    Exit status 0; errors (UserError, MailserverError, OSError) are raised for ``main``,
    which prints one ``mailserver: error:`` line and exits 1.
    """
    config = admin_config(args)
    # Ask for the password before opening the store: a prompt must not hold it open.
    password = read_password(args) if args.action in ("add", "passwd") else ""

    async def go(admin: AdminService) -> None:
        if args.action == "add":
            account = await _hinting(args.address, admin.add_account(
                args.address, password, quota=args.quota))
            print(f"added user {account.address}")
        elif args.action == "passwd":
            await admin.set_password(args.address, password)
            print(f"changed the password of {args.address.strip().lower()}")
        elif args.action == "quota":
            account = await admin.set_quota(args.address, args.bytes)
            print(f"set the quota of {account.address} to {account.quota} bytes")
        elif args.action == "del":
            await admin.delete_account(args.address)
            print(f"deleted user {args.address.strip().lower()}")
        elif args.action in ("disable", "enable"):
            account = await admin.set_disabled(args.address, args.action == "disable")
            print(f"{args.action}d user {account.address}")
        else:
            for info in await admin.list_accounts(args.domain):
                quota = str(info.quota) if info.quota else "unlimited"
                print(f"{info.address}\tused={info.used}\tquota={quota}"
                      + ("\tdisabled" if info.disabled else ""))

    with_admin(config, go)
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    """``mailserver alias add|del|list``: manage aliases (``@domain`` is a catch-all).

    Exit status 0; errors (UserError, MailserverError, OSError) are raised for ``main``,
    which prints one ``mailserver: error:`` line and exits 1.
    """
    config = admin_config(args)

    async def go(admin: AdminService) -> None:
        if args.action == "add":
            alias = await _hinting(args.address, admin.add_alias(args.address, args.targets))
            print(f"added alias {alias.address} -> {', '.join(alias.targets)}")
        elif args.action == "del":
            await admin.delete_alias(args.address)
            print(f"deleted alias {args.address.strip().lower()}")
        else:
            for info in await admin.list_aliases(args.domain):
                print(f"{info.address} -> {', '.join(info.targets)}")

    with_admin(config, go)
    return 0


def non_negative(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value



def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add ``domain``, ``user`` and ``alias`` to ``sub``."""
    domain = sub.add_parser("domain", help="manage local domains")
    dsub = domain.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("add", "add a local domain"), ("del", "delete an empty domain")):
        p = dsub.add_parser(action, parents=[common], help=text)
        p.add_argument("name", metavar="NAME")
    dsub.add_parser("list", parents=[common], help="list local domains")
    domain.set_defaults(func=cmd_domain)

    user = sub.add_parser("user", help="manage accounts")
    usub = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = usub.add_parser("add", parents=[common], help="create an account")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--quota", type=non_negative, default=0, metavar="BYTES",
                   help="storage quota in bytes (default 0 = unlimited)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    p = usub.add_parser("passwd", parents=[common], help="set an account's password")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    p = usub.add_parser("quota", parents=[common], help="set an account's quota")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("bytes", type=non_negative, metavar="BYTES", help="0 = unlimited")
    p = usub.add_parser("del", parents=[common], help="delete an account and all its mail")
    p.add_argument("address", metavar="ADDRESS")
    p = usub.add_parser("disable", parents=[common],
                        help="refuse an account's logins (its mail is still delivered)")
    p.add_argument("address", metavar="ADDRESS")
    p = usub.add_parser("enable", parents=[common], help="allow a disabled account's logins again")
    p.add_argument("address", metavar="ADDRESS")
    p = usub.add_parser("list", parents=[common], help="list accounts")
    p.add_argument("domain", nargs="?", metavar="DOMAIN")
    user.set_defaults(func=cmd_user)

    alias = sub.add_parser("alias", help="manage aliases (ADDRESS may be @domain: catch-all)")
    asub = alias.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = asub.add_parser("add", parents=[common],
                        help="deliver mail for ADDRESS to each TARGET")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("targets", metavar="TARGET", nargs="+",
                   help="an account, or an address elsewhere (forwarded with SRS and ARC)")
    p = asub.add_parser("del", parents=[common], help="delete an alias")
    p.add_argument("address", metavar="ADDRESS")
    p = asub.add_parser("list", parents=[common], help="list aliases")
    p.add_argument("domain", nargs="?", metavar="DOMAIN")
    alias.set_defaults(func=cmd_alias)
