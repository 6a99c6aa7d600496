"""CPU per message of the sender-authentication verdicts, in process (issue #11 §4).

``judge()`` (SPF for HELO and MAIL FROM, DKIM, ARC, DMARC) over DNS answers
held in a dict, on this thread, for a few kinds of message: what part 11's
``smtp-source`` sends (no signature), one RSA-2048 DKIM signature, one
Ed25519 signature, and an RSA signature plus one ARC set (three RSA
verifications).  Prints microseconds of thread CPU per message, per method
(median of ``--rounds``); ``--stage`` instead times the whole stage
(``SenderAuthentication.check_data``: verdicts, Authentication-Results, the
log line) with our resolver asking a loopback DNS server
(tests/support/dnsserver.py), 20 messages at a time, in process CPU::

    PYTHONPATH=$PWD .venv/bin/python bench/checks_cpu.py [--count 2000] [--rounds 3]
    PYTHONPATH=$PWD .venv/bin/python bench/checks_cpu.py --stage
    PYTHONPATH=$PWD .venv/bin/python bench/checks_cpu.py --profile dkim-rsa

Not a test; asserts only that the verdicts are the expected ones (a faster
wrong answer is no figure).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailserver.checks import authentication as auth
from mailserver.dkim.keys import generate_key

try:  # the stage's parsed-key cache (absent before issue #11 §4's work)
    from mailserver.dkim.verify import KeyCache
except ImportError:
    KeyCache = None


class DictDns:
    """``ThreadDns``'s interface over a dict ``(name, type) -> records``."""

    def __init__(self, records: dict[tuple[str, str], list]) -> None:
        self.records = records

    def _get(self, name: str, kind: str) -> list:
        return self.records.get((name.lower().rstrip("."), kind), [])

    def txt(self, name: str) -> list[str]:
        return self._get(name, "TXT")

    def a(self, name: str) -> list[str]:
        return self._get(name, "A")

    def aaaa(self, name: str) -> list[str]:
        return []

    def mx(self, name: str) -> list:
        return self._get(name, "MX")

    def ptr(self, name: str) -> list[str]:
        return []


def _dkimpy_key(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return base64.b64encode(raw)


def _message(size: int = 4096) -> bytes:
    """Roughly what smtp-source -l 4096 sends (its header, lines of text)."""
    head = (b"From: <bench@example.net>\r\nTo: <alice@example.test>\r\n"
            b"Date: Sat, 5 Dec 2026 18:00:00 +0000\r\nMessage-Id: <1.2.3@example.net>\r\n"
            b"Subject: bench\r\n\r\n")
    line = b"La de da de da 1.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def world() -> tuple[DictDns, dict[str, tuple[bytes, str, str]]]:
    """The DNS records and the messages: name -> (bytes, expected dkim, expected arc)."""
    records: dict[tuple[str, str], list] = {
        ("example.net", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
        ("_dmarc.example.net", "TXT"): ["v=DMARC1; p=reject"],
    }
    keys = {}
    for name, algo in (("rsa", "rsa"), ("ed", "ed25519"), ("arc", "rsa")):
        pem, txt = generate_key("example.net", name, algo)
        keys[name] = _dkimpy_key(pem)
        records[(f"{name}._domainkey.example.net", "TXT")] = [txt]
    records[("arc._domainkey.lists.example", "TXT")] = \
        records[("arc._domainkey.example.net", "TXT")]
    plain = _message()

    def signed(msg: bytes, key: str, algo: bytes) -> bytes:
        return dkim.sign(msg, key.encode(), b"example.net", keys[key],
                         canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algo,
                         include_headers=[b"from", b"to", b"subject", b"date",
                                          b"message-id"]) + msg

    rsa_signed = signed(plain, "rsa", b"rsa-sha256")
    received = (b"Authentication-Results: lists.example; dkim=pass header.d=example.net\r\n"
                + rsa_signed)
    arc_fields = dkim.arc_sign(received, b"arc", b"lists.example", keys["arc"],
                               b"lists.example", include_headers=[b"from", b"to", b"subject"])
    messages = {
        "unsigned": (plain, "", "none"),
        "dkim-rsa": (rsa_signed, "pass", "none"),
        "dkim-ed25519": (signed(plain, "ed", b"ed25519-sha256"), "pass", "none"),
        "dkim-rsa+arc": (b"".join(arc_fields) + received, "pass", "pass"),
    }
    return DictDns(records), messages


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.thread_time()
    out = fn()
    return out, time.thread_time() - t0


def _facts() -> auth._Facts:
    """The envelope, with a key cache as the stage has one."""
    keys = {"keys": KeyCache()} if KeyCache is not None else {}
    return auth._Facts("127.0.0.1", "client.example.net", "bench@example.net",
                       "mx.example.test", 5, **keys)


def one_round(dns: DictDns, msg: bytes, count: int) -> dict[str, float]:
    """Mean µs of thread CPU per message: the whole ``judge()`` and each method alone."""
    facts = _facts()
    keys = {"keys": facts.keys} if KeyCache is not None else {}
    out = {}
    _, t = _timed(lambda: [auth.judge(dns, msg, facts, auth._Partial(), lambda: 0.0)
                           for _ in range(count)])
    out["judge"] = t / count * 1e6
    _, t = _timed(lambda: [auth.check_mail_from(dns, facts.ip, facts.mail_from, facts.helo)
                           for _ in range(count)])
    out["spf mail from"] = t / count * 1e6
    _, t = _timed(lambda: [auth.verify_dkim(msg, dns.txt, max_signatures=5, **keys)
                           for _ in range(count)])
    out["dkim"] = t / count * 1e6
    _, t = _timed(lambda: [auth.verify_arc(msg, dns.txt, **keys) for _ in range(count)])
    out["arc"] = t / count * 1e6
    return out


class _Ctx:
    """The ``CheckContext`` fields the stage reads (HELO as smtp-source's: no domain)."""

    listener, submission, peer_ip, tls, helo = "mx", False, "127.0.0.1", False, "vm"
    auth_user, mail_from, mail_size, rcpt_count = None, "bench@example.net", None, 1

    def __init__(self, resolver: object) -> None:
        self.resolver = resolver


async def stage_cpu(records: DictDns, messages: dict[str, tuple[bytes, str, str]],
                    count: int, rounds: int) -> None:
    """µs of process CPU per message through the whole stage (see the module doc)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from support.dnsserver import DnsServer

    from mailserver import log as mlog
    from mailserver.config import ChecksSettings, LogSettings
    from mailserver.dns.resolver import DnsPythonResolver

    with open("/dev/null", "w") as sink:
        mlog.configure(LogSettings(format="json"), sink)  # as the daemon logs, unread
        server = DnsServer()
        server.start()
        try:
            for (name, kind), values in records.records.items():
                server.add(name, kind, *values)
            stage = auth.SenderAuthentication(ChecksSettings(verify=True),
                                              hostname="mx.example.test")
            ctx = _Ctx(DnsPythonResolver(server.address, server.port, timeout=5))
            print(f"µs of process CPU per message through the stage (median of {rounds} "
                  f"rounds x {count}, 20 at a time)")
            for name, (msg, _, _) in messages.items():
                async def some(n: int, msg: bytes = msg) -> None:
                    for _ in range(n):
                        await stage.check_data(ctx, msg)  # type: ignore[arg-type]

                await asyncio.gather(*(some(5) for _ in range(20)))  # DNS answers cached
                per = []
                for _ in range(rounds):
                    t0 = time.process_time()
                    await asyncio.gather(*(some(count // 20) for _ in range(20)))
                    per.append((time.process_time() - t0) / (count // 20 * 20) * 1e6)
                print(f"{name:<14}{statistics.median(per):>8.0f}")
            stage.close()
        finally:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="messages per round and kind")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", metavar="KIND", help="cProfile judge() on one kind instead")
    ap.add_argument("--stage", action="store_true", help="the whole stage, our resolver")
    args = ap.parse_args()
    dns, messages = world()
    facts = _facts()
    for name, (msg, dkim_expected, arc_expected) in messages.items():
        p = auth._Partial()
        auth.judge(dns, msg, facts, p, lambda: 0.0)
        got = (",".join(d.result for d in p.dkim), p.arc.result, p.spf.result,
               p.dmarc[0].result)
        assert got == (dkim_expected, arc_expected, "pass", "pass"), (name, got, p)
    if args.stage:
        asyncio.run(stage_cpu(dns, messages, args.count, args.rounds))
        return
    if args.profile:
        msg = messages[args.profile][0]
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.count):
            auth.judge(dns, msg, facts, auth._Partial(), lambda: 0.0)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    print(f"µs of CPU per message (median of {args.rounds} rounds x {args.count})")
    cols = ("judge", "spf mail from", "dkim", "arc")
    print(f"{'message':<14}" + "".join(f"{c:>15}" for c in cols))
    for name, (msg, _, _) in messages.items():
        rounds = [one_round(dns, msg, args.count) for _ in range(args.rounds)]
        print(f"{name:<14}" + "".join(
            f"{statistics.median(r[c] for r in rounds):>15.0f}" for c in cols))


if __name__ == "__main__":
    main()
