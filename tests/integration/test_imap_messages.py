"""Selected-state commands over real sockets: STORE, COPY, MOVE, EXPUNGE,
UID EXPUNGE, CLOSE, UNSELECT, FETCH basics and \\Seen (RFC 3501 §6.4;
RFC 4315; RFC 6851; RFC 3691)."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient
from support.server import ServerThread
from support.wire import ALICE, RawImap, client_tls_context

MSG = b"Subject: m\r\n\r\nbody\r\n"


def append(c: RawImap, mailbox: str = "INBOX", flags: str = "", blob: bytes = MSG) -> bytes:
    fl = f"({flags}) " if flags else ""
    return c.cmd("ap", f"APPEND {mailbox} {fl}{{{len(blob)}+}}\r\n".encode() + blob)[-1]


@pytest.fixture
def raw(raw_imap: RawImap) -> RawImap:
    c = raw_imap
    for _ in range(4):
        append(c)
    # Select twice: the first read-write SELECT claims the messages as \Recent
    # (RFC 3501 §2.3.2), so the session under test sees plain flags.
    c.cmd("s0", "SELECT INBOX")
    c.cmd("s", "SELECT INBOX")
    return c


def test_store_forms(raw: RawImap) -> None:
    lines = raw.cmd("a", "STORE 1 +FLAGS (\\Flagged $Custom)")
    # The new keyword is announced first (RFC 3501 §7.2.6).
    assert lines[0].startswith(b"* FLAGS (") and b"$Custom" in lines[0]
    assert lines[1].startswith(b"* OK [PERMANENTFLAGS (") and b"$Custom" in lines[1]
    assert lines[2:] == [b"* 1 FETCH (FLAGS (\\Flagged $Custom))\r\n", b"a OK STORE completed\r\n"]
    lines = raw.cmd("b", "STORE 1:2 FLAGS (\\Seen)")
    assert lines[:2] == [b"* 1 FETCH (FLAGS (\\Seen))\r\n", b"* 2 FETCH (FLAGS (\\Seen))\r\n"]
    lines = raw.cmd("c", "STORE 1 -FLAGS (\\Seen)")
    assert lines[0] == b"* 1 FETCH (FLAGS ())\r\n"
    assert raw.cmd("d", "STORE 3 +FLAGS.SILENT (\\Answered)") == [b"d OK STORE completed\r\n"]
    lines = raw.cmd("e", "UID STORE 3:* +FLAGS (\\Draft)")
    assert lines[:2] == [b"* 3 FETCH (UID 3 FLAGS (\\Answered \\Draft))\r\n",
                         b"* 4 FETCH (UID 4 FLAGS (\\Draft))\r\n"]
    lines = raw.cmd("f", "FETCH 1:4 FLAGS")
    assert lines[:4] == [b"* 1 FETCH (FLAGS ())\r\n", b"* 2 FETCH (FLAGS (\\Seen))\r\n",
                         b"* 3 FETCH (FLAGS (\\Answered \\Draft))\r\n",
                         b"* 4 FETCH (FLAGS (\\Draft))\r\n"]
    # \Recent cannot be set by a client (it is not a ``flag``, RFC 3501 §9).
    assert raw.cmd("g", "STORE 1 +FLAGS.SILENT (\\Recent)")[-1].startswith(b"g BAD")
    assert raw.cmd("h", "FETCH 1 FLAGS")[0] == b"* 1 FETCH (FLAGS ())\r\n"


def test_fetch_body_sets_seen_and_reports_flags(raw: RawImap) -> None:
    lines = raw.cmd("a", "FETCH 1 BODY[TEXT]")
    assert lines[0] == b"* 1 FETCH (BODY[TEXT] {6}\r\nbody\r\n FLAGS (\\Seen))\r\n"
    assert raw.cmd("b", "FETCH 1 FLAGS")[0] == b"* 1 FETCH (FLAGS (\\Seen))\r\n"
    assert raw.cmd("c", "FETCH 2 BODY.PEEK[TEXT]")[0] == b"* 2 FETCH (BODY[TEXT] {6}\r\nbody\r\n)\r\n"
    assert raw.cmd("d", "FETCH 2 FLAGS")[0] == b"* 2 FETCH (FLAGS ())\r\n"
    lines = raw.cmd("e", "UID FETCH 2 (RFC822.SIZE)")
    assert lines[0] == b"* 2 FETCH (UID 2 RFC822.SIZE %d)\r\n" % len(MSG)


def test_copy_and_move_with_copyuid(server: ServerThread, raw: RawImap) -> None:
    trash = server.call(server.store.get_mailbox, ALICE[0], "Trash")
    lines = raw.cmd("a", "COPY 2:3 Trash")
    assert lines == [b"a OK [COPYUID %d 2:3 1:2] COPY completed\r\n" % trash.uidvalidity]
    assert raw.cmd("b", "COPY 1 Nowhere")[-1].startswith(b"b NO [TRYCREATE]")
    assert raw.cmd("c", "MOVE 1 Nowhere")[-1].startswith(b"c NO [TRYCREATE]")
    lines = raw.cmd("d", "MOVE 2:3 Trash")
    assert lines == [
        b"* OK [COPYUID %d 2:3 3:4] Moved\r\n" % trash.uidvalidity,
        b"* 3 EXPUNGE\r\n",
        b"* 2 EXPUNGE\r\n",
        b"d OK MOVE completed\r\n",
    ]
    lines = raw.cmd("e", "UID MOVE 4 Trash")
    assert lines[1] == b"* 2 EXPUNGE\r\n"
    assert raw.cmd("f", "UID FETCH 1:* UID")[0] == b"* 1 FETCH (UID 1)\r\n"
    assert raw.cmd("g", "STATUS Trash (MESSAGES)")[0] == b'* STATUS "Trash" (MESSAGES 5)\r\n'
    assert raw.cmd("h", "UID COPY 99 Trash") == [b"h OK UID COPY completed\r\n"]


def test_expunge_uid_expunge_close_unselect(server: ServerThread, raw: RawImap) -> None:
    raw.cmd("a", "STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    # UID EXPUNGE removes only the named \Deleted messages (RFC 4315 §2.1).
    assert raw.cmd("b", "UID EXPUNGE 2:4") == [
        b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n", b"b OK UID EXPUNGE completed\r\n"]
    assert raw.cmd("c", "EXPUNGE") == [b"* 1 EXPUNGE\r\n", b"c OK EXPUNGE completed\r\n"]
    assert raw.cmd("d", "UID FETCH 1:* UID")[0] == b"* 1 FETCH (UID 4)\r\n"
    raw.cmd("e", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert raw.cmd("f", "UNSELECT") == [b"f OK UNSELECT completed\r\n"]
    assert raw.cmd("g", "STATUS INBOX (MESSAGES)")[0] == b'* STATUS "INBOX" (MESSAGES 1)\r\n'
    raw.cmd("h", "EXAMINE INBOX")
    assert raw.cmd("i", "EXPUNGE")[-1].startswith(b"i NO")
    assert raw.cmd("j", "CLOSE") == [b"j OK CLOSE completed\r\n"]  # read-only: no expunge
    assert raw.cmd("k", "STATUS INBOX (MESSAGES)")[0] == b'* STATUS "INBOX" (MESSAGES 1)\r\n'
    raw.cmd("l", "SELECT INBOX")
    assert raw.cmd("m", "CLOSE") == [b"m OK CLOSE completed\r\n"]  # silent expunge
    assert raw.cmd("n", "STATUS INBOX (MESSAGES)")[0] == b'* STATUS "INBOX" (MESSAGES 0)\r\n'
    assert raw.cmd("o", "FETCH 1 FLAGS")[-1].startswith(b"o BAD")  # not selected


def test_search_and_uid_search(raw: RawImap) -> None:
    raw.cmd("a", "STORE 2 +FLAGS.SILENT (\\Flagged)")
    assert raw.cmd("b", "SEARCH FLAGGED")[0] == b"* SEARCH 2\r\n"
    assert raw.cmd("c", "UID SEARCH UNFLAGGED")[0] == b"* SEARCH 1 3 4\r\n"
    assert raw.cmd("d", "SEARCH BODY body SUBJECT m 2:3")[0] == b"* SEARCH 2 3\r\n"
    assert raw.cmd("e", "SEARCH CHARSET KOI8-R ALL")[-1].startswith(b"e NO [BADCHARSET")
    assert raw.cmd("f", "SEARCH KEYWORD")[-1].startswith(b"f BAD")


def test_imapclient_message_workflow(server: ServerThread) -> None:
    with IMAPClient("127.0.0.1", port=server.port("imaps"),
                    ssl_context=client_tls_context()) as c:
        c.login(*ALICE)
        c.append("INBOX", MSG, flags=("\\Seen",))
        c.append("INBOX", MSG)
        c.select_folder("INBOX")
        assert c.search(["UNSEEN"]) == [2]
        assert c.search(["RECENT"]) == [1, 2]  # this session saw them first
        assert c.add_flags([1, 2], ["\\Flagged"])[2] == (b"\\Flagged", b"\\Recent")
        assert c.remove_flags([1], ["\\Seen"])[1] == (b"\\Flagged", b"\\Recent")
        c.create_folder("Archive")
        c.move([1], "Archive")
        assert c.search() == [2]
        got = c.fetch([2], ["BODY.PEEK[]", "FLAGS", "RFC822.SIZE"])[2]
        assert got[b"BODY[]"] == MSG and got[b"RFC822.SIZE"] == len(MSG)
        c.delete_messages([2])
        assert c.expunge()[1] is not None
        assert c.folder_status("Archive", ["MESSAGES"])[b"MESSAGES"] == 1
