"""RFC 3461 in queue records and reports: optional record fields, Original-Envelope-Id,
Original-Recipient, RET=FULL/HDRS and success reports."""

from __future__ import annotations

import email
import email.policy

from mailserver.protocol.dsn_params import MailDsn, Orcpt, RcptDsn
from mailserver.queue import model
from mailserver.queue.dsn import MAX_RETURNED_MESSAGE, DsnRecipient, build_dsn, status_of

ORIGINAL = (
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: hi\r\n"
    b"\r\nsecret body line\r\n"
)

OLD_RECORD = (
    b'{"v":1,"id":"q1","from":"a@example.test","created":1.0,"blob":"00ff","size":3,'
    b'"next":2.0,"attempts":1,"warned":false,'
    b'"rcpts":[["b@remote.test","deferred",1,"451 4.3.0 later","mx.remote.test"]]}'
)


def test_record_without_dsn_fields_still_reads() -> None:
    rec = model.decode(OLD_RECORD)
    assert rec.dsn is None
    assert rec.recipients[0].dsn is None
    assert rec.recipients[0].last_error == "451 4.3.0 later"
    assert model.encode(rec) == OLD_RECORD  # nothing added when there is nothing to say


def test_record_with_dsn_fields_round_trips() -> None:
    rec = model.decode(OLD_RECORD)
    rcpt = model.Recipient("b@remote.test", dsn=RcptDsn(frozenset({"SUCCESS"}),
                                                        Orcpt("rfc822", "B@Remote.test")))
    never = model.Recipient("c@remote.test", dsn=RcptDsn(notify=frozenset()))
    rec = rec.with_recipients((rcpt, never, model.Recipient("d@remote.test")),
                              dsn=MailDsn("HDRS", "env-1"))
    again = model.decode(model.encode(rec))
    assert again == rec
    assert again.recipients[1].dsn == RcptDsn(notify=frozenset())


def _status_part(raw: bytes) -> bytes:
    return raw.split(b"Content-Type: message/delivery-status\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]


def _build(**kw: object) -> bytes:
    args: dict[str, object] = dict(
        reporting_mta="mail.example.test", reverse_path="alice@example.test",
        recipients=[DsnRecipient("bob@remote.test", "failed", "5.1.1",
                                 "550 5.1.1 no such user", "mx.remote.test",
                                 Orcpt("rfc822", "Bob+tag@remote.test"))],
        original=ORIGINAL, arrival_date=1_700_000_000.0, now=1_700_000_100.0,
    )
    args.update(kw)
    return build_dsn(**args)  # type: ignore[arg-type]


def test_envid_and_orcpt_lead_their_field_groups() -> None:
    blocks = _status_part(_build(envid="QQ314159")).split(b"\r\n\r\n")
    assert blocks[0].startswith(b"Original-Envelope-Id: QQ314159\r\nReporting-MTA: dns; ")
    assert blocks[1].startswith(b"Original-Recipient: rfc822; Bob+tag@remote.test\r\n"
                                b"Final-Recipient: rfc822; bob@remote.test\r\n")


def test_no_envid_no_original_fields() -> None:
    raw = _build(recipients=[DsnRecipient("bob@remote.test", "failed", "5.1.1")])
    assert b"Original-Envelope-Id" not in raw and b"Original-Recipient" not in raw


def test_ret_full_returns_the_whole_message_in_a_failure_report() -> None:
    raw = _build(return_full=True)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = list(msg.iter_parts())
    assert parts[2].get_content_type() == "message/rfc822"
    assert b"secret body line" in raw


def test_headers_only_by_default_and_for_huge_messages() -> None:
    assert b"secret body line" not in _build()
    huge = ORIGINAL + b"x" * MAX_RETURNED_MESSAGE
    raw = _build(original=huge, return_full=True)
    assert b"text/rfc822-headers" in raw and b"secret body line" not in raw


def test_ret_full_does_not_apply_to_success_reports() -> None:
    raw = _build(recipients=[DsnRecipient("bob@remote.test", "relayed", "2.0.0",
                                          "250 2.0.0 queued", "mx.remote.test")],
                 return_full=True)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Successful Mail Delivery Report"
    assert b"Action: relayed\r\nStatus: 2.0.0" in raw
    assert b"secret body line" not in raw


def test_status_of_success_reply() -> None:
    assert status_of("250 2.0.0 queued", False) == "2.0.0"
    assert status_of("250 ok", False) == "2.0.0"
