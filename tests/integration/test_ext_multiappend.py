"""MULTIAPPEND (RFC 3502) and the BINARY capability (RFC 3516) on the wire.

A MULTIAPPEND stores every message in one synced commit or none of them
(§6.3.11): a message over the size limit or a quota that the whole batch
exceeds leaves the mailbox as it was.  APPENDUID gives the UIDs in the
client's order (RFC 4315 §3)."""

from __future__ import annotations

from support.server import ServerThread
from support.wire import RawImap

CAROL = ("carol@example.test", "carol-secret")


def msg(n: int, size: int = 0) -> bytes:
    return b"Subject: m%d\r\n\r\n" % n + b"x" * size + b"body\r\n"


def literal(data: bytes, binary: bool = False) -> bytes:
    return (b"~{%d+}\r\n" if binary else b"{%d+}\r\n") % len(data) + data


def test_capabilities(raw_imap: RawImap) -> None:
    caps = raw_imap.ok("c", "CAPABILITY")[0].split()
    assert b"MULTIAPPEND" in caps and b"BINARY" in caps and b"LITERAL+" in caps


def test_multiappend_stores_all_in_order(raw_imap: RawImap) -> None:
    raw_imap.ok("s", "SELECT INBOX")
    out = raw_imap.cmd("a", b"APPEND INBOX (\\Seen) " + literal(msg(1))
                       + b' (\\Flagged $Work) "7-Feb-2024 10:00:00 +0200" ' + literal(msg(2))
                       + b" " + literal(msg(3) + b"\0nul\r\n", binary=True))
    assert out[-1].startswith(b"a OK [APPENDUID "), out
    assert out[-1].split()[4] == b"1:3]"
    assert b"* 3 EXISTS\r\n" in out and b"* 3 RECENT\r\n" in out
    lines = raw_imap.ok("f", "FETCH 1:3 (FLAGS INTERNALDATE BINARY.PEEK[])")
    assert b"FLAGS (\\Seen \\Recent)" in lines[0] and msg(1) in lines[0]
    assert b"$Work" in lines[1] and b'"07-Feb-2024 10:00:00 +0200"' in lines[1]
    assert b"~{%d}\r\n" % len(msg(3) + b"\0nul\r\n") in lines[2]  # NUL: literal8


def test_all_or_nothing(server: ServerThread) -> None:
    server.add_user(*CAROL, quota=3000)
    with RawImap(server.port("imap")) as c:
        c.login(*CAROL)
        c.ok("s", "SELECT INBOX")
        # Each fits the quota, together they do not: nothing is stored.
        out = c.cmd("a", b"APPEND INBOX " + literal(msg(1, 1400)) + b" "
                    + literal(msg(2, 1400)) + b" " + literal(msg(3, 1400)))
        assert out[-1].startswith(b"a NO [OVERQUOTA]"), out
        # A bad flag in the last message: a syntax error before anything is stored.
        out = c.cmd("b", b"APPEND INBOX " + literal(msg(4)) + b" (\\Bogus) " + literal(msg(5)))
        assert out[-1].startswith(b"b BAD"), out
        assert c.ok("n", "NOOP")[0] == b"n OK NOOP completed\r\n"
        assert b"MESSAGES 0" in c.ok("t", "STATUS INBOX (MESSAGES)")[0]
        out = c.cmd("c", b"APPEND INBOX " + literal(msg(6)) + b" " + literal(msg(7)))
        assert out[-1].split()[4] == b"1:2]"
