"""``mailserver dkim | dns | queue``: the outbound side of the command line,
through the admin service.

::

    mailserver dkim keygen DOMAIN [--selector S | --dated] [--algorithm rsa|ed25519]
    mailserver dkim list [DOMAIN]
    mailserver dns DOMAIN
    mailserver queue list | show ID | retry ID | hold ID | release ID | delete ID | flush

The queue commands are safe while the daemon runs.  ``retry`` and ``flush``
move the message's next attempt to now; the daemon's scheduler hears of it
through the store's change feed (at the latest at its next look at the
index, ``queue.manager.RESCAN`` seconds).  ``delete`` drops the message
without a DSN; if the daemon is delivering it at that moment, that round
still finishes (and its record update is dropped: the message stays deleted).
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TYPE_CHECKING

from mailserver.cli.common import PROG, CliError, admin_config, with_admin

if TYPE_CHECKING:
    from mailserver.admin import AdminService, DkimKeyInfo, DnsRecord, QueueEntry
    from mailserver.config import Config


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- dkim --------------------------------------------------------------------------


def _print_key(key: DkimKeyInfo) -> None:
    note = ("\tretired: signs no more; delete it once its record is withdrawn" if key.retired
            else "" if key.signing else "\tnot signing: add it to [dkim] algorithms")
    print(f"{key.domain}\t{key.selector}\t{key.algorithm}\t{key.path}{note}")


def cmd_dkim(args: argparse.Namespace) -> int:
    """``mailserver dkim keygen|list|rotate|delete``: make a DKIM key (mode
    0600) and print its DNS TXT record (RFC 6376 §3.6.2.1), list the stored
    keys, rotate a domain's key (a new dated key; the old ones retired: they
    sign no more, their records stay listed), or delete a retired key.

    Exit status 0; errors (UserError, MailserverError, OSError) are raised for ``main``,
    which prints one ``mailserver: error:`` line and exits 1.
    """
    config = admin_config(args)

    async def go(admin: AdminService) -> None:
        if args.action == "list":
            for key in await admin.list_dkim_keys(args.domain):
                _print_key(key)
            return
        if args.action == "delete":
            gone = await admin.delete_dkim_key(args.domain, args.selector)
            print(f"deleted the retired key {gone.selector} of {gone.domain}; "
                  f"its record {gone.record.name} can go from DNS")
            return
        if args.action == "rotate":
            key, retired = await admin.rotate_dkim_key(args.domain, args.algorithm)
            print(f"# new {key.algorithm} key {key.selector} written to {key.path}; "
                  "it signs from the next message")
            for old in retired:
                print(f"# retired {old.selector}: it signs no more; keep its record "
                      "published a few days, then `mailserver dkim delete "
                      f"{old.domain} {old.selector}`")
            print("# publish this DNS record (RFC 6376 §3.6.2.1):")
            print(key.record.zone_line())
            return
        selector = admin.dated_selector(args.algorithm) if args.dated else args.selector
        key = await admin.generate_dkim_key(args.domain, selector=selector,
                                            algorithm=args.algorithm)
        print(f"# {key.algorithm} key written to {key.path} (mode 0600)")
        if not key.signing:
            print(f"# note: [dkim] algorithms in the config does not list {key.algorithm!r}; "
                  "add it to sign with this key")
        print("# publish this DNS record (RFC 6376 §3.6.2.1); the daemon signs with the key "
              "from its next message:")
        print(key.record.zone_line())

    with_admin(config, go)
    return 0


# -- dns ---------------------------------------------------------------------------


def print_zone(domain: str, records: list[DnsRecord]) -> None:
    """The records as zone-file lines, each group after a comment saying what it is for."""
    from mailserver.admin import dns

    purpose = None
    has_dkim = any(r.purpose == dns.DKIM for r in records)
    for record in records:
        if record.purpose != purpose:
            if record.purpose == dns.DMARC and not has_dkim:
                print(f"; {dns.DKIM}")
                print(f"; (none yet: run `{PROG} dkim keygen {domain}`)")
            purpose = record.purpose
            print(f"; {purpose}")
        print(record.zone_line())


def cmd_dns(args: argparse.Namespace) -> int:
    """``mailserver dns DOMAIN``: print the DNS records to publish for it, as zone-file lines.

    Exit status 0; errors (UserError, MailserverError, OSError) are raised for ``main``,
    which prints one ``mailserver: error:`` line and exits 1.
    """
    config = admin_config(args)
    if args.domain == "check" and args.target:
        return _dns_check(config, args.target)
    if args.target:
        raise CliError(f"usage: {PROG} dns DOMAIN | {PROG} dns check DOMAIN")

    async def go(admin: AdminService) -> None:
        records = await admin.dns_records(args.domain)
        print_zone(records[0].name, records)  # the MX record's owner: the domain

    with_admin(config, go)
    return 0


def _dns_check(config: Config, domain: str) -> int:
    """``mailserver dns check DOMAIN``: one line per expected record and host
    check (``admin/dns_check.py``); exit status 1 when something is missing
    or different, 2 when only lookups failed, else 0."""
    from mailserver.admin import dns_check

    verdicts: list[dns_check.Verdict] = []

    async def go(admin: AdminService) -> None:
        verdicts.extend(await admin.dns_check(domain))

    with_admin(config, go)
    for v in verdicts:
        print(f"{v.state:<9} {v.what}")
        if v.state != dns_check.PRESENT or v.note:
            print(f"          expected: {v.expected}")
            for found in v.found:
                print(f"          found:    {found}")
            if v.note:
                print(f"          {v.note}")
    states = {v.state for v in verdicts}
    if states & {dns_check.MISSING, dns_check.DIFFERENT}:
        return 1
    return 2 if dns_check.ERROR in states else 0


# -- queue -------------------------------------------------------------------------


def _print_entry(m: QueueEntry) -> None:
    print(f"{m.id}\t{_when(m.created)}\t{m.size}\t<{m.sender}>\t"
          f"{m.to_go}/{len(m.recipients)} to go\tnext {_when(m.next_attempt)}")
    for r in m.recipients:  # indented: one line per recipient under its message
        extra = f"\t{r.last_error}" if r.last_error else ""
        print(f"\t{r.address}\t{r.status}{extra}")


def cmd_queue(args: argparse.Namespace) -> int:
    """``mailserver queue list|show|retry|hold|release|delete|bounce|flush``:
    inspect or manage the outbound queue.

    ``retry`` and ``flush`` make messages due now (``flush`` leaves held ones);
    ``bounce`` returns a message to its sender with a DSN
    (``AdminService.bounce``).

    Exit status 0; errors (UserError, MailserverError, OSError) are raised for ``main``,
    which prints one ``mailserver: error:`` line and exits 1.
    """
    config = admin_config(args)

    async def go(admin: AdminService) -> None:
        if args.action == "list":
            entries = await admin.list_queue()
            for entry in entries:
                _print_entry(entry)
            print(f"{len(entries)} message(s) queued")
        elif args.action == "show":
            m = await admin.queued(args.id)
            print(f"id            {m.id}")
            print(f"from          <{m.sender}>")
            print(f"created       {_when(m.created)}")
            print(f"size          {m.size}")
            print(f"attempts      {m.attempts}")
            print(f"next attempt  {'held' if m.held else _when(m.next_attempt)}")
            if m.bounce:
                print(f"bounce        {m.bounce}")
            for r in m.recipients:
                extra = f"\t{r.last_error}" if r.last_error else ""
                print(f"rcpt          {r.address}\t{r.status}\tattempts={r.attempts}{extra}")
        elif args.action == "retry":
            await admin.retry(args.id)
            print(f"{args.id} is due now")
        elif args.action == "hold":
            await admin.hold(args.id)
            print(f"{args.id} is held (no delivery attempt until release)")
        elif args.action == "release":
            await admin.release(args.id)
            print(f"{args.id} is released and due now")
        elif args.action == "delete":
            await admin.delete_queued(args.id)
            print(f"deleted {args.id}")
        elif args.action == "bounce":
            await admin.bounce(args.id, args.reason or "")
            print(f"{args.id} goes back to its sender with a DSN at its next round (now)")
        else:
            print(f"{await admin.flush()} message(s) due now")

    with_admin(config, go)
    return 0


# -- parser ------------------------------------------------------------------------


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add the ``dkim``, ``dns`` and ``queue`` subcommands to ``sub``."""
    dkim = sub.add_parser("dkim", help="DKIM signing keys")
    ksub = dkim.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ksub.add_parser("keygen", parents=[common],
                        help="make a key pair and print the DNS TXT record to publish")
    p.add_argument("domain", metavar="DOMAIN")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--selector", metavar="S",
                       help="DNS selector (default: [dkim] selector; '-ed25519' appended for "
                       "ed25519 keys)")
    which.add_argument("--dated", action="store_true",
                       help="selector '<[dkim] selector>-YYYYMMDD' (today, UTC), as the HTTP "
                       "API makes by default: a new selector for a key rotation")
    p.add_argument("--algorithm", choices=("rsa", "ed25519"), default="rsa",
                   help="rsa (2048 bits, default) or ed25519 (RFC 8463)")
    p = ksub.add_parser("list", parents=[common], help="list the stored keys")
    p.add_argument("domain", nargs="?", metavar="DOMAIN")
    p = ksub.add_parser("rotate", parents=[common],
                        help="make a new dated key and retire the domain's old ones")
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--algorithm", choices=("rsa", "ed25519"), default="rsa",
                   help="which key to rotate (default rsa)")
    p = ksub.add_parser("delete", parents=[common], help="delete a retired key")
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("selector", metavar="SELECTOR")
    dkim.set_defaults(func=cmd_dkim)

    p = sub.add_parser("dns", parents=[common],
                       help="print the DNS records a local domain should publish; "
                       "'dns check DOMAIN' asks the resolver whether they are there")
    p.add_argument("domain", metavar="DOMAIN", help="the domain, or 'check'")
    p.add_argument("target", nargs="?", metavar="DOMAIN",
                   help="with 'check': the domain to check")
    p.set_defaults(func=cmd_dns)

    queue = sub.add_parser("queue", help="inspect and manage the outbound queue")
    qsub = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    qsub.add_parser("list", parents=[common],
                    help="list queued messages, each with its recipients")
    for action, text in (("show", "show a message's envelope and recipients"),
                         ("retry", "make a message due now"),
                         ("hold", "take a message off the schedule until release"),
                         ("release", "put a held message back on the schedule, due now"),
                         ("delete", "drop a message without a bounce")):
        p = qsub.add_parser(action, parents=[common], help=text)
        p.add_argument("id", metavar="ID")
    p = qsub.add_parser("bounce", parents=[common],
                        help="return a message to its sender with a DSN (550 5.0.0)")
    p.add_argument("id", metavar="ID")
    p.add_argument("--reason", help="text for the DSN's Diagnostic-Code "
                   "(default: returned by the postmaster)")
    qsub.add_parser("flush", parents=[common], help="make every queued message due now")
    queue.set_defaults(func=cmd_queue)
