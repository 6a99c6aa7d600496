"""DKIM signing, checked with dkimpy: every signed header is oversigned
(RFC 6376 §5.4.2, §8.15), so a second ``From:``/``Subject:`` added after
signing breaks the signature.
"""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest

from mailserver.dkim.keys import load_keys, write_key
from mailserver.dkim.sign import sign

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@dest.test\r\n"
    b"Subject: quarterly figures\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.test>\r\n\r\nThe figures are attached.\r\n"
)


@pytest.fixture(params=["rsa", "ed25519"])
def signed(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[bytes, object]:
    _, txt = write_key(tmp_path, "example.test", "sel", request.param)
    (key,) = load_keys(tmp_path, "example.test")

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:  # dkimpy's DNS hook: our record
        assert name == b"sel._domainkey.example.test."
        return txt.encode()

    return sign(MESSAGE, "example.test", [key]) + MESSAGE, dnsfunc


def _h_tag(message: bytes) -> list[bytes]:
    sig = message.split(b"\r\n\r\n", 1)[0].split(b"DKIM-Signature:", 1)[1]
    unfolded = b"".join(sig.split()).decode()
    tags = dict(t.split("=", 1) for t in unfolded.split(";") if "=" in t)
    return [h.strip().lower().encode() for h in tags["h"].split(":")]


def test_signature_verifies_and_oversigns(signed: tuple[bytes, object]) -> None:
    message, dnsfunc = signed
    assert dkim.verify(message, dnsfunc=dnsfunc)
    h = _h_tag(message)
    for name in (b"from", b"to", b"subject", b"date", b"message-id"):
        assert h.count(name) == 2, (name, h)  # present once, signed twice
    assert b"cc" not in h and b"reply-to" not in h  # absent ones stay unsigned


@pytest.mark.parametrize("added", [
    b"From: Mallory <ceo@example.test>\r\n",
    b"Subject: urgent: wire the money\r\n",
    b"To: victim@dest.test\r\n",
])
def test_an_added_header_breaks_the_signature(signed: tuple[bytes, object], added: bytes) -> None:
    message, dnsfunc = signed
    head, body = message.split(b"\r\n\r\n", 1)
    for tampered in (head + b"\r\n" + added + b"\r\n" + body,  # after the signed one
                     added + message):  # before every field, the signature included
        assert not dkim.verify(tampered, dnsfunc=dnsfunc), added
