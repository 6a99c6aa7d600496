"""FETCH of malformed messages through the real server, with imaplib (answers
that used to differ from Dovecot, bench/COMPARE.md).

* NUL is not a CHAR8 (RFC 3501 §9): BODY[] sends it as 0x80, same length.
* A part our BODYSTRUCTURE lists answers ``""``, not NIL (RFC 3501 §6.4.5, §7.4.2).
* multipart/* without boundary is text/plain; charset=us-ascii (RFC 2045 §5.2,
  RFC 2046 §5.1.1).
"""

from __future__ import annotations

import imaplib

from support.imap_data import put, uid_fetch, uid_search
from support.server import ServerThread

NUL = b"Subject: nul\r\n\r\nbefore\x00after\r\n"
NO_PARTS = (b"Subject: empty\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"no delimiter ever\r\n")
ENCODED_RFC822 = (b"Subject: fwd\r\nContent-Type: message/rfc822\r\n"
                  b"Content-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogaGkNCg0KYm9keQ0K\r\n")
NO_BOUNDARY = b"Subject: odd\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n"


def test_nul_goes_out_as_0x80_in_literals(server: ServerThread, imaps: imaplib.IMAP4_SSL) -> None:
    uid = put(server, NUL)
    data = uid_fetch(imaps, uid, "(RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT]<0.7>)")
    assert b"RFC822.SIZE %d" % len(NUL) in data[0][0]
    assert data[0][1] == NUL.replace(b"\x00", b"\x80")
    assert data[1][1] == b"before\x80"
    # BINARY (RFC 3516 §4.2) still carries the octet, in a literal8.
    data = uid_fetch(imaps, uid, "(BINARY.PEEK[1])")
    assert data[0][0].endswith(b"~{14}") and data[0][1] == b"before\x00after\r\n"


def test_listed_empty_parts_are_empty_strings(server: ServerThread,
                                              imaps: imaplib.IMAP4_SSL) -> None:
    uid = put(server, NO_PARTS)
    data = uid_fetch(imaps, uid, "(BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2])")
    line = data[0]
    assert b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed"' \
        in line
    assert b'BODY[1] "" BODY[1.MIME] "" BODY[2] NIL' in line
    uid = put(server, ENCODED_RFC822)
    data = uid_fetch(imaps, uid, "(BODY.PEEK[1.HEADER] BODY.PEEK[1.TEXT] BODY.PEEK[1.1] BODY.PEEK[1.2])")
    assert b'BODY[1.HEADER] "" BODY[1.TEXT] "" BODY[1.1] "" BODY[1.2] NIL' in data[0]


def test_multipart_without_boundary_is_text_plain(server: ServerThread,
                                                  imaps: imaplib.IMAP4_SSL) -> None:
    uid = put(server, NO_BOUNDARY)
    data = uid_fetch(imaps, uid, "(BODYSTRUCTURE)")
    assert b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 3 ' in data[0]
    assert uid_search(imaps, "BODY", "body") == [uid]


def test_long_non_ascii_media_type(server: ServerThread, imaps: imaplib.IMAP4_SSL) -> None:
    """bench/fuzz.py found stored facts that could not be read back (a media
    type cut inside a UTF-8 character at 255 octets)."""
    msg = b"Subject: t\r\nContent-Type: multipart/" + b"\xff" * 123 + b"; boundary=ab\r\n\r\nx\r\n"
    uid = put(server, msg)
    data = uid_fetch(imaps, uid, "(BODYSTRUCTURE BODY.PEEK[1])")
    assert b"BODYSTRUCTURE (" in data[0][0]
    assert uid_search(imaps, "SUBJECT t") == [uid]
