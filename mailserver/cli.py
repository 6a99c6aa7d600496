"""The ``mailserver`` command line: run the daemon, check the config, administer the store.

::

    mailserver run            [-c FILE] [--data-dir DIR]
    mailserver check-config   [-c FILE]
    mailserver domain add|del NAME      mailserver domain list
    mailserver user add ADDRESS [--quota BYTES] [--password-stdin]
    mailserver user passwd ADDRESS [--password-stdin]
    mailserver user del ADDRESS         mailserver user list [DOMAIN]
    mailserver alias add ADDRESS TARGET mailserver alias del ADDRESS
    mailserver alias list [DOMAIN]
    mailserver dkim keygen DOMAIN [--selector S] [--algorithm rsa|ed25519]
    mailserver dns DOMAIN
    mailserver queue list|show ID|retry ID|delete ID|flush    (see cli_outbound.py)

Which configuration is used, first match wins:

1. ``-c FILE`` / ``--config FILE``;
2. ``$MAILSERVER_CONFIG``;
3. ``conf/mailserver.toml`` in the current directory (the source checkout);
4. ``/etc/mailserver/mailserver.toml``;
5. the built-in development configuration (``config.builtin()``: loopback,
   ports 2525/2587/2465/1143/1993, data in ``./var``, demo account).

``--data-dir DIR`` overrides the file's ``data_dir`` (tests, trying things out).

The admin commands open the same store as the daemon; LMDB serialises writers
across processes, so they are safe while the daemon runs.  Expected failures
(bad config, no such user, ...) print one ``mailserver: error: ...`` line on
stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mailserver import log as logsetup
from mailserver.config import Config, LogSettings, builtin, load, with_data_dir
from mailserver.errors import ConfigError, DomainNotFound, MailserverError, UserError

PROG = "mailserver"
ENV_CONFIG = "MAILSERVER_CONFIG"
DEV_CONFIG = Path("conf/mailserver.toml")
SYSTEM_CONFIG = Path("/etc/mailserver/mailserver.toml")
MIN_PASSWORD_LENGTH = 8

T = TypeVar("T")


class CliError(MailserverError):
    """A command-line problem worth one line on stderr (bad password input, ...)."""


# -- configuration -----------------------------------------------------------------


def find_config(explicit: Path | None) -> Path | None:
    """The config file to read (see the module docstring), or None for the built-in one."""
    if explicit is not None:
        return explicit
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    for candidate in (DEV_CONFIG, SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def load_config(args: argparse.Namespace) -> Config:
    """Read the configuration the options point at and apply ``--data-dir``."""
    path = find_config(getattr(args, "config", None))
    config = load(path) if path is not None else builtin()
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None:
        config = with_data_dir(config, data_dir)
    return config


# -- store access ------------------------------------------------------------------


def with_store(config: Config, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Open the store of ``config``, run ``await fn(store)``, close the store."""
    from mailserver.store.store import Store  # the daemon-free commands do not need lmdb

    async def main() -> T:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = await Store.open(config.data_dir, map_size=config.store.map_size,
                                 new_mail_limit=config.store.new_mail_limit)
        try:
            # As App.start does: the configured domains exist, so "user add"
            # works before the daemon's first start.
            for domain in config.domains:
                if not store.is_local_domain(domain):
                    await store.add_domain(domain)
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def read_password(args: argparse.Namespace, *, confirm: bool = True) -> str:
    """The new password: one line of stdin with ``--password-stdin``, else a no-echo prompt."""
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    else:
        if not sys.stdin.isatty():
            raise CliError("no terminal to ask for the password on; use --password-stdin")
        password = getpass.getpass(f"Password for {args.address}: ")
        if confirm and getpass.getpass("Repeat it: ") != password:
            raise CliError("the passwords do not match")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CliError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if any(c in password for c in "\0\r\n"):
        raise CliError("the password must not contain NUL, CR or LF")
    return password


def _require_domain(store: Any, address: str) -> None:
    domain = address.rpartition("@")[2]
    if domain and not store.is_local_domain(domain):
        raise DomainNotFound(
            f"domain {domain!r} does not exist; add it with: {PROG} domain add {domain}"
        )


# -- commands ----------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from mailserver.daemon import serve  # imports uvloop and the servers: only for run

    return serve(load_config(args))


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args)
    if config.tls.cert_file is not None and config.tls.key_file is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(config.tls.cert_file, config.tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{config.source}: tls: cannot load the certificate or key: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
    print(f"configuration OK: {config.source or '<built-in>'}")
    print(f"  hostname  {config.hostname}")
    print(f"  data_dir  {config.data_dir}")
    print(f"  domains   {', '.join(config.domains) or '(none)'}")
    for lst in config.listeners:
        print(f"  listener  {lst.name}: {lst.protocol} on {lst.address}:{lst.port} tls={lst.tls}")
    out = config.outbound
    resolver = f"{out.resolver_address}:{out.resolver_port}" if out.resolver_address \
        else "system"
    relay = f"smart host {out.smart_host.host}:{out.smart_host.port}" if out.smart_host \
        else f"MX hosts on port {out.smtp_port}"
    print(f"  outbound  {relay}, DNS {resolver}, DKIM {'+'.join(config.dkim.algorithms)}")
    return 0


def cmd_domain(args: argparse.Namespace) -> int:
    config = load_config(args)

    async def go(store: Any) -> None:
        if args.action == "add":
            domain = await store.add_domain(args.name)
            print(f"added domain {domain.name}")
        elif args.action == "del":
            if args.name.lower().rstrip(".") in config.domains:
                raise CliError(f"{args.name} is listed in domains of {config.source}; "
                               "remove it there first")
            await store.delete_domain(args.name)
            print(f"deleted domain {args.name.lower()}")
        else:
            for domain in store.list_domains():
                print(domain.name)

    with_store(config, go)
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    from mailserver.auth.passwords import hash_async

    config = load_config(args)
    # Ask for the password before opening the store: a prompt must not hold it open.
    password = read_password(args) if args.action in ("add", "passwd") else None

    async def go(store: Any) -> None:
        if args.action == "add":
            assert password is not None
            _require_domain(store, args.address)
            account = await store.add_account(
                args.address, await hash_async(password), quota=args.quota
            )
            print(f"added user {account.address}")
        elif args.action == "passwd":
            assert password is not None
            await store.set_password_hash(args.address, await hash_async(password))
            print(f"changed the password of {args.address.lower()}")
        elif args.action == "quota":
            await store.set_quota(args.address, args.bytes)
            print(f"set the quota of {args.address.lower()} to {args.bytes} bytes")
        elif args.action == "del":
            await store.delete_account(args.address)
            print(f"deleted user {args.address.lower()}")
        else:
            for account in store.list_accounts(args.domain):
                quota = str(account.quota) if account.quota else "unlimited"
                print(f"{account.address}\tused={account.used}\tquota={quota}")

    with_store(config, go)
    return 0


def cmd_alias(args: argparse.Namespace) -> int:
    config = load_config(args)

    async def go(store: Any) -> None:
        if args.action == "add":
            _require_domain(store, args.address)
            alias = await store.add_alias(args.address, args.target)
            print(f"added alias {alias.address} -> {alias.target}")
        elif args.action == "del":
            await store.delete_alias(args.address)
            print(f"deleted alias {args.address.lower()}")
        else:
            for alias in store.list_aliases(args.domain):
                print(f"{alias.address} -> {alias.target}")

    with_store(config, go)
    return 0


# -- parser ------------------------------------------------------------------------


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
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

    p = sub.add_parser("run", parents=[common], help="run the daemon until SIGTERM/SIGINT")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check-config", parents=[common], help="validate the configuration")
    p.set_defaults(func=cmd_check_config)

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
    p.add_argument("--quota", type=_non_negative, default=0, metavar="BYTES",
                   help="storage quota in bytes (default 0 = unlimited)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    p = usub.add_parser("passwd", parents=[common], help="set an account's password")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")
    p = usub.add_parser("quota", parents=[common], help="set an account's quota")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("bytes", type=_non_negative, metavar="BYTES", help="0 = unlimited")
    p = usub.add_parser("del", parents=[common], help="delete an account and all its mail")
    p.add_argument("address", metavar="ADDRESS")
    p = usub.add_parser("list", parents=[common], help="list accounts")
    p.add_argument("domain", nargs="?", metavar="DOMAIN")
    user.set_defaults(func=cmd_user)

    alias = sub.add_parser("alias", help="manage aliases (ADDRESS may be @domain: catch-all)")
    asub = alias.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = asub.add_parser("add", parents=[common], help="deliver mail for ADDRESS to TARGET")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("target", metavar="TARGET", help="an account address")
    p = asub.add_parser("del", parents=[common], help="delete an alias")
    p.add_argument("address", metavar="ADDRESS")
    p = asub.add_parser("list", parents=[common], help="list aliases")
    p.add_argument("domain", nargs="?", metavar="DOMAIN")
    alias.set_defaults(func=cmd_alias)

    from mailserver.cli_outbound import add_parsers

    add_parsers(sub, common)
    return parser


def error(message: str) -> None:
    """Print ``mailserver: error: message`` on stderr (argparse's own format)."""
    print(f"{PROG}: error: {message}", file=sys.stderr)


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
