"""Mailbox commands over real sockets: LIST, LSUB, CREATE, DELETE, RENAME,
SUBSCRIBE, STATUS, SELECT/EXAMINE, APPEND (RFC 3501 §6.3; RFC 3348; RFC 6154;
RFC 4315 APPENDUID)."""

from __future__ import annotations

import imaplib

import pytest
from imapclient import IMAPClient
from support.server import ServerThread, corpus_messages
from support.wire import ALICE, RawImap, client_tls_context

from mailserver.protocol.line_endings import to_crlf


def listed(lines: list[bytes], kind: bytes = b"LIST") -> dict[bytes, bytes]:
    """name (as on the wire, unquoted) -> attribute list, from LIST/LSUB lines."""
    out = {}
    for line in lines:
        if line.startswith(b"* " + kind + b" "):
            attrs, _, rest = line[len(kind) + 3 :].partition(b") ")
            name = rest.split(b" ", 1)[1].strip()
            out[name.strip(b'"')] = attrs + b")"
    return out


def test_list_delimiter_and_defaults(raw_imap: RawImap) -> None:
    assert raw_imap.cmd("a", 'LIST "" ""')[0] == b'* LIST (\\Noselect) "/" ""\r\n'
    boxes = listed(raw_imap.cmd("b", 'LIST "" "*"'))
    assert set(boxes) == {b"INBOX", b"Sent", b"Drafts", b"Trash", b"Junk"}
    assert boxes[b"Sent"] == b"(\\HasNoChildren \\Sent)"
    assert boxes[b"Trash"] == b"(\\HasNoChildren \\Trash)"
    assert boxes[b"INBOX"] == b"(\\HasNoChildren)"
    assert set(listed(raw_imap.cmd("c", 'LIST "" "inbox"'))) == {b"INBOX"}
    assert set(listed(raw_imap.cmd("d", 'LIST "" "D*"'))) == {b"Drafts"}


def test_hierarchy_patterns_and_children(raw_imap: RawImap) -> None:
    assert raw_imap.cmd("a", "CREATE a/b/c")[-1].startswith(b"a OK")
    assert raw_imap.cmd("b", "CREATE x/")[-1].startswith(b"b OK")  # trailing delimiter dropped
    boxes = listed(raw_imap.cmd("c", 'LIST "" "*"'))
    assert boxes[b"a"] == b"(\\HasChildren)"
    assert boxes[b"a/b"] == b"(\\HasChildren)"
    assert boxes[b"a/b/c"] == b"(\\HasNoChildren)"
    assert b"x" in boxes
    top = listed(raw_imap.cmd("d", 'LIST "" "%"'))
    assert b"a" in top and b"a/b" not in top
    assert set(listed(raw_imap.cmd("e", 'LIST "a/" "%"'))) == {b"a/b"}
    assert set(listed(raw_imap.cmd("f", 'LIST "" "a/%/c"'))) == {b"a/b/c"}
    assert set(listed(raw_imap.cmd("g", 'LIST "a" "/*"'))) == {b"a/b", b"a/b/c"}
    assert raw_imap.cmd("h", "CREATE a/b")[-1].startswith(b"h NO [ALREADYEXISTS]")
    assert raw_imap.cmd("i", "CREATE INBOX")[-1].startswith(b"i NO")
    assert raw_imap.cmd("j", 'CREATE "bad//name"')[-1].startswith(b"j NO")


def test_delete_with_children_leaves_noselect(raw_imap: RawImap) -> None:
    raw_imap.cmd("a", "CREATE p/q")
    assert raw_imap.cmd("b", "DELETE p")[-1].startswith(b"b OK")
    boxes = listed(raw_imap.cmd("c", 'LIST "" "p*"'))
    assert boxes[b"p"] == b"(\\Noselect \\HasChildren)"
    assert raw_imap.cmd("d", "SELECT p")[-1].startswith(b"d NO")
    assert raw_imap.cmd("e", "DELETE p/q")[-1].startswith(b"e OK")
    assert raw_imap.cmd("f", "DELETE INBOX")[-1].startswith(b"f NO")
    assert raw_imap.cmd("g", "DELETE nosuch")[-1].startswith(b"g NO [NONEXISTENT]")


def test_rename_with_children_and_inbox(raw_imap: RawImap) -> None:
    raw_imap.cmd("a", "CREATE old/kid")
    assert raw_imap.cmd("b", "RENAME old new")[-1].startswith(b"b OK")
    boxes = listed(raw_imap.cmd("c", 'LIST "" "*"'))
    assert b"new" in boxes and b"new/kid" in boxes and b"old" not in boxes
    raw_imap.cmd("d", "APPEND INBOX {14+}\r\nSubject: x\r\n\r\n")
    assert raw_imap.cmd("e", "RENAME INBOX Saved")[-1].startswith(b"e OK")
    status = raw_imap.cmd("f", "STATUS INBOX (MESSAGES)")[0]
    assert status == b'* STATUS "INBOX" (MESSAGES 0)\r\n'
    assert raw_imap.cmd("g", "STATUS Saved (MESSAGES)")[0] == b'* STATUS "Saved" (MESSAGES 1)\r\n'
    assert raw_imap.cmd("h", "RENAME nosuch other")[-1].startswith(b"h NO")
    assert raw_imap.cmd("i", "RENAME new Saved")[-1].startswith(b"i NO [ALREADYEXISTS]")


def test_subscribe_and_lsub(raw_imap: RawImap) -> None:
    subs = listed(raw_imap.cmd("a", 'LSUB "" "*"'), b"LSUB")
    assert set(subs) == {b"INBOX", b"Sent", b"Drafts", b"Trash", b"Junk"}
    raw_imap.cmd("b", "CREATE top/leaf")
    assert raw_imap.cmd("c", "SUBSCRIBE top/leaf")[-1].startswith(b"c OK")
    assert raw_imap.cmd("d", "UNSUBSCRIBE Junk")[-1].startswith(b"d OK")
    subs = listed(raw_imap.cmd("e", 'LSUB "" "*"'), b"LSUB")
    assert b"top/leaf" in subs and b"Junk" not in subs and b"top" not in subs
    # "%" shows the unsubscribed parent of a subscribed child as \Noselect (§6.3.9).
    top = listed(raw_imap.cmd("f", 'LSUB "" "%"'), b"LSUB")
    assert b"\\Noselect" in top[b"top"]
    subscribed = listed(raw_imap.cmd("g", 'LIST (SUBSCRIBED) "" "*"'))
    assert b"top/leaf" in subscribed and b"Junk" not in subscribed


def test_status_items(server: ServerThread, raw_imap: RawImap) -> None:
    raw_imap.cmd("a", "APPEND INBOX (\\Seen) {14+}\r\nSubject: 1\r\n\r\n")
    raw_imap.cmd("b", "APPEND INBOX {14+}\r\nSubject: 2\r\n\r\n")
    info = server.call(server.store.get_mailbox, ALICE[0], "INBOX")
    line = raw_imap.cmd("c", "STATUS inbox (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)")
    assert line[0] == (
        b'* STATUS "INBOX" (MESSAGES 2 RECENT 2 UIDNEXT 3 UIDVALIDITY %d UNSEEN 1 '
        b"HIGHESTMODSEQ %d)\r\n" % (info.uidvalidity, info.highestmodseq)
    )
    assert raw_imap.cmd("d", "STATUS nosuch (MESSAGES)")[-1].startswith(b"d NO")
    assert raw_imap.cmd("e", "STATUS INBOX (BOGUS)")[-1].startswith(b"e BAD")


def test_select_and_examine_responses(server: ServerThread, raw_imap: RawImap) -> None:
    raw_imap.cmd("a", "APPEND INBOX (\\Seen) {14+}\r\nSubject: 1\r\n\r\n")
    raw_imap.cmd("b", "APPEND INBOX ($Work) {14+}\r\nSubject: 2\r\n\r\n")
    info = server.call(server.store.get_mailbox, ALICE[0], "INBOX")
    lines = raw_imap.cmd("c", "SELECT INBOX")
    assert lines[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n"
    assert lines[1] == (b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft "
                        b"$Work \\*)] Flags permitted\r\n")
    # Both messages are new: this first read-write SELECT claims them (§2.3.2).
    assert b"* 2 EXISTS\r\n" in lines and b"* 2 RECENT\r\n" in lines
    assert any(x.startswith(b"* OK [UNSEEN 2]") for x in lines)
    assert any(x.startswith(b"* OK [UIDVALIDITY %d]" % info.uidvalidity) for x in lines)
    assert any(x.startswith(b"* OK [UIDNEXT 3]") for x in lines)
    assert any(x.startswith(b"* OK [HIGHESTMODSEQ %d]" % info.highestmodseq) for x in lines)
    assert lines[-1].startswith(b"c OK [READ-WRITE]")
    lines = raw_imap.cmd("d", "EXAMINE INBOX")
    assert b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n" in lines
    assert lines[-1].startswith(b"d OK [READ-ONLY]")
    assert raw_imap.cmd("e", "STORE 1 +FLAGS (\\Flagged)")[-1].startswith(b"e NO")
    # A failed SELECT leaves the session unselected (§6.3.1).
    assert raw_imap.cmd("f", "SELECT nosuch")[-1].startswith(b"f NO")
    assert raw_imap.cmd("g", "FETCH 1 FLAGS")[-1].startswith(b"g BAD")


def test_mailbox_names_in_modified_utf7(server: ServerThread) -> None:
    with IMAPClient("127.0.0.1", port=server.port("imaps"),
                    ssl_context=client_tls_context()) as c:
        c.login(*ALICE)
        c.create_folder("Entwürfe/Ärger & Co")
        names = [f[2] for f in c.list_folders()]
        assert "Entwürfe/Ärger & Co" in names and "Entwürfe" in names
        c.select_folder("Entwürfe/Ärger & Co")
    raw_imap = RawImap(server.port("imap"))
    raw_imap.login()
    boxes = listed(raw_imap.cmd("a", 'LIST "" "Entw*"'))
    assert b"Entw&APw-rfe/&AMQ-rger &- Co" in boxes
    assert raw_imap.cmd("b", 'SELECT "Entw&APw-rfe"')[-1].startswith(b"b OK")
    # Not modified UTF-7: a valid astring naming no mailbox (RFC 3501 §5.1.3).
    assert raw_imap.cmd("c", 'SELECT "Entw&AP"')[-1].startswith(b"c NO [NONEXISTENT]")
    raw_imap.close()


def test_append_appenduid_trycreate_and_date(server: ServerThread, raw_imap: RawImap) -> None:
    info = server.call(server.store.get_mailbox, ALICE[0], "Drafts")
    lines = raw_imap.cmd("a", 'APPEND Drafts (\\Draft) "05-Mar-2024 10:11:12 +0100" {14+}\r\n'
                         "Subject: d\r\n\r\n")
    assert lines[-1] == b"a OK [APPENDUID %d 1] APPEND completed\r\n" % info.uidvalidity
    raw_imap.cmd("b", "SELECT Drafts")
    got = raw_imap.cmd("c", "FETCH 1 (FLAGS INTERNALDATE UID)")[0]
    assert got == b'* 1 FETCH (FLAGS (\\Draft \\Recent) INTERNALDATE "05-Mar-2024 10:11:12 +0100" UID 1)\r\n'
    assert raw_imap.cmd("d", "APPEND Nowhere {14+}\r\nSubject: d\r\n\r\n")[-1].startswith(
        b"d NO [TRYCREATE]")
    # Synchronizing literal: "+" first.
    raw_imap.send(b"e APPEND INBOX {14}\r\n")
    assert raw_imap.readline().startswith(b"+ ")
    raw_imap.send(b"Subject: s\r\n\r\n\r\n")
    assert raw_imap.until_tagged("e")[-1].startswith(b"e OK [APPENDUID")


def test_append_corpus_roundtrip_exact_bytes(server: ServerThread, raw_imap: RawImap) -> None:
    """Every corpus message goes in by APPEND and comes back as its CRLF form
    (bare LF -> CRLF, issue #12; a CRLF-clean message byte for byte), with
    RFC822.SIZE that form's length: BINARY[] exactly; BODY[] too, but for NUL,
    sent as 0x80 because an ordinary literal may not carry it (RFC 3501 §9,
    RFC 3516 §4.2)."""
    paths = corpus_messages()
    for i, path in enumerate(paths):
        blob = path.read_bytes()
        raw_imap.send(b"a%d APPEND INBOX {%d+}\r\n" % (i, len(blob)) + blob + b"\r\n")
        assert raw_imap.until_tagged(f"a{i}")[-1].startswith(b"a%d OK [APPENDUID" % i), path.name
    raw_imap.cmd("s", "EXAMINE INBOX")
    for i, path in enumerate(paths, start=1):
        blob = to_crlf(path.read_bytes())
        lines = raw_imap.cmd("f", f"FETCH {i} (RFC822.SIZE BODY.PEEK[])")
        head = b"* %d FETCH (RFC822.SIZE %d BODY[] {%d}\r\n" % (i, len(blob), len(blob))
        assert lines[0] == head + blob.replace(b"\0", b"\x80") + b")\r\n", path.name
        if b"\0" in blob:
            lines = raw_imap.cmd("b", f"FETCH {i} (BINARY.PEEK[])")
            assert lines[0] == b"* %d FETCH (BINARY[] ~{%d}\r\n" % (i, len(blob)) + blob \
                + b")\r\n", path.name


def test_append_with_imaplib_in_selected_mailbox_reports_exists(server: ServerThread) -> None:
    c = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    c.login(*ALICE)
    c.select("INBOX")
    typ, data = c.append("INBOX", None, None, b"Subject: x\r\n\r\nbody\r\n")
    assert typ == "OK" and b"APPENDUID" in data[0]
    assert c.response("EXISTS")[1][-1] == b"1"
    c.logout()


@pytest.mark.parametrize(
    ("reference", "pattern", "name", "matches"),
    [
        ("", "*", "a/b/c", True),
        ("", "%", "a/b", False),
        ("", "a/%", "a/b", True),
        ("", "a/%", "a/b/c", False),
        ("a/", "%", "a/b", True),
        ("", "inbox", "INBOX", True),
        ("", "InBox/%", "INBOX/x", True),
        ("", "inbox2", "INBOX2", False),
        ("", "a.b", "axb", False),  # regex metacharacters are literal
        ("", "*c", "a/b/c", True),
    ],
)
def test_pattern_matching(reference: str, pattern: str, name: str, matches: bool) -> None:
    from mailserver.imap.commands.listing import pattern_regex

    assert bool(pattern_regex(reference, pattern).fullmatch(name)) is matches


def test_half_close_after_logout_still_gets_replies(server: ServerThread) -> None:
    import socket

    c = RawImap(server.port("imap"))
    c.send(b'a LOGIN "alice@example.test" "alice-secret"\r\nb LOGOUT\r\n')
    c.sock.shutdown(socket.SHUT_WR)
    lines = c.read_all()
    assert lines[0].startswith(b"a OK") and lines[-1].startswith(b"b OK")
    c.close()
