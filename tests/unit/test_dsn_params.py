"""RFC 3461 DSN parameters: the xtext codec (§4) and NOTIFY/ORCPT/RET/ENVID parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.dsn_params import (
    DsnRequest,
    MailDsn,
    Orcpt,
    RcptDsn,
    parse_mail,
    parse_rcpt,
    xtext_decode,
    xtext_encode,
)

#: Any text UTF-8 can carry (no lone surrogates).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)))


@pytest.mark.parametrize(
    ("xtext", "text"),
    [
        ("", ""),
        ("user@example.test", "user@example.test"),
        ("a+2Bb@example.test", "a+b@example.test"),
        ("a+3Db", "a=b"),
        ("two+20words", "two words"),
        ("caf+C3+A9", "café"),
        ("QQ+2B+2B", "QQ++"),
    ],
)
def test_xtext_decode(xtext: str, text: str) -> None:
    assert xtext_decode(xtext) == text


@pytest.mark.parametrize("bad", ["a+", "a+2", "a+2b", "a+G0", "a=b", "a b", "a\tb", "é", "a\x7f"])
def test_xtext_decode_refuses_what_is_not_xtext(bad: str) -> None:
    with pytest.raises(ProtocolSyntaxError):
        xtext_decode(bad)


def test_xtext_encode_escapes_plus_equals_space_controls_and_non_ascii() -> None:
    assert xtext_encode("a+b=c d\x01é") == "a+2Bb+3Dc+20d+01+C3+A9"


@given(TEXT)
def test_xtext_round_trip(text: str) -> None:
    encoded = xtext_encode(text)
    assert encoded.isascii() and " " not in encoded
    assert xtext_decode(encoded) == text


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="+=")))
def test_xchars_stand_for_themselves(text: str) -> None:
    assert xtext_encode(text) == text
    assert xtext_decode(text) == text


@given(st.text(max_size=40))
def test_decode_parses_or_raises_our_error(text: str) -> None:
    try:
        xtext_decode(text)
    except ProtocolSyntaxError:
        pass


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ([], MailDsn()),
        (["RET=HDRS"], MailDsn(ret="HDRS")),
        (["ret=full"], MailDsn(ret="FULL")),
        (["ENVID=QQ314159+2Bx"], MailDsn(envid="QQ314159+x")),
        (["RET=FULL", "ENVID=abc"], MailDsn("FULL", "abc")),
    ],
)
def test_parse_mail(tokens: list[str], expected: MailDsn) -> None:
    assert parse_mail(tokens) == expected


@pytest.mark.parametrize(
    "tokens",
    [["RET=ALL"], ["RET="], ["RET"], ["RET=HDRS", "RET=FULL"], ["ENVID=a b"], ["ENVID=a+zz"],
     ["ENVID=" + "x" * 101]],
)
def test_parse_mail_errors(tokens: list[str]) -> None:
    with pytest.raises(ProtocolSyntaxError):
        parse_mail(tokens)


def test_envid_of_100_characters_is_fine() -> None:
    assert parse_mail(["ENVID=" + "x" * 100]).envid == "x" * 100


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["NOTIFY=NEVER"], RcptDsn(notify=frozenset())),
        (["notify=success,delay"], RcptDsn(notify=frozenset({"SUCCESS", "DELAY"}))),
        (["NOTIFY=FAILURE"], RcptDsn(notify=frozenset({"FAILURE"}))),
        (["ORCPT=rfc822;Bob+2Btag@Example.test"],
         RcptDsn(orcpt=Orcpt("rfc822", "Bob+tag@Example.test"))),
        (["ORCPT=utf-8;j\\x{F6}rg@example.test"], RcptDsn(orcpt=Orcpt("utf-8", "jörg@example.test"))),
        (["ORCPT=utf-8;jörg@example.test"], RcptDsn(orcpt=Orcpt("utf-8", "jörg@example.test"))),
        (["NOTIFY=SUCCESS", "ORCPT=rfc822;a@b.test"],
         RcptDsn(frozenset({"SUCCESS"}), Orcpt("rfc822", "a@b.test"))),
    ],
)
def test_parse_rcpt(tokens: list[str], expected: RcptDsn) -> None:
    assert parse_rcpt(tokens) == expected


@pytest.mark.parametrize(
    "tokens",
    [["NOTIFY=NEVER,SUCCESS"], ["NOTIFY=SOMETIMES"], ["NOTIFY=SUCCESS,SUCCESS"], ["NOTIFY="],
     ["NOTIFY=SUCCESS,"], ["ORCPT=a@b.test"], ["ORCPT=;a@b.test"], ["ORCPT=rfc822;"],
     ["ORCPT=rfc 822;a@b"], ["ORCPT=rfc822;a=b"], ["ORCPT=rfc822;" + "a" * 500],
     ["ORCPT=utf-8;\\x{D800}"], ["NOTIFY=NEVER", "NOTIFY=NEVER"]],
)
def test_parse_rcpt_errors(tokens: list[str]) -> None:
    with pytest.raises(ProtocolSyntaxError):
        parse_rcpt(tokens)


def test_notify_wants() -> None:
    assert RcptDsn().wants("FAILURE") and RcptDsn().wants("DELAY")
    assert not RcptDsn().wants("SUCCESS")
    never = RcptDsn(notify=frozenset())
    assert not any(never.wants(k) for k in ("SUCCESS", "FAILURE", "DELAY"))


def test_parameters_for_the_next_hop_round_trip() -> None:
    mail = MailDsn("HDRS", "id with space+plus")
    rcpt = RcptDsn(frozenset({"DELAY", "SUCCESS"}), Orcpt("rfc822", "b+x@y.test"))
    assert mail.to_params() == ["RET=HDRS", "ENVID=id+20with+20space+2Bplus"]
    assert rcpt.to_params() == ["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;b+2Bx@y.test"]
    assert parse_mail(mail.to_params()) == mail
    assert parse_rcpt(rcpt.to_params()) == rcpt
    assert RcptDsn(notify=frozenset()).to_params() == ["NOTIFY=NEVER"]
    utf8 = RcptDsn(orcpt=Orcpt("utf-8", "jörg+1@example.test"))
    (param,) = utf8.to_params()
    assert param.isascii()
    assert parse_rcpt([param]) == utf8
    assert DsnRequest().rcpt("nobody@x.test") == RcptDsn()


def test_parameters_for_the_next_hop_stay_within_the_limits() -> None:
    """Found by bench/fuzz.py (dsn): values we accepted could grow past RFC
    3461's limits when encoded for the next hop, which would refuse them."""
    wide = parse_rcpt(["ORCPT=utf-8;" + "中" * 100 + "@example.test"])
    assert wide.orcpt is not None and wide.orcpt.address.startswith("中")
    assert wide.to_params() == []  # 100 x "\x{4E2D}" is over 500
    bad_utf8 = parse_mail(["ENVID=" + "+FF" * 33])  # 99 characters, each octet -> U+FFFD
    assert bad_utf8.envid == "\ufffd" * 33
    assert bad_utf8.to_params() == []


@given(TEXT.filter(bool))
def test_next_hop_parameters_parse_back(text: str) -> None:
    for rcpt in (RcptDsn(orcpt=Orcpt("utf-8", text)), RcptDsn(orcpt=Orcpt("rfc822", text))):
        for param in rcpt.to_params():
            assert parse_rcpt([param]).orcpt is not None
    for param in MailDsn(envid=text).to_params():
        parse_mail([param])
