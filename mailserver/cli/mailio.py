"""``mailserver import mbox|maildir PATH ACCOUNT [--mailbox NAME]``,
``mailserver import imap --host H [--port P] [--tls|--starttls] --user U
[--password-stdin] ACCOUNT`` and
``mailserver export ACCOUNT mbox|maildir PATH``: argument parsing and the
progress display; the work is the admin service's (``admin/mailio.py``).

Progress goes to stderr: a rich bar with rate and ETA on a terminal, a plain
line every ``PLAIN_EVERY`` seconds otherwise (logs, pipes).  Ctrl-C stops an
import with what was imported committed (exit 130).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mailserver.cli.common import admin_config, with_admin

if TYPE_CHECKING:
    from mailserver.admin import Progress

PLAIN_EVERY = 5.0
FORMATS = ("mbox", "maildir")


def _mib(octets: int) -> str:
    return f"{octets / (1 << 20):.1f} MiB"


def _plain(verb: str) -> Callable[[Progress], None]:
    last = [-PLAIN_EVERY]

    def show(p: Progress) -> None:
        if p.interrupted:
            print(f"interrupted: {p.messages} messages {verb}, all committed", file=sys.stderr)
            return
        if p.done or p.seconds - last[0] < PLAIN_EVERY:
            return
        last[0] = p.seconds
        rate = p.octets / p.seconds if p.seconds else 0.0
        of = f" of {_mib(p.total)}" if p.total else ""
        print(f"{verb} {p.messages} messages, {_mib(p.octets)}{of} "
              f"({_mib(int(rate))}/s) {p.mailbox}", file=sys.stderr, flush=True)

    return show


@contextmanager
def progress_display(verb: str) -> Iterator[Callable[[Progress], None]]:
    """A progress callback for the admin service, shown on stderr."""
    try:
        import rich.progress as rp
    except ImportError:  # pragma: no cover - rich is a dependency
        rp = None  # type: ignore[assignment]
    if rp is None or not sys.stderr.isatty():
        yield _plain(verb)
        return
    from rich.console import Console

    columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.DownloadColumn(),
               rp.TransferSpeedColumn(), rp.TimeRemainingColumn(),
               rp.TextColumn("{task.fields[messages]} messages"))
    with rp.Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(verb, total=None, messages=0)

        def show(p: Progress) -> None:
            bar.update(task, completed=p.octets, total=p.total, messages=p.messages,
                       description=f"{verb} {p.mailbox}")
            if p.interrupted:
                bar.console.print(f"interrupted: {p.messages} messages {verb}, all committed")

        yield show


def cmd_import(args: argparse.Namespace) -> int:
    """``mailserver import``: print what was imported; exit 0."""
    config = admin_config(args)
    with progress_display("imported") as show:
        report = with_admin(config, lambda admin: admin.import_mail(
            args.format, args.path, args.account, mailbox=args.mailbox, progress=show))
    skipped = f", {report.skipped} skipped (over max_message_size)" if report.skipped else ""
    print(f"imported {report.messages} messages ({_mib(report.octets)}) into "
          f"{report.mailboxes} mailboxes of {args.account} in {report.seconds:.1f} s{skipped}")
    return 0


def cmd_import_imap(args: argparse.Namespace) -> int:
    """``mailserver import imap``: copy a remote account; print what was copied; exit 0."""
    from mailserver.admin.imapimport import Remote

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass(f"password of {args.user} at {args.host}: ")
    tls = "implicit" if args.tls else "starttls" if args.starttls else "none"
    port = args.port or (993 if tls == "implicit" else 143)
    remote = Remote(args.host, port, tls, args.user, password)
    config = admin_config(args)
    with progress_display("imported") as show:
        report = with_admin(config, lambda admin: admin.import_imap(
            remote, args.account, progress=show))
    skipped = f", {report.skipped} skipped (over max_message_size)" if report.skipped else ""
    print(f"imported {report.messages} messages ({_mib(report.octets)}) into "
          f"{report.mailboxes} mailboxes of {args.account} in {report.seconds:.1f} s{skipped}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``mailserver export``: print what was exported; exit 0."""
    config = admin_config(args)
    with progress_display("exported") as show:
        report = with_admin(config, lambda admin: admin.export_mail(
            args.account, args.format, args.path, progress=show))
    print(f"exported {report.messages} messages ({_mib(report.octets)}) from "
          f"{report.mailboxes} mailboxes of {args.account} to {args.path} "
          f"in {report.seconds:.1f} s")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add ``import`` and ``export`` to ``sub``."""
    imp = sub.add_parser("import", help="import an mbox file or directory, a Maildir, or a "
                         "remote IMAP account into an account")
    isub = imp.add_subparsers(dest="format", required=True, metavar="SOURCE")
    for kind in FORMATS:
        p = isub.add_parser(kind, parents=[common], help=f"import {kind}")
        p.add_argument("path", type=Path, metavar="PATH")
        p.add_argument("account", metavar="ACCOUNT")
        p.add_argument("--mailbox", metavar="NAME",
                       help="target mailbox of a single mbox file (default INBOX); for a "
                       "directory, the parent of its folders")
        p.set_defaults(func=cmd_import)
    p = isub.add_parser("imap", parents=[common],
                        help="copy every folder of a remote IMAP account (flags, keywords, "
                        "INTERNALDATE); run again, it resumes without duplicates")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=None,
                   help="default 993 with --tls, else 143")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--tls", action="store_true", help="implicit TLS (RFC 8314)")
    mode.add_argument("--starttls", action="store_true", help="STARTTLS (RFC 3501 §6.2.1)")
    p.add_argument("--user", required=True)
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin (else prompt)")
    p.add_argument("account", metavar="ACCOUNT")
    p.set_defaults(func=cmd_import_imap)
    p = sub.add_parser("export", parents=[common],
                       help="export every mailbox of an account as mbox files or a Maildir")
    p.add_argument("account", metavar="ACCOUNT")
    p.add_argument("format", choices=FORMATS)
    p.add_argument("path", type=Path, metavar="PATH", help="missing or empty directory")
    p.set_defaults(func=cmd_export)
