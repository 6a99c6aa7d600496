"""Pure helpers of the SMTP server: enhanced codes, trace fields, header scan, local delivery."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from mailserver.delivery.local import LocalRecipient, trace_prefix, unique_accounts
from mailserver.protocol.smtp.replies import add_enhanced_code, enhanced_code
from mailserver.protocol.smtp.trace import (
    address_literal,
    header_field_names,
    received_field,
    submission_fixups,
    with_protocol,
)


@pytest.mark.parametrize(
    ("line", "command", "expected"),
    [
        ("250 OK", "NOOP", "250 2.0.0 OK"),
        ("250 OK", "RCPT", "250 2.1.5 OK"),
        ("250 OK", "MAIL", "250 2.1.0 OK"),
        ("503 Error: need MAIL command", "RCPT", "503 5.5.1 Error: need MAIL command"),
        ("552 Error: Too much mail data", "DATA", "552 5.3.4 Error: Too much mail data"),
        (
            '500 Error: command "X" not recognized',
            None,
            '500 5.5.2 Error: command "X" not recognized',
        ),
        ("501 Syntax: MAIL FROM: <address>", "MAIL", "501 5.5.4 Syntax: MAIL FROM: <address>"),
        ("553 5.1.3 Error: malformed address", "RCPT", "553 5.1.3 Error: malformed address"),
        ("221 Bye", "QUIT", "221 2.0.0 Bye"),
        ("220 Ready to start TLS", "STARTTLS", "220 2.0.0 Ready to start TLS"),
        ("250-first", "HELP", "250-2.0.0 first"),
        ("454 TLS not available", "STARTTLS", "454 4.7.0 TLS not available"),
        ("599 odd", None, "599 5.0.0 odd"),
        ("250", "NOOP", "250 2.0.0"),
        # Untouched: 3xx, 1xx, already coded, not a reply.
        ("354 End data with <CR><LF>.<CR><LF>", "DATA", "354 End data with <CR><LF>.<CR><LF>"),
        ("334 VXNlcm5hbWU6", "AUTH", "334 VXNlcm5hbWU6"),
        ("550 5.1.1 No such user", "RCPT", "550 5.1.1 No such user"),
        ("hello", None, "hello"),
    ],
)
def test_add_enhanced_code(line, command, expected):
    assert add_enhanced_code(line, command) == expected


def test_enhanced_code_class_matches_reply_class():
    for code in range(200, 600):
        for command in (None, "MAIL", "RCPT", "DATA", "AUTH", "QUIT"):
            found = enhanced_code(code, command)
            if code // 100 in (2, 4, 5):
                assert found is not None and found[0] == str(code // 100)
            else:
                assert found is None


def test_received_field_one_recipient():
    when = dt.datetime(2024, 11, 20, 23, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    field = received_field(
        helo="client.test",
        peer_ip="192.0.2.7",
        hostname="mx.example.test",
        protocol="ESMTPS",
        queue_id="ABCDEF012345",
        recipients=["alice@example.test"],
        when=when,
    )
    assert field == (
        b"Received: from client.test ([192.0.2.7])\r\n"
        b"\tby mx.example.test with ESMTPS id ABCDEF012345\r\n"
        b"\tfor <alice@example.test>;\r\n"
        b"\tWed, 20 Nov 2024 23:00:05 +0100\r\n"
    )


def test_received_field_records_tls_as_postfix_does():
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    field = received_field(
        helo="client.test", peer_ip="192.0.2.7", hostname="mx.example.test",
        protocol="ESMTPS", queue_id="Q", recipients=[], when=when,
        tls=("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256),
    )
    assert field.split(b"\r\n")[:3] == [
        b"Received: from client.test ([192.0.2.7])",
        b"\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))",
        b"\tby mx.example.test with ESMTPS id Q;",
    ]


def test_received_field_hides_recipients_and_sanitises_helo():
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    field = received_field(
        helo="evil\r\nX-Injected: 1 (x)",
        peer_ip="::1",
        hostname="mx.example.test",
        protocol="ESMTP",
        queue_id="Q",
        recipients=["a@example.test", "b@example.test"],
        when=when,
    )
    lines = field.split(b"\r\n")
    assert lines[0] == b"Received: from evil??X-Injected:?1??x? ([IPv6:::1])"
    assert lines[1] == b"\tby mx.example.test with ESMTP id Q;"
    assert b"for" not in field
    assert field.count(b"\r\n") == 3


def test_address_literal():
    assert address_literal("192.0.2.1") == "[192.0.2.1]"
    assert address_literal("2001:db8::1") == "[IPv6:2001:db8::1]"
    assert address_literal("::ffff:192.0.2.1") == "[192.0.2.1]"
    assert address_literal("fe80::1%eth0") == "[IPv6:fe80::1]"


@pytest.mark.parametrize(
    ("esmtp", "tls", "auth", "utf8", "expected"),
    [
        (False, True, True, False, "SMTP"),
        (True, False, False, False, "ESMTP"),
        (True, True, False, False, "ESMTPS"),
        (True, True, True, False, "ESMTPSA"),
        (True, False, True, False, "ESMTPA"),
        (True, True, True, True, "UTF8SMTPSA"),
    ],
)
def test_with_protocol(esmtp, tls, auth, utf8, expected):
    assert with_protocol(esmtp=esmtp, tls=tls, auth=auth, utf8=utf8) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: x\r\nMessage-Id: <a@b>\r\n\r\nDate: not a header\r\n",
        b"Subject: x\nMESSAGE-ID:<a@b>\n\nbody",
        b"Subject: x\r\n folded\r\nmessage-id\t: <a@b>\r\n",
    ],
)
def test_header_field_names(data):
    names = header_field_names(data)
    assert "message-id" in names
    assert "date" not in names
    assert "subject" in names


def test_submission_fixups():
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    both = submission_fixups(b"Subject: x\r\n\r\n", hostname="mx.example.test", when=when)
    assert re.fullmatch(
        rb"Message-ID: <[0-9a-f]{24}@mx\.example\.test>\r\nDate: Tue, 02 Jan 2024 03:04:05 \+0000\r\n",
        both,
    )
    complete = b"Date: x\r\nMessage-ID: <y>\r\n\r\n"
    assert submission_fixups(complete, hostname="h", when=when) == b""
    # A body line that looks like a field does not count.
    assert submission_fixups(b"\r\nDate: x\r\n", hostname="h", when=when).count(b"Date:") == 1


def test_trace_prefix_and_unique_accounts():
    assert (
        trace_prefix("", "a@example.test") == b"Return-Path: <>\r\nDelivered-To: a@example.test\r\n"
    )
    assert trace_prefix("s\u00e9@x.test", "b@y.test").startswith(
        "Return-Path: <s\u00e9@x.test>".encode()
    )
    rcpts = [
        LocalRecipient("alice+x@example.test", "alice@example.test"),
        LocalRecipient("bob@example.test", "bob@example.test"),
        LocalRecipient("Alice@example.test", "ALICE@example.test"),
    ]
    assert [r.forward_path for r in unique_accounts(rcpts)] == [
        "alice+x@example.test",
        "bob@example.test",
    ]


def test_format_reply_single_and_multi_line():
    from mailserver.errors import SmtpReply
    from mailserver.protocol.smtp.replies import format_reply, reply_bytes

    assert format_reply(250, "2.0.0", ["Ok"]) == b"250 2.0.0 Ok\r\n"
    assert format_reply(250, None, ["mx.example", "PIPELINING", "SIZE 10"]) == (
        b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
    )
    assert format_reply(550, "5.7.1", ["one", "two"]) == b"550-5.7.1 one\r\n550 5.7.1 two\r\n"
    assert format_reply(354, None, []) == b"354\r\n"
    assert reply_bytes(SmtpReply(451, "4.3.0", "a\nb")) == b"451-4.3.0 a\r\n451 4.3.0 b\r\n"
    with pytest.raises(ValueError):
        format_reply(250, None, ["injected\r\n250 more"])
    with pytest.raises(ValueError):
        format_reply(99, None, ["x"])
