"""Bare LF becomes CRLF at intake (APPEND, SMTP DATA); CRLF input is kept octet for octet.

Raw wire clients on purpose: imaplib's APPEND and smtplib's ``str`` messages
rewrite line ends themselves, which would hide what the server does.  (Every
corpus message APPENDed raw: test_imap_mailboxes.py.)
"""

from __future__ import annotations

import re

from support.server import ServerThread
from support.wire import RawImap, RawSmtp

from mailserver.protocol.line_endings import to_crlf

MULTIPART_LF = (
    b"From: a@example.test\n"
    b"To: alice@example.test\n"
    b"Subject: lf\n"
    b"MIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="b"\n'
    b"\n"
    b"--b\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"one\n"
    b"two\rstill two\n"  # a bare CR is kept (protocol.line_endings)
    b"--b--\n"
)


def append(c: RawImap, tag: str, message: bytes) -> int:
    """APPEND ``message`` to INBOX with a synchronizing literal; its UID."""
    c.send(f"{tag} APPEND INBOX {{{len(message)}}}\r\n".encode())
    assert c.readline().startswith(b"+ ")
    c.send(message + b"\r\n")
    out = c.until_tagged(tag)
    m = re.search(rb"APPENDUID \d+ (\d+)", out[-1])
    assert m is not None, out
    return int(m.group(1))


def fetch(c: RawImap, tag: str, uid: int, item: str) -> bytes:
    """The response line(s) of ``UID FETCH uid item``, literals inlined."""
    out = c.ok(tag, f"UID FETCH {uid} ({item})")
    return b"".join(out[:-1])


def literal(response: bytes, item: bytes) -> bytes:
    m = re.search(re.escape(item) + rb" \{(\d+)\}\r\n", response)
    assert m is not None, response
    return response[m.end() : m.end() + int(m.group(1))]


def test_append_crlf_is_byte_exact_and_bare_lf_is_normalised(server: ServerThread) -> None:
    crlf = MULTIPART_LF.replace(b"\n", b"\r\n")
    assert crlf == to_crlf(MULTIPART_LF)
    with RawImap(server.port("imap")) as c:
        c.login()
        uid_crlf = append(c, "A1", crlf)
        uid_lf = append(c, "A2", MULTIPART_LF)
        c.ok("S", "SELECT INBOX")
        for uid in (uid_crlf, uid_lf):
            assert literal(fetch(c, "F1", uid, "BODY.PEEK[]"), b"BODY[]") == crlf
            size = fetch(c, "F2", uid, "RFC822.SIZE")
            assert f"RFC822.SIZE {len(crlf)}".encode() in size
            part = literal(fetch(c, "F3", uid, "BODY.PEEK[1]"), b"BODY[1]")
            assert part == b"one\r\ntwo\rstill two"  # the last CRLF is the boundary's
            partial = literal(fetch(c, "F4", uid, "BODY.PEEK[]<20.30>"), b"BODY[]<20>")
            assert partial == crlf[20:50]
        # Same BODYSTRUCTURE (part sizes and line counts) for both.
        s1 = fetch(c, "F5", uid_crlf, "BODYSTRUCTURE").split(b"BODYSTRUCTURE", 1)[1]
        s2 = fetch(c, "F6", uid_lf, "BODYSTRUCTURE").split(b"BODYSTRUCTURE", 1)[1]
        assert s1 == s2
        # The part's size counts CRLF as two octets; a bare CR is no line end,
        # and the last line ends at the boundary's CRLF: 1 line break.
        assert b'"7bit" 18 1 ' in s1, s1


def test_smtp_data_bare_lf_is_stored_with_crlf(server: ServerThread) -> None:
    body = b"From: x@remote.test\nTo: alice@example.test\nSubject: lf\n\nline\r\nline\n"
    with RawSmtp.greeted(server.port("smtp")) as s:
        assert s.cmd("EHLO client.remote.test")[-1].startswith(b"250")
        assert s.cmd("MAIL FROM:<x@remote.test>")[0].startswith(b"250")
        assert s.cmd("RCPT TO:<alice@example.test>")[0].startswith(b"250")
        assert s.cmd("DATA")[0].startswith(b"354")
        # "\n.\n" is not the end of the data: only CRLF "." CRLF is.
        reply = s.cmd(body + b".\nmore\r\n.")
        assert reply[0].startswith(b"250"), reply
    with RawImap(server.port("imap")) as c:
        c.login()
        c.ok("S", "SELECT INBOX")
        stored = literal(fetch(c, "F", 1, "BODY.PEEK[]"), b"BODY[]")
    assert stored.endswith(to_crlf(body + b".\nmore\r\n")), stored
    assert stored.count(b"\n") == stored.count(b"\r\n")

