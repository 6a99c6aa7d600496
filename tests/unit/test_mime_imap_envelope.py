"""ENVELOPE (RFC 3501 §7.4.2) and header decoding, from hand-written messages."""

from __future__ import annotations

import pytest

from mailserver.protocol.mime import analyze, header_values, parse_sent_date
from mailserver.protocol.mime.imap_envelope import parse_addresses
from mailserver.protocol.mime.imapstr import string


def env(headers: bytes) -> bytes:
    return analyze(headers + b"\r\nbody\r\n").envelope


def test_simple_envelope_exact() -> None:
    msg = (
        b"Date: Fri, 21 Nov 1997 09:55:06 -0600\r\n"
        b"Subject: Saying Hello\r\n"
        b"From: John Doe <jdoe@machine.example>\r\n"
        b"To: Mary Smith <mary@example.net>\r\n"
        b"Message-ID: <1234@local.machine.example>\r\n"
    )
    assert env(msg) == (
        b'("Fri, 21 Nov 1997 09:55:06 -0600" "Saying Hello"'
        b' (("John Doe" NIL "jdoe" "machine.example"))'
        b' (("John Doe" NIL "jdoe" "machine.example"))'
        b' (("John Doe" NIL "jdoe" "machine.example"))'
        b' (("Mary Smith" NIL "mary" "example.net")) NIL NIL NIL'
        b' "<1234@local.machine.example>")'
    )


def test_no_headers_gives_all_nil() -> None:
    assert analyze(b"just text\r\n").envelope == b"(" + b" ".join([b"NIL"] * 10) + b")"


def test_sender_and_reply_to_default_to_from_when_absent_or_empty() -> None:
    e = env(b"From: a@b.example\r\nSender:\r\nReply-To:   \r\n")
    assert e.count(b'((NIL NIL "a" "b.example"))') == 3


def test_sender_kept_when_present() -> None:
    e = env(b"From: a@b.example\r\nSender: s@b.example\r\n")
    assert b'((NIL NIL "a" "b.example")) ((NIL NIL "s" "b.example")) ((NIL NIL "a" "b.example"))' in e


def test_all_address_fields_and_in_reply_to() -> None:
    e = env(
        b"From: f@x\r\nTo: t@x\r\nCc: c@x\r\nBcc: b@x\r\n"
        b"In-Reply-To: <r@x>\r\nMessage-Id: <m@x>\r\n"
    )
    assert e.endswith(
        b'((NIL NIL "t" "x")) ((NIL NIL "c" "x")) ((NIL NIL "b" "x")) "<r@x>" "<m@x>")'
    )


def test_group_syntax() -> None:
    e = env(b"To: A Group:Chris <c@a.test>,joe@where.test;, Undisclosed recipients:;\r\n")
    assert (
        b'((NIL NIL "A Group" NIL)("Chris" NIL "c" "a.test")(NIL NIL "joe" "where.test")'
        b'(NIL NIL NIL NIL)(NIL NIL "Undisclosed recipients" NIL)(NIL NIL NIL NIL))'
    ) in e


def test_unclosed_group_is_closed() -> None:
    assert parse_addresses("g: a@b") == [
        (None, None, "g", None),
        (None, None, "a", "b"),
        (None, None, None, None),
    ]


def test_source_route_is_adl() -> None:
    assert parse_addresses("Mary <@machine.tld,@x.y:mary@example.net>") == [
        ("Mary", "@machine.tld,@x.y", "mary", "example.net")
    ]


def test_comments_and_obsolete_spacing() -> None:
    assert parse_addresses("Pete(A \\) chap) <pete(his account)@silly.test(his host)>") == [
        ("Pete", None, "pete", "silly.test")
    ]
    assert parse_addresses("jdoe@machine(comment).  example") == [
        ("comment", None, "jdoe", "machine.example")
    ]


def test_comment_is_name_when_there_is_no_phrase() -> None:
    assert parse_addresses("user@domain (Real Name)") == [("Real Name", None, "user", "domain")]


def test_quoted_display_name_with_escapes_is_requoted() -> None:
    e = env(b'Cc: "Giant; \\"Big\\" Box" <sysservices@example.net>\r\n')
    assert b'(("Giant; \\"Big\\" Box" NIL "sysservices" "example.net"))' in e


def test_empty_list_elements_are_skipped() -> None:
    assert parse_addresses(", a@b, ,c@d,") == [(None, None, "a", "b"), (None, None, "c", "d")]


def test_missing_domain_and_mailbox() -> None:
    assert parse_addresses("undisclosed") == [(None, None, "undisclosed", "MISSING_DOMAIN")]
    assert parse_addresses("Mary Smith") == [
        ("Mary Smith", None, "MISSING_MAILBOX", "MISSING_DOMAIN")
    ]


def test_unparsable_address_header_is_nil() -> None:
    assert env(b"To: ,,,\r\n").split(b" ")[5] == b"NIL"


def test_nil_subject_is_a_quoted_string() -> None:
    assert env(b"Subject: NiL\r\n").startswith(b'(NIL "NiL" ')


def test_subject_is_raw_and_unfolded() -> None:
    e = env(b"Subject: =?utf-8?q?caf=C3=A9?=\r\n  and more\r\n")
    assert e.startswith(b'(NIL "=?utf-8?q?caf=C3=A9?=  and more" ')


def test_first_occurrence_wins() -> None:
    assert env(b"Subject: one\r\nSubject: two\r\n").startswith(b'(NIL "one" ')


def test_8bit_subject_goes_as_literal() -> None:
    e = env("Subject: café\r\n".encode())
    assert e.startswith(b"(NIL {5}\r\ncaf\xc3\xa9 ")


def test_nul_is_replaced_in_literal() -> None:
    assert string(b"a\x00b") == b"{3}\r\na\x80b"


def test_quoting_rules() -> None:
    assert string(b'a"b\\c') == b'"a\\"b\\\\c"'
    assert string(b"x" * 2000).startswith(b"{2000}\r\n")
    assert string(b"a\rb") == b"{3}\r\na\rb"


def test_lf_only_message() -> None:
    f = analyze(b"From: a@b\nSubject: hi\n\nbody\n")
    assert f.envelope.startswith(b'(NIL "hi" ((NIL NIL "a" "b"))')


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Fri, 21 Nov 1997 09:55:06 -0600", 880127706),
        ("21 Nov 97 09:55:06 GMT", 880106106),
        ("Fri, 21 Nov 1997 09(comment):   55  :  06 -0600", 880127706),
        ("Whenever", None),
        ("", None),
        (None, None),
    ],
)
def test_sent_date(value: str | None, expected: int | None) -> None:
    assert parse_sent_date(value) == expected


def test_sent_date_in_facts() -> None:
    assert analyze(b"Date: Thu, 1 Jan 1970 00:00:10 +0000\r\n\r\n").sent_date == 10
    assert analyze(b"Subject: x\r\n\r\n").sent_date is None


# ----------------------------------------------------------------- header_values


def test_header_values_decodes_and_unfolds() -> None:
    block = (
        b"Subject: =?ISO-8859-1?Q?caf=E9?= =?utf-8?B?w6k=?=\r\n"
        b"To: a@b,\r\n c@d\r\n"
        b"to: second@x\r\n\r\n"
    )
    assert header_values(block, "subject") == ["café\u00e9"]
    assert header_values(block, "TO") == ["a@b, c@d", "second@x"]
    assert header_values(block, "cc") == []


def test_header_values_joins_split_multibyte_words() -> None:
    # "é" (c3 a9) split over two encoded-words, RFC 2047 §5 forbids it, mail does it
    block = b"Subject: =?utf-8?Q?caf=C3?= =?utf-8?Q?=A9?=\r\n"
    assert header_values(block, "Subject") == ["café"]


def test_header_values_keeps_text_between_words() -> None:
    block = b"Subject: a =?utf-8?q?b?= c =?utf-8?q?d?=\r\n"
    assert header_values(block, "subject") == ["a b c d"]


def test_header_values_never_raises_on_junk() -> None:
    block = (
        b"Subject: =?NONE?B?!!!?= =?x-unknown?q?a?= =?utf-16?b?AAA?=\r\n"
        b"From: \xff\xfe raw\r\n"
    )
    assert len(header_values(block, "subject")) == 1
    assert header_values(block, "from") == ["\xff\xfe raw"]
    assert header_values(b"\x00\xff:\r\n\r\n", "x") == []


def test_header_values_raw_utf8() -> None:
    assert header_values("Subject: café\n".encode(), "subject") == ["café"]


def test_header_values_rfc2231_language_in_encoded_word() -> None:
    assert header_values(b"Subject: =?iso-8859-1*sv?Q?h=E4j?=\r\n", "subject") == ["häj"]
