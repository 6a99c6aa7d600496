"""RFC 3464 DSN building: structure, fields, original headers, loop rules."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from mailserver.queue.dsn import (
    DsnRecipient,
    build_dsn,
    header_section,
    recipient_field,
    status_of,
)

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"

ORIGINAL = (
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <m1@example.test>\r\n"
    b"\r\nsecret body line\r\n"
)


def _build(**kw: object) -> bytes:
    args: dict[str, object] = dict(
        reporting_mta="mail.example.test",
        reverse_path="alice@example.test",
        recipients=[DsnRecipient("bob@remote.test", "failed", "5.1.1",
                                 "550 5.1.1 no such user", "mx.remote.test")],
        original=ORIGINAL,
        arrival_date=1_700_000_000.0,
        queue_id="abc",
        now=1_700_000_100.0,
    )
    args.update(kw)
    return build_dsn(**args)  # type: ignore[arg-type]


def test_structure_is_multipart_report_with_three_parts() -> None:
    raw = _build()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"] == "alice@example.test"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert "MAILER-DAEMON@mail.example.test" in msg["From"]
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]


def test_delivery_status_fields() -> None:
    raw = _build()
    status = raw.split(b"Content-Type: message/delivery-status\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]
    blocks = status.split(b"\r\n\r\n")
    assert b"Reporting-MTA: dns; mail.example.test" in blocks[0]
    assert b"Arrival-Date: " in blocks[0]
    rcpt = blocks[1]
    for field in (b"Final-Recipient: rfc822; bob@remote.test", b"Action: failed",
                  b"Status: 5.1.1", b"Remote-MTA: dns; mx.remote.test",
                  b"Diagnostic-Code: smtp; 550 5.1.1 no such user"):
        assert field in rcpt


def test_original_headers_are_quoted_byte_for_byte_without_body() -> None:
    raw = _build()
    assert ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n" in raw
    assert b"secret body line" not in raw


def test_delayed_report_has_will_retry_until() -> None:
    raw = _build(recipients=[DsnRecipient("bob@remote.test", "delayed", "4.4.1", "451 later")],
                 retry_until=1_700_400_000.0)
    assert b"Subject: Delayed Mail" in raw
    assert b"Action: delayed" in raw and b"Will-Retry-Until: " in raw


def test_no_dsn_to_null_reverse_path() -> None:
    with pytest.raises(ValueError):
        _build(reverse_path="")


def test_remote_reply_cannot_inject_fields() -> None:
    raw = _build(recipients=[DsnRecipient("bob@remote.test", "failed", "5.0.0",
                                          "550 bad\r\nX-Injected: yes")])
    assert b"\r\nX-Injected" not in raw


@pytest.mark.parametrize(("reply", "permanent", "want"), [
    ("550 5.1.1 no such user", True, "5.1.1"),
    ("451 4.3.0 later", False, "4.3.0"),
    ("550 mailbox unavailable", True, "5.0.0"),
    ("550 4.1.1 inconsistent", True, "5.0.0"),
    ("", True, "5.0.0"),
    ("connection refused", False, "4.0.0"),
])
def test_status_of(reply: str, permanent: bool, want: str) -> None:
    assert status_of(reply, permanent) == want


def test_corpus_headers_survive_and_stay_bounded() -> None:
    messages = sorted((CORPUS / "messages").glob("*.eml"))
    assert messages, f"shared corpus missing at {CORPUS}"
    for path in messages:
        data = path.read_bytes()
        raw = _build(original=data)
        head = header_section(data)
        assert head in raw
        assert len(head) <= 64 * 1024
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg.get_content_type() == "multipart/report"


def test_non_ascii_recipient_is_utf8_type_in_xtext_form() -> None:
    """RFC 6533 §3: a non-ASCII address is address type "utf-8", and in a
    message/delivery-status part (7-bit) its utf-8-addr-xtext form."""
    raw = _build(recipients=[
        DsnRecipient("jürgen+x@bücher.example", "failed", "5.1.1", "550 5.1.1 no"),
        DsnRecipient("bob@remote.test", "failed", "5.1.1", "550 5.1.1 no"),
    ])
    status = raw.split(b"Content-Type: message/delivery-status", 1)[1].split(b"\r\n--", 1)[0]
    assert status.isascii()
    assert b"Final-Recipient: utf-8; j\\x{FC}rgen\\x{2B}x@b\\x{FC}cher.example\r\n" in status
    assert b"Final-Recipient: rfc822; bob@remote.test\r\n" in status
    assert b"rfc822; j" not in status


@pytest.mark.parametrize(("address", "field"), [
    ("a@b.test", "rfc822; a@b.test"),
    ("a+b=c@b.test", "rfc822; a+b=c@b.test"),
    ("中@例え.jp", "utf-8; \\x{4E2D}@\\x{4F8B}\\x{3048}.jp"),
    ("é\\x@b.test", "utf-8; \\x{E9}\\x{5C}x@b.test"),
    ("😀@b.test", "utf-8; \\x{1F600}@b.test"),
])
def test_recipient_field(address: str, field: str) -> None:
    assert recipient_field(address) == field


def test_full_return_of_a_bare_lf_message_has_crlf_lines() -> None:
    """A message queued before intake converted bare LFs comes back with CRLF lines."""
    lf = ORIGINAL.replace(b"\r\n", b"\n")
    raw = _build(original=lf, return_full=True)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert ORIGINAL in raw
