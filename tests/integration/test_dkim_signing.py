"""Regression tests for review findings on DKIM signing and private files.

* DKIM: every signed header is oversigned (RFC 6376 §5.4.2, §8.15), so a
  second ``From:``/``Subject:`` added after signing breaks the signature.
* Private keys are written 0600 whatever temporary files were left behind
  (``fsutil.write_atomic``, shared by tls.py, dkim/keys.py and daemon.py).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import dkim
import pytest

from mailserver.dkim.keys import load_keys, write_key
from mailserver.dkim.sign import sign
from mailserver.fsutil import write_atomic
from mailserver.tls import make_self_signed

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


def test_tls_key_is_0600_despite_a_stale_loose_temporary_file(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir(mode=0o700)
    # What a crash (or another program) may have left: a world-readable temp file
    # at the name the old writer reused with O_TRUNC, keeping its mode.
    for stale in (tls / ".key.pem.tmp", tls / "key.pem.tmp"):
        stale.write_bytes(b"stale")
        os.chmod(stale, 0o644)
    make_self_signed("mx.example.test", tls / "cert.pem", tls / "key.pem")
    assert stat.S_IMODE((tls / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tls / "cert.pem").stat().st_mode) == 0o644
    assert (tls / "key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_write_atomic_sets_the_exact_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"old")
    os.chmod(target, 0o666)
    old_umask = os.umask(0o022)
    try:
        write_atomic(target, b"new", 0o600)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        write_atomic(target, b"public", 0o644)
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"public"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing-dir" / "x", b"", 0o600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]
