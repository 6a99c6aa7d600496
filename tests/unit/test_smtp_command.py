"""``protocol.smtp.command``: command lines and MAIL/RCPT parameters (RFC 5321 §4.1).

Every reader test feeds the input whole, one byte at a time and with trailing
data (h11's rule), and must get the same commands each way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailserver.errors import ProtocolSyntaxError, SmtpReply, smtp_reply
from mailserver.protocol.dsn_params import MailDsn, Orcpt, RcptDsn
from mailserver.protocol.smtp.command import (
    NEED_DATA,
    BadLineEnding,
    BadPath,
    Command,
    CommandReader,
    LineTooLong,
    MailArgs,
    RcptArgs,
    UnknownParameter,
    parse_bdat,
    parse_command,
    parse_mail,
    parse_rcpt,
    split_params,
)

Outcome = Command | type[ProtocolSyntaxError]


def _drain(reader: CommandReader, out: list[Outcome]) -> None:
    while True:
        try:
            cmd = reader.next_command()
        except ProtocolSyntaxError as exc:
            out.append(type(exc))
            continue
        if cmd == NEED_DATA:
            return
        assert isinstance(cmd, Command)
        out.append(cmd)


def _whole(data: bytes) -> Iterator[bytes]:
    yield data


def _bytewise(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


FEEDS: list[Callable[[bytes], Iterator[bytes]]] = [_whole, _bytewise]


def _read(data: bytes, feed: Callable[[bytes], Iterator[bytes]], max_line: int = 512) -> tuple[
    list[Outcome], bytes
]:
    reader = CommandReader(max_line)
    out: list[Outcome] = []
    for piece in feed(data):
        reader.feed(piece)
        _drain(reader, out)
    return out, reader.trailing_data


@pytest.mark.parametrize("feed", FEEDS)
def test_commands_whole_bytewise_and_with_trailing_data(feed: Callable[[bytes], Iterator[bytes]]) -> None:
    data = b"ehlo client.example\r\nMAIL FROM:<a@b.example> SIZE=10\r\nDATA\r\n"
    out, rest = _read(data + b"Subject: partial", feed)
    assert out == [
        Command("EHLO", "client.example"),
        Command("MAIL", "FROM:<a@b.example> SIZE=10"),
        Command("DATA", None),
    ]
    assert rest == b"Subject: partial"


@pytest.mark.parametrize("feed", FEEDS)
def test_bare_lf_and_bare_cr_are_refused_and_reading_goes_on(
    feed: Callable[[bytes], Iterator[bytes]],
) -> None:
    out, rest = _read(b"NOOP\nNO\rOP\r\nQUIT\r\n", feed)
    assert out == [BadLineEnding, BadLineEnding, Command("QUIT", None)]
    assert rest == b""


@pytest.mark.parametrize("feed", FEEDS)
def test_line_over_the_limit_is_skipped_to_its_end(feed: Callable[[bytes], Iterator[bytes]]) -> None:
    long_line = b"NOOP " + b"x" * 100 + b"\r\n"
    out, rest = _read(long_line + b"RSET\r\n" + b"y" * 50, feed, max_line=32)
    # The unfinished "y" line is over the limit too: reported at once, not at its LF.
    assert out == [LineTooLong, Command("RSET", None), LineTooLong]
    # The partial line beyond the limit is dropped as it comes: memory stays bounded.
    assert rest == b""


def test_a_line_that_never_ends_is_refused_at_the_limit_and_dropped() -> None:
    """Issue 12 §3: the reply comes when the limit is reached, without an LF, and
    the flood is never buffered (one reply per over-long line)."""
    reader = CommandReader(64)
    out: list[Outcome] = []
    for _ in range(1000):
        reader.feed(b"x" * 100)
        _drain(reader, out)
        assert len(reader.trailing_data) < 64
    assert out == [LineTooLong]
    reader.feed(b"tail\r\nNOOP\r\n")
    _drain(reader, out)
    assert out == [LineTooLong, Command("NOOP", None)]


def test_next_line_returns_auth_responses_as_text() -> None:
    reader = CommandReader(16)
    reader.feed(b"dGVzdA==\r\n*\r\n")
    assert reader.next_line() == "dGVzdA=="
    assert reader.next_line() == "*"
    assert reader.next_line() == NEED_DATA


@pytest.mark.parametrize("feed", FEEDS)
def test_line_exactly_at_the_limit_passes(feed: Callable[[bytes], Iterator[bytes]]) -> None:
    line = b"NOOP " + b"a" * (32 - 7) + b"\r\n"
    assert len(line) == 32
    out, _ = _read(line + line[:-1] + b"b\r\n", feed, max_line=32)
    assert out == [Command("NOOP", "a" * 25), LineTooLong]


def test_limit_crossed_when_crlf_is_split_over_feeds() -> None:
    reader = CommandReader(8)
    reader.feed(b"NOOP12\r")
    assert reader.next_command() == NEED_DATA
    reader.feed(b"\n")
    assert reader.next_command() == Command("NOOP12", None)


def test_take_trailing_data() -> None:
    reader = CommandReader()
    reader.feed(b"DATA\r\nHello\r\n.\r\n")
    assert reader.next_command() == Command("DATA", None)
    assert reader.take_trailing_data() == b"Hello\r\n.\r\n"
    assert reader.next_command() == NEED_DATA


def test_parse_command() -> None:
    assert parse_command("quit") == Command("QUIT", None)
    assert parse_command("MAIL FROM:<a@b>  ") == Command("MAIL", "FROM:<a@b>")
    assert parse_command("") == Command("", None)
    assert parse_command("HELO ") == Command("HELO", None)


@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(8, 64))
def test_any_split_gives_the_same_commands(chunks: list[bytes], max_line: int) -> None:
    data = b"".join(chunks)
    whole, rest_whole = _read(data, _whole, max_line)
    pieces: list[Outcome] = []
    reader = CommandReader(max_line)
    for chunk in chunks:
        reader.feed(chunk)
        _drain(reader, pieces)
    assert pieces == whole
    bytewise, _ = _read(data, _bytewise, max_line)
    assert bytewise == whole
    assert len(rest_whole) <= max(max_line, len(data))


@given(st.binary(max_size=300))
def test_reader_never_raises_anything_but_protocol_errors(data: bytes) -> None:
    out, rest = _read(data + b"\r\nQUIT\r\n", _whole, 64)
    assert out[-1] == Command("QUIT", None)
    assert rest == b""


# -- MAIL / RCPT parameters ----------------------------------------------------------


def test_mail_params() -> None:
    assert parse_mail("FROM:<a@b.example>") == MailArgs("a@b.example")
    assert parse_mail("from:<> SIZE=1000 BODY=8bitmime SMTPUTF8 AUTH=<>") == MailArgs(
        "<>", size=1000, body="8BITMIME", smtputf8=True
    )
    assert parse_mail("FROM:<a@b.example> RET=hdrs ENVID=QQ+2Bx") == MailArgs(
        "a@b.example", dsn=MailDsn(ret="HDRS", envid="QQ+x")
    )


def test_rcpt_params() -> None:
    assert parse_rcpt("TO:<c@d.example>") == RcptArgs("c@d.example")
    assert parse_rcpt("TO:<Postmaster>") == RcptArgs("Postmaster")
    got = parse_rcpt("TO:<c@d.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@d.example")
    assert got == RcptArgs(
        "c@d.example",
        RcptDsn(notify=frozenset({"SUCCESS", "FAILURE"}), orcpt=Orcpt("rfc822", "c@d.example")),
    )


@pytest.mark.parametrize(
    ("arg", "error"),
    [
        (None, ProtocolSyntaxError),
        ("<a@b>", ProtocolSyntaxError),  # no FROM:
        ("FROM:", BadPath),
        ("FROM:<a@b", BadPath),
        ("FROM:<>SIZE=1", BadPath),
        ("FROM:<a@b> SIZE=x", ProtocolSyntaxError),
        ("FROM:<a@b> SIZE", ProtocolSyntaxError),
        ("FROM:<a@b> SIZE=1 SIZE=2", ProtocolSyntaxError),
        ("FROM:<a@b> BODY=9BIT", ProtocolSyntaxError),
        ("FROM:<a@b> SMTPUTF8=yes", ProtocolSyntaxError),
        ("FROM:<a@b> RET=ALL", ProtocolSyntaxError),
        ("FROM:<a@b> NOTIFY=NEVER", UnknownParameter),
        ("FROM:<a@b> X-FOO=1", UnknownParameter),
        ("FROM:<a@b> =1", ProtocolSyntaxError),
    ],
)
def test_mail_errors(arg: str | None, error: type[ProtocolSyntaxError]) -> None:
    with pytest.raises(error) as info:
        parse_mail(arg)
    assert type(info.value) is error


def test_rcpt_errors() -> None:
    with pytest.raises(ProtocolSyntaxError):
        parse_rcpt("TO:<>")
    with pytest.raises(UnknownParameter):
        parse_rcpt("TO:<a@b> SIZE=1")
    with pytest.raises(UnknownParameter):
        parse_rcpt("TO:<a@b> RET=FULL")
    assert smtp_reply(UnknownParameter("x")).code == 555
    assert smtp_reply(LineTooLong("x")) == SmtpReply(500, "5.5.2", "Line too long")
    assert smtp_reply(ProtocolSyntaxError("x")) == SmtpReply(501, "5.5.4", "x")


def test_split_params() -> None:
    assert split_params("size=10  SMTPUTF8") == [("SIZE", "10"), ("SMTPUTF8", None)]
    assert split_params("") == []
    with pytest.raises(ProtocolSyntaxError):
        split_params("BAD_KW=1")


@given(st.text(max_size=80))
def test_mail_and_rcpt_parse_or_raise_protocol_errors(text: str) -> None:
    for parse in (parse_mail, parse_rcpt):
        for prefix in ("FROM:", "TO:"):
            try:
                parse(prefix + text)
            except ProtocolSyntaxError:
                pass


@pytest.mark.parametrize(
    ("arg", "expected"),
    [("10", (10, False)), ("0 LAST", (0, True)), ("123 last", (123, True)),
     ("00007", (7, False))],
)
def test_parse_bdat(arg: str, expected: tuple[int, bool]) -> None:
    assert parse_bdat(arg) == expected


@pytest.mark.parametrize("arg", [None, "", "x", "-1", "10 LAS", "10 LAST x", "10  LAST",
                                 "١٠", "1" * 21, "10 LAST "])
def test_parse_bdat_refuses(arg: str | None) -> None:
    with pytest.raises(ProtocolSyntaxError):
        parse_bdat(arg)


@given(st.integers(min_value=0, max_value=10**19), st.sampled_from(["", " LAST", " last"]))
def test_parse_bdat_reads_every_size(size: int, last: str) -> None:
    assert parse_bdat(f"{size}{last}") == (size, bool(last))
