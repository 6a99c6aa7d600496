"""The sender-authentication stage keeps parsed DKIM keys (``dkim.verify.KeyCache``)
but never past the DNS answer they came from: a key rotated in DNS is used
once the old answer's TTL has run out, and a broken key record is never
kept.  The stage's own resolver against a loopback DNS server."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from support.dnsserver import DnsServer

from mailserver.checks.authentication import SenderAuthentication
from mailserver.config import ChecksSettings
from mailserver.dkim.keys import generate_key
from mailserver.dns.resolver import DnsPythonResolver

TTL = 1  # seconds: the test waits it out once


@dataclass
class Ctx:
    """The ``CheckContext`` fields the stage reads."""

    resolver: Any
    listener: str = "mx"
    submission: bool = False
    peer_ip: str = "127.0.0.1"
    tls: bool = False
    helo: str | None = "client.example.com"
    auth_user: str | None = None
    mail_from: str | None = "someone@example.com"
    mail_size: int | None = None
    rcpt_count: int = 1


@pytest.fixture
def zone() -> Iterator[DnsServer]:
    server = DnsServer()
    server.ttl = TTL
    server.start()
    server.add("example.com", "TXT", "v=spf1 -all")
    server.add("_dmarc.example.com", "TXT", "v=DMARC1; p=none")
    yield server
    server.stop()


def _signed(pem: bytes, subject: str, selector: bytes = b"s") -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    message = (f"From: <someone@example.com>\r\nTo: <alice@example.test>\r\n"
               f"Subject: {subject}\r\n\r\nHello.\r\n").encode()
    return dkim.sign(message, selector, b"example.com", base64.b64encode(raw),
                     signature_algorithm=b"ed25519-sha256",
                     include_headers=[b"from", b"to", b"subject"]) + message


async def _dkim(stage: SenderAuthentication, ctx: Ctx, message: bytes) -> str:
    verdict = await stage.check_data(ctx, message)
    field = dict(verdict.headers)["Authentication-Results"]
    return next(part.split()[0] for part in field.split(";") if "dkim=" in part).strip()


async def test_a_rotated_key_is_used_after_the_ttl(zone: DnsServer) -> None:
    old_pem, old_txt = generate_key("example.com", "s", "ed25519")
    new_pem, new_txt = generate_key("example.com", "s", "ed25519")
    zone.add("s._domainkey.example.com", "TXT", old_txt)
    stage = SenderAuthentication(ChecksSettings(verify=True), hostname="mx.example.test")
    ctx = Ctx(DnsPythonResolver(zone.address, zone.port, timeout=5))
    try:
        assert await _dkim(stage, ctx, _signed(old_pem, "one")) == "dkim=pass"
        assert await _dkim(stage, ctx, _signed(old_pem, "two")) == "dkim=pass"
        assert len(stage.keys) == 1
        zone.remove("s._domainkey.example.com", "TXT")
        zone.add("s._domainkey.example.com", "TXT", new_txt)
        await asyncio.sleep(TTL + 0.2)  # the resolver's answer has expired
        assert await _dkim(stage, ctx, _signed(new_pem, "three")) == "dkim=pass"
        assert await _dkim(stage, ctx, _signed(old_pem, "four")) == "dkim=fail"
        assert len(stage.keys) == 2
        # A broken record: refused each time, never kept.
        zone.remove("s._domainkey.example.com", "TXT")
        zone.add("s._domainkey.example.com", "TXT", "v=DKIM1; k=ed25519; p=AA==")
        await asyncio.sleep(TTL + 0.2)
        for subject in ("five", "six"):
            assert await _dkim(stage, ctx, _signed(new_pem, subject)) == "dkim=permerror"
        assert len(stage.keys) == 2
    finally:
        stage.close()


async def test_a_question_not_cached_sends_the_message_to_a_thread(zone: DnsServer) -> None:
    pem, txt = generate_key("example.com", "s", "ed25519")
    zone.add("s._domainkey.example.com", "TXT", txt)
    stage = SenderAuthentication(ChecksSettings(verify=True), hostname="mx.example.test")
    ctx = Ctx(DnsPythonResolver(zone.address, zone.port, timeout=5))
    try:
        # Cold: on a thread; then on the loop, every answer cached.
        assert await _dkim(stage, ctx, _signed(pem, "one")) == "dkim=pass"
        assert stage._executor is not None
        stage.close()
        assert await _dkim(stage, ctx, _signed(pem, "two")) == "dkim=pass"
        assert stage._executor is None  # no thread was needed
        # SPF and DMARC cached, this selector's key not: judged again on a thread.
        zone.add("t._domainkey.example.com", "TXT", txt)
        assert await _dkim(stage, ctx, _signed(pem, "three", b"t")) == "dkim=pass"
        assert stage._executor is not None
    finally:
        stage.close()


async def test_many_signatures_are_judged_on_a_thread(zone: DnsServer) -> None:
    pem, txt = generate_key("example.com", "s", "ed25519")
    zone.add("s._domainkey.example.com", "TXT", txt)
    stage = SenderAuthentication(ChecksSettings(verify=True), hostname="mx.example.test")
    ctx = Ctx(DnsPythonResolver(zone.address, zone.port, timeout=5))
    try:
        assert await _dkim(stage, ctx, _signed(pem, "one")) == "dkim=pass"  # now cached
        stage.close()
        message = _signed(pem, "two")
        for _ in range(3):  # four signatures in all: more than INLINE_SIGNATURES
            message = _signed(pem, "two").split(b"From:")[0] + message
        verdict = await stage.check_data(ctx, message)
        assert dict(verdict.headers)["Authentication-Results"].count("dkim=pass") == 4
        assert stage._executor is not None
    finally:
        stage.close()
