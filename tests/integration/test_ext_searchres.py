"""SEARCHRES (RFC 5182): SEARCH RETURN (SAVE) and ``$`` in FETCH, STORE,
COPY, MOVE, SEARCH, SORT, THREAD and their UID forms, over raw sockets."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient
from support.server import ServerThread
from support.wire import ALICE, RawImap


def msg(i: int) -> bytes:
    return f"Subject: m{i}\r\nMessage-ID: <m{i}@x>\r\n\r\nbody {i}\r\n".encode()


@pytest.fixture
def raw(raw_imap: RawImap) -> RawImap:
    c = raw_imap
    for i in range(1, 7):
        data = msg(i)
        assert c.cmd("ap", f"APPEND INBOX {{{len(data)}+}}\r\n".encode() + data)[-1].startswith(
            b"ap OK")
    c.cmd("s", "SELECT INBOX")
    c.cmd("f", "STORE 2,4,5 +FLAGS.SILENT (\\Flagged)")
    return c


def ok(lines: list[bytes], tag: str) -> list[bytes]:
    assert lines[-1].startswith(tag.encode() + b" OK"), lines
    return lines[:-1]


def test_capability(raw: RawImap) -> None:
    assert b"SEARCHRES" in raw.cmd("c", "CAPABILITY")[0].split()


def test_save_then_use_everywhere(raw: RawImap) -> None:
    # SAVE alone: no ESEARCH response (RFC 5182 §2.1).
    assert ok(raw.cmd("a", "SEARCH RETURN (SAVE) FLAGGED"), "a") == []
    assert ok(raw.cmd("b", "FETCH $ (UID)"), "b") == [
        b"* 2 FETCH (UID 2)\r\n", b"* 4 FETCH (UID 4)\r\n", b"* 5 FETCH (UID 5)\r\n"]
    assert ok(raw.cmd("c", "UID FETCH $ (FLAGS)"), "c") == [
        b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))\r\n",
        b"* 4 FETCH (UID 4 FLAGS (\\Flagged \\Recent))\r\n",
        b"* 5 FETCH (UID 5 FLAGS (\\Flagged \\Recent))\r\n"]
    assert ok(raw.cmd("d", "SEARCH $"), "d") == [b"* SEARCH 2 4 5\r\n"]
    assert ok(raw.cmd("e", "UID SEARCH UID $ NOT 4"), "e") == [b"* SEARCH 2 5\r\n"]
    # (APPENDs in one second share an ARRIVAL, which REVERSE leaves in
    # sequence order, RFC 5256 §3: SUBJECT orders these.)
    assert ok(raw.cmd("f", "SORT (REVERSE SUBJECT) UTF-8 $"), "f") == [b"* SORT 5 4 2\r\n"]
    assert ok(raw.cmd("g", "THREAD REFERENCES UTF-8 $"), "g") == [b"* THREAD (2)(4)(5)\r\n"]
    assert ok(raw.cmd("h", "STORE $ +FLAGS (\\Seen)"), "h") == [
        b"* 2 FETCH (FLAGS (\\Flagged \\Seen \\Recent))\r\n",
        b"* 4 FETCH (FLAGS (\\Flagged \\Seen \\Recent))\r\n",
        b"* 5 FETCH (FLAGS (\\Flagged \\Seen \\Recent))\r\n"]
    copied = raw.cmd("i", "COPY $ Trash")[-1]
    assert copied.startswith(b"i OK [COPYUID ") and b" 2,4:5 1:3]" in copied
    # MOVE $: the messages leave, and with them the saved result.
    lines = ok(raw.cmd("j", "MOVE $ Junk"), "j")
    assert lines[0].startswith(b"* OK [COPYUID ")
    assert lines[1:] == [b"* 5 EXPUNGE\r\n", b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    assert ok(raw.cmd("k", "FETCH $ (UID)"), "k") == []
    assert ok(raw.cmd("l", "SEARCH $"), "l") == [b"* SEARCH\r\n"]


def test_saved_result_follows_expunges_and_sequence_numbers(raw: RawImap) -> None:
    ok(raw.cmd("a", "UID SEARCH RETURN (SAVE) UID 3:6"), "a")
    raw.cmd("b", "STORE 1,4 +FLAGS.SILENT (\\Deleted)")
    assert ok(raw.cmd("c", "EXPUNGE"), "c") == [b"* 4 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]
    # UIDs 3, 5, 6 remain, now numbered 2, 3, 4.
    assert ok(raw.cmd("d", "FETCH $ (UID)"), "d") == [
        b"* 2 FETCH (UID 3)\r\n", b"* 3 FETCH (UID 5)\r\n", b"* 4 FETCH (UID 6)\r\n"]


def test_save_with_other_options(raw: RawImap) -> None:
    # With MIN/MAX but not ALL, only those are saved; ESEARCH answers the rest.
    assert ok(raw.cmd("a", "SEARCH RETURN (SAVE MIN MAX) FLAGGED"), "a") == [
        b'* ESEARCH (TAG "a") MIN 2 MAX 5\r\n']
    assert ok(raw.cmd("b", "SEARCH $"), "b") == [b"* SEARCH 2 5\r\n"]
    assert ok(raw.cmd("c", "UID SEARCH RETURN (MIN SAVE) FLAGGED"), "c") == [
        b'* ESEARCH (TAG "c") UID MIN 2\r\n']
    assert ok(raw.cmd("d", "SEARCH $"), "d") == [b"* SEARCH 2\r\n"]
    # With COUNT everything is saved.
    assert ok(raw.cmd("e", "SEARCH RETURN (COUNT SAVE) UNFLAGGED"), "e") == [
        b'* ESEARCH (TAG "e") COUNT 3\r\n']
    assert ok(raw.cmd("f", "SEARCH $"), "f") == [b"* SEARCH 1 3 6\r\n"]
    # A search without SAVE leaves $ alone.
    ok(raw.cmd("g", "SEARCH RETURN (ALL) ALL"), "g")
    assert ok(raw.cmd("h", "SEARCH $"), "h") == [b"* SEARCH 1 3 6\r\n"]


def test_failed_save_and_reselect_empty_it(raw: RawImap) -> None:
    ok(raw.cmd("a", "SEARCH RETURN (SAVE) ALL"), "a")
    assert raw.cmd("b", "SEARCH RETURN (SAVE) CHARSET X-BOGUS ALL")[-1].startswith(
        b"b NO [BADCHARSET")
    assert ok(raw.cmd("c", "SEARCH $"), "c") == [b"* SEARCH\r\n"]
    ok(raw.cmd("d", "SEARCH RETURN (SAVE) ALL"), "d")
    ok(raw.cmd("e", "SELECT INBOX"), "e")  # RFC 5182 §2.1: reset on SELECT
    assert ok(raw.cmd("f", "FETCH $ (UID)"), "f") == []
    # $ only stands alone.
    assert raw.cmd("g", "FETCH 1,$ (UID)")[-1].startswith(b"g BAD")


def test_save_with_imapclient(server: ServerThread, raw: RawImap) -> None:
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*ALICE)
        c.select_folder("INBOX")
        assert b"SEARCHRES" in c.capabilities()
        c._raw_command_untagged(b"SEARCH", [b"RETURN", b"(SAVE)", b"FLAGGED"],
                                response_name="ESEARCH")
        # imapclient's fetch() wants numbers; its imaplib connection takes "$".
        typ, data = c._imap.uid("FETCH", "$", "(UID)")
        assert typ == "OK"
        assert data == [b"2 (UID 2)", b"4 (UID 4)", b"5 (UID 5)"]
