"""``mailserver dkim|dns|queue``: the outbound side of the command line.

::

    mailserver dkim keygen DOMAIN [--selector S] [--algorithm rsa|ed25519]
    mailserver dns DOMAIN
    mailserver queue list | show ID | retry ID | delete ID | flush

The queue commands open the store directly (LMDB serialises writers across
processes, so they are safe while the daemon runs).  ``retry`` and ``flush``
move the message's next attempt to now; a running daemon notices at its
scheduler's next look at the index, within ``queue.manager.RESCAN`` seconds
(30).  ``delete`` drops the message without a DSN; if the daemon is
delivering it at that moment, that round still finishes (and its record
update is dropped: the message stays deleted).
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from mailserver.config import Config
from mailserver.errors import MailserverError, NotFound


def _load(args: argparse.Namespace) -> Config:
    from mailserver.cli import load_config  # late: cli imports this module

    return load_config(args)


def _domain(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        raise MailserverError(f"{name!r} is not a valid domain name") from None


def default_selector(config: Config, algorithm: str) -> str:
    """``[dkim] selector`` for RSA, ``<selector>-ed25519`` for Ed25519 (two keys of
    one domain need two selectors, RFC 6376 §3.1)."""
    selector = config.dkim.selector
    return selector if algorithm == "rsa" else f"{selector}-{algorithm}"


def txt_record(name: str, value: str) -> str:
    """A zone-file TXT line; values over 255 octets split into several strings
    (RFC 1035 §3.3.14: one character-string holds at most 255)."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return f"{name}. 3600 IN TXT " + " ".join(f'"{c}"' for c in chunks)


# -- dkim --------------------------------------------------------------------------


def cmd_dkim(args: argparse.Namespace) -> int:
    from mailserver.dkim.keys import write_key

    config = _load(args)
    domain = _domain(args.domain)
    selector = args.selector or default_selector(config, args.algorithm)
    path, txt = write_key(config.data_dir, domain, selector, args.algorithm)
    print(f"# {args.algorithm} key written to {path} (mode 0600)")
    if args.algorithm not in config.dkim.algorithms:
        print(f"# note: [dkim] algorithms in the config does not list {args.algorithm!r}; "
              "add it to sign with this key")
    print("# publish this DNS record (RFC 6376 §3.6.2.1), then restart the daemon:")
    print(txt_record(f"{selector}._domainkey.{domain}", txt))
    return 0


# -- dns ---------------------------------------------------------------------------


def _service_port(config: Config, protocol: str, tls: str) -> int | None:
    for lst in config.listeners:
        if lst.protocol == protocol and lst.tls == tls and lst.port:
            return lst.port
    return None


def dns_records(config: Config, domain: str) -> list[str]:
    """The zone-file lines ``domain`` should publish for this server.

    MX (RFC 5321 §5.1) to our hostname; SPF (RFC 7208) allowing the MX hosts;
    DKIM keys stored for the domain (RFC 6376 §3.6.2); DMARC (RFC 7489 §6.1);
    RFC 6186 SRV records for mail client set-up, with RFC 8314 §5.1
    ``_submissions``; a service we do not offer gets target "." (RFC 6186 §4).
    """
    from mailserver.dkim.keys import key_dir

    host = config.hostname
    lines = [
        "; mail exchanger (RFC 5321 §5.1)",
        f"{domain}. 3600 IN MX 10 {host}.",
        "; SPF (RFC 7208): only the MX hosts send for this domain",
        txt_record(domain, "v=spf1 mx -all"),
        "; DKIM public keys (RFC 6376 §3.6.2)",
    ]
    directory = key_dir(config.data_dir, domain)
    txts = sorted(directory.glob("*.txt")) if directory.is_dir() else []
    if txts:
        for path in txts:
            lines.append(txt_record(f"{path.stem}._domainkey.{domain}",
                                    path.read_text("ascii").strip()))
    else:
        lines.append(f"; (none yet: run `mailserver dkim keygen {domain}`)")
    lines += [
        "; DMARC (RFC 7489 §6.1): reports to postmaster",
        txt_record(f"_dmarc.{domain}", f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"),
        "; client autoconfiguration (RFC 6186 §3, RFC 8314 §5.1)",
    ]
    for service, protocol, tls in (
        ("_submission._tcp", "submission", "starttls"),
        ("_submissions._tcp", "submission", "implicit"),
        ("_imap._tcp", "imap", "starttls"),
        ("_imaps._tcp", "imap", "implicit"),
    ):
        port = _service_port(config, protocol, tls)
        target = f"0 1 {port} {host}." if port else "0 0 0 ."
        lines.append(f"{service}.{domain}. 3600 IN SRV {target}")
    return lines


def cmd_dns(args: argparse.Namespace) -> int:
    config = _load(args)
    for line in dns_records(config, _domain(args.domain)):
        print(line)
    return 0


# -- queue -------------------------------------------------------------------------


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def cmd_queue(args: argparse.Namespace) -> int:
    from mailserver.cli import with_store
    from mailserver.queue.manager import QueueManager
    from mailserver.queue.model import QueuedMessage

    config = _load(args)

    async def go(store: Any) -> None:
        # Never started: only its admin methods are used (no delivery here).
        mgr = QueueManager(store, config.outbound)
        m: QueuedMessage | None
        if args.action == "list":
            messages = mgr.list()
            for m in messages:
                active = sum(1 for r in m.recipients if r.status.value in ("pending", "deferred"))
                print(f"{m.id}\t{_when(m.created)}\t{m.size}\t<{m.reverse_path}>\t"
                      f"{active}/{len(m.recipients)} to go\tnext {_when(m.next_attempt)}")
            print(f"{len(messages)} message(s) queued")
        elif args.action == "show":
            m = mgr.show(args.id)
            if m is None:
                raise NotFound(f"no queued message {args.id}")
            print(f"id            {m.id}")
            print(f"from          <{m.reverse_path}>")
            print(f"created       {_when(m.created)}")
            print(f"size          {m.size}")
            print(f"attempts      {m.attempts}")
            print(f"next attempt  {_when(m.next_attempt)}")
            for r in m.recipients:
                extra = f"\t{r.last_error}" if r.last_error else ""
                print(f"rcpt          {r.address}\t{r.status.value}\tattempts={r.attempts}{extra}")
        elif args.action == "retry":
            if not await mgr.retry(args.id):
                raise NotFound(f"no queued message {args.id}")
            print(f"{args.id} is due now")
        elif args.action == "delete":
            if not await mgr.delete(args.id):
                raise NotFound(f"no queued message {args.id}")
            print(f"deleted {args.id}")
        else:
            print(f"{await mgr.flush()} message(s) due now")

    with_store(config, go)
    return 0


# -- parser ------------------------------------------------------------------------


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``dkim``, ``dns`` and ``queue`` subcommands to ``sub``."""
    dkim = sub.add_parser("dkim", help="DKIM signing keys")
    ksub = dkim.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ksub.add_parser("keygen", parents=[common],
                        help="make a key pair and print the DNS TXT record to publish")
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("--selector", metavar="S",
                   help="DNS selector (default: [dkim] selector; '-ed25519' appended for "
                   "ed25519 keys)")
    p.add_argument("--algorithm", choices=("rsa", "ed25519"), default="rsa",
                   help="rsa (2048 bits, default) or ed25519 (RFC 8463)")
    dkim.set_defaults(func=cmd_dkim)

    p = sub.add_parser("dns", parents=[common],
                       help="print the DNS records a domain should publish")
    p.add_argument("domain", metavar="DOMAIN")
    p.set_defaults(func=cmd_dns)

    queue = sub.add_parser("queue", help="inspect and manage the outbound queue")
    qsub = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    qsub.add_parser("list", parents=[common], help="list queued messages")
    for action, text in (("show", "show a message's envelope and recipients"),
                         ("retry", "make a message due now"),
                         ("delete", "drop a message without a bounce")):
        p = qsub.add_parser(action, parents=[common], help=text)
        p.add_argument("id", metavar="ID")
    qsub.add_parser("flush", parents=[common], help="make every queued message due now")
    queue.set_defaults(func=cmd_queue)
