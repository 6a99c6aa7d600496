"""CATENATE (RFC 4469): APPEND builds a message from TEXT literals and IMAP
URLs (RFC 5092) of messages or parts of this account; a URL that names
nothing is NO [BADURL] and nothing is stored."""

from __future__ import annotations

import re

import pytest
from support.wire import RawImap

from mailserver.protocol.imap.types import Section
from mailserver.protocol.imap.url import MessageUrl, parse_message_url

ORIGINAL = (b"From: a@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--b--\r\n")


def test_url_parser() -> None:
    assert parse_message_url("/INBOX;UIDVALIDITY=385759045/;UID=20/;SECTION=1.2.MIME") == \
        MessageUrl("INBOX", 385759045, 20, Section((1, 2), "MIME"))
    assert parse_message_url("imap://fred@example.com/Caf%C3%A9/;UID=3") == \
        MessageUrl("Café", None, 3, Section())
    assert parse_message_url("/INBOX/;UID=1/;SECTION=TEXT").section == Section((), "TEXT")
    for bad in ("INBOX/;UID=1", "/INBOX/;UID=0", "/INBOX;UID=1", "/INBOX/;UID=1/;SECTION=0",
                "/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(TO)", "/%FF/;UID=1",
                "/INBOX/;UID=1;URLAUTH=x", "imap://host"):
        with pytest.raises(ValueError):
            parse_message_url(bad)


def test_catenate_builds_a_message_from_text_and_urls(raw_imap: RawImap) -> None:
    out = raw_imap.ok("a", b"APPEND INBOX {%d+}\r\n" % len(ORIGINAL) + ORIGINAL)
    uidvalidity = int(re.search(rb"APPENDUID (\d+) 1", out[-1]).group(1))  # type: ignore[union-attr]
    header = b"From: b@example.test\r\nSubject: forward\r\n\r\n"
    url = f"/INBOX;UIDVALIDITY={uidvalidity}/;UID=1/;SECTION=2"
    out = raw_imap.ok("c", b"APPEND INBOX (\\Seen) CATENATE (TEXT {%d+}\r\n" % len(header)
                      + header + b' URL "' + url.encode() + b'" TEXT {2+}\r\n\r\n)')
    assert re.search(rb"APPENDUID \d+ 2\]", out[-1]), out
    raw_imap.ok("s", "EXAMINE INBOX")
    body = raw_imap.ok("f", "UID FETCH 2 (FLAGS BODY.PEEK[])")[0]
    assert b"\\Seen" in body
    assert body.endswith(header + b"second part\r\n)\r\n"), body
    # A URL part with MULTIAPPEND, and the whole message by URL.
    out = raw_imap.ok("m", b'APPEND INBOX CATENATE (URL "/INBOX/;UID=1") {4+}\r\nx\r\n\r\n')
    assert re.search(rb"APPENDUID \d+ 3:4\]", out[-1]), out


@pytest.mark.parametrize("url", ["/INBOX;UIDVALIDITY=1/;UID=1", "/INBOX/;UID=99",
                                 "/Nowhere/;UID=1", "/INBOX/;UID=1/;SECTION=7",
                                 "not a url"])
def test_bad_url_stores_nothing(raw_imap: RawImap, url: str) -> None:
    raw_imap.ok("a", b"APPEND INBOX {%d+}\r\n" % len(ORIGINAL) + ORIGINAL)
    out = raw_imap.cmd("c", b'APPEND INBOX CATENATE (TEXT {3+}\r\nab\n URL "' + url.encode()
                       + b'")')
    assert out[-1].startswith(b"c NO [BADURL " + url.encode()), out
    assert b"MESSAGES 1" in raw_imap.ok("t", "STATUS INBOX (MESSAGES)")[0]


def test_capability(raw_imap: RawImap) -> None:
    assert b"CATENATE" in raw_imap.ok("c", "CAPABILITY")[0].split()
