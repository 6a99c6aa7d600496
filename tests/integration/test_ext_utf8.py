"""UTF8=ACCEPT (RFC 6855) over raw sockets: ENABLE, UTF-8 mailbox names both
ways and their round trip with modified UTF-7 sessions, the UTF8 APPEND data
extension (§4), and SEARCH without CHARSET (§3).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.server import ServerThread, corpus_messages
from support.wire import RawImap

NAMES = {  # UTF-8 name -> its modified UTF-7 spelling (RFC 3501 §5.1.3)
    "Réunions": b"R&AOk-unions",
    "日本語/メール": b"&ZeVnLIqe-/&MOEw,DDr-",
    "Ünïcødé & Co": b"&ANw-n&AO8-c&APg-d&AOk- &- Co",
    "Émoji 📬": b"&AMk-moji &2D3c7A-",
}


@pytest.fixture
def u8(server: ServerThread) -> Iterator[RawImap]:
    c = RawImap(server.port("imap"))
    c.login()
    assert c.cmd("en", "ENABLE UTF8=ACCEPT")[0] == b"* ENABLED UTF8=ACCEPT\r\n"
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def r1(server: ServerThread) -> Iterator[RawImap]:
    c = RawImap(server.port("imap"))
    c.login()
    try:
        yield c
    finally:
        c.close()


def test_advertised_and_enabled_once(r1: RawImap) -> None:
    assert b"UTF8=ACCEPT" in r1.cmd("a", "CAPABILITY")[0].split()
    assert r1.cmd("b", "ENABLE utf8=accept")[0] == b"* ENABLED UTF8=ACCEPT\r\n"
    assert r1.cmd("c", "ENABLE UTF8=ACCEPT")[0] == b"* ENABLED\r\n"


def test_8bit_name_needs_enable(r1: RawImap) -> None:
    assert r1.cmd("a", 'CREATE "Réunions"'.encode())[-1].startswith(b"a BAD")
    r1.cmd("e", "ENABLE UTF8=ACCEPT")
    assert r1.cmd("b", 'CREATE "Réunions"'.encode())[-1].startswith(b"b OK")


@pytest.mark.parametrize("name", sorted(NAMES))
def test_names_round_trip(u8: RawImap, r1: RawImap, name: str) -> None:
    utf8 = name.encode()
    mutf7 = NAMES[name]
    assert u8.cmd("a", b'CREATE "' + utf8 + b'"')[-1].startswith(b"a OK")
    # The rev1 session sees (and uses) the mUTF-7 spelling.
    assert b' "' + mutf7 + b'"\r\n' in b"".join(r1.cmd("b", 'LIST "" "*"'))
    assert r1.cmd("c", b'STATUS "' + mutf7 + b'" (MESSAGES)')[0] == (
        b'* STATUS "' + mutf7 + b'" (MESSAGES 0)\r\n')
    # ... and the UTF-8 session the UTF-8 one.
    assert b' "' + utf8 + b'"\r\n' in b"".join(u8.cmd("d", 'LIST "" "*"'))
    assert u8.cmd("e", b'STATUS "' + utf8 + b'" (UIDNEXT)')[0] == (
        b'* STATUS "' + utf8 + b'" (UIDNEXT 1)\r\n')
    # Renamed from the mUTF-7 side, deleted from the UTF-8 side.
    assert r1.cmd("f", b'RENAME "' + mutf7 + b'" "' + mutf7 + b'-x"')[-1].startswith(b"f OK")
    assert u8.cmd("g", b'SELECT "' + utf8 + b'-x"')[-1].startswith(b"g OK")
    assert u8.cmd("h", "UNSELECT")[-1].startswith(b"h OK")
    assert u8.cmd("i", b'DELETE "' + utf8 + b'-x"')[-1].startswith(b"i OK")
    assert not any(mutf7 in x for x in r1.cmd("j", 'LIST "" "*"'))


def test_list_pattern_in_utf8(u8: RawImap) -> None:
    u8.cmd("a", 'CREATE "Été/Août"'.encode())
    u8.cmd("b", 'CREATE "Été/Juin"'.encode())
    lines = u8.cmd("c", 'LIST "Été/" "A%"'.encode())
    assert lines[0] == '* LIST (\\HasNoChildren) "/" "Été/Août"\r\n'.encode()
    assert len(lines) == 2


def test_control_characters_refused(u8: RawImap) -> None:
    assert u8.cmd("a", b'CREATE "bad\xc2\x85name"')[-1].startswith(b"a BAD")  # NEL, C1
    assert u8.cmd("b", b'CREATE "bad\xffname"')[-1].startswith(b"b BAD")  # not UTF-8


def test_append_utf8_data_extension(u8: RawImap, r1: RawImap) -> None:
    msg = "Subject: Grüße aus Köln\r\nFrom: Jürgen <j@example.test>\r\n\r\nHallo\r\n".encode()
    u8.send(b"a APPEND INBOX UTF8 (~{%d}\r\n" % len(msg))
    assert u8.readline().startswith(b"+ ")
    u8.send(msg + b")\r\n")
    assert u8.until_tagged("a")[-1].startswith(b"a OK [APPENDUID ")
    # Non-synchronizing form too (RFC 7888).
    lines = u8.cmd("b", b"APPEND INBOX (\\Seen) UTF8 (~{%d+}\r\n" % len(msg) + msg + b")")
    assert lines[-1].startswith(b"b OK [APPENDUID ")
    u8.cmd("s", "SELECT INBOX")
    assert msg in u8.cmd("f", "FETCH 2 BODY.PEEK[]")[0]
    # Without UTF8=ACCEPT the UTF8 form does not parse.
    lines = r1.cmd("c", b"APPEND INBOX UTF8 (~{%d+}\r\n" % len(msg) + msg + b")")
    assert lines[-1].startswith(b"c BAD")
    assert u8.cmd("d", b"APPEND INBOX UTF8 ({3+}\r\nabc")[-1].startswith(b"d BAD")  # no ")"


def test_search_charset_refused_utf8_strings_work(u8: RawImap) -> None:
    msg = corpus_messages()[0].read_bytes()
    u8.cmd("a", b"APPEND INBOX {%d+}\r\n" % len(msg) + msg)
    second = "Subject: Grüße\r\n\r\nbody text\r\n".encode()
    u8.cmd("b", b"APPEND INBOX {%d+}\r\n" % len(second) + second)
    u8.cmd("s", "SELECT INBOX")
    # RFC 6855 §3: no CHARSET once UTF8=ACCEPT is enabled (BAD).
    assert u8.cmd("c", "SEARCH CHARSET UTF-8 ALL")[-1].startswith(b"c BAD")
    assert u8.cmd("d", 'SEARCH SUBJECT "Grüße"'.encode())[0] == b"* SEARCH 2\r\n"
