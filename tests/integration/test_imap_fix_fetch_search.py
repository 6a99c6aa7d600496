"""FETCH and SEARCH answers that used to differ from Dovecot (bench/COMPARE.md),
through the real server with imaplib.

* NUL is not a CHAR8 (RFC 3501 §9): BODY[] sends it as 0x80, same length.
* A part our BODYSTRUCTURE lists answers ``""``, not NIL (RFC 3501 §6.4.5, §7.4.2).
* multipart/* without boundary is text/plain; charset=us-ascii (RFC 2045 §5.2,
  RFC 2046 §5.1.1).
* SEARCH compares with i;unicode-casemap (RFC 5051; RFC 9051 §6.4.4): ß is not ss;
  stores written with the old normalisation (facts version 2) stay correct.
* SEARCH BODY looks at the decoded content, not MIME headers or boundary lines.
"""

from __future__ import annotations

import imaplib

from conftest import ServerThread

from mailserver.protocol.mime import analyze

ALICE = ("alice@example.test", "alice-secret")

NUL = b"Subject: nul\r\n\r\nbefore\x00after\r\n"
NO_PARTS = (b"Subject: empty\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"no delimiter ever\r\n")
ENCODED_RFC822 = (b"Subject: fwd\r\nContent-Type: message/rfc822\r\n"
                  b"Content-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogaGkNCg0KYm9keQ0K\r\n")
NO_BOUNDARY = b"Subject: odd\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n"
STRASSE = ("Subject: Straße\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           "Wir wohnen in der Hauptstraße.\r\n").encode()
CLASS = b"Subject: class\r\n\r\nA class of its own; SS Great Britain.\r\n"
MULTI = (b"Subject: multi\r\nContent-Type: multipart/mixed; boundary=boundary42\r\n\r\n"
         b"preamble word zebra\r\n"
         b"--boundary42\r\nContent-Type: text/plain\r\nContent-Description: giraffe\r\n\r\n"
         b"only apricot here\r\n--boundary42--\r\n")
PARTIAL = (b"Subject: part\r\nContent-Type: message/partial; id=x; number=1\r\n\r\n"
           b"Subject: inner\r\n\r\nquince\r\n")


def put(server: ServerThread, blob: bytes, facts: bytes | None = None) -> int:
    facts = analyze(blob).to_bytes() if facts is None else facts
    return server.run(server.store.append(ALICE[0], "INBOX", blob, facts, internal_date=1))[0].uid


def fetch(c: imaplib.IMAP4_SSL, uid: int, what: str) -> list:
    c.select("INBOX")
    typ, data = c.uid("FETCH", str(uid), what)
    assert typ == "OK", data
    return data


def search(c: imaplib.IMAP4_SSL, *criteria: str | bytes) -> list[int]:
    """UID SEARCH CHARSET UTF-8; a bytes last criterion goes as a literal."""
    c.select("INBOX")
    args = list(criteria)
    if isinstance(args[-1], bytes):
        c.literal = args.pop()
    typ, data = c.uid("SEARCH", "CHARSET", "UTF-8", *args)
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


def test_nul_goes_out_as_0x80_in_literals(server: ServerThread, imaps: imaplib.IMAP4_SSL) -> None:
    uid = put(server, NUL)
    data = fetch(imaps, uid, "(RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT]<0.7>)")
    assert b"RFC822.SIZE %d" % len(NUL) in data[0][0]
    assert data[0][1] == NUL.replace(b"\x00", b"\x80")
    assert data[1][1] == b"before\x80"
    # BINARY (RFC 3516 §4.2) still carries the octet, in a literal8.
    data = fetch(imaps, uid, "(BINARY.PEEK[1])")
    assert data[0][0].endswith(b"~{14}") and data[0][1] == b"before\x00after\r\n"


def test_listed_empty_parts_are_empty_strings(server: ServerThread,
                                              imaps: imaplib.IMAP4_SSL) -> None:
    uid = put(server, NO_PARTS)
    data = fetch(imaps, uid, "(BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2])")
    line = data[0]
    assert b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed"' \
        in line
    assert b'BODY[1] "" BODY[1.MIME] "" BODY[2] NIL' in line
    uid = put(server, ENCODED_RFC822)
    data = fetch(imaps, uid, "(BODY.PEEK[1.HEADER] BODY.PEEK[1.TEXT] BODY.PEEK[1.1] BODY.PEEK[1.2])")
    assert b'BODY[1.HEADER] "" BODY[1.TEXT] "" BODY[1.1] "" BODY[1.2] NIL' in data[0]


def test_multipart_without_boundary_is_text_plain(server: ServerThread,
                                                  imaps: imaplib.IMAP4_SSL) -> None:
    uid = put(server, NO_BOUNDARY)
    data = fetch(imaps, uid, "(BODYSTRUCTURE)")
    assert b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 3 ' in data[0]
    assert search(imaps, "BODY", "body") == [uid]


def test_search_uses_unicode_casemap(server: ServerThread, imaps: imaplib.IMAP4_SSL) -> None:
    strasse, klass = put(server, STRASSE), put(server, CLASS)
    assert search(imaps, "BODY", "ß".encode()) == [strasse]
    assert search(imaps, "BODY", "HAUPTSTRAßE".encode()) == [strasse]
    assert search(imaps, "BODY", "ss") == [klass]
    assert search(imaps, "BODY", "STRASSE") == []
    assert search(imaps, "SUBJECT", "STRAßE".encode()) == [strasse]
    assert search(imaps, "TEXT", "subject: straße".encode()) == [strasse]


def test_version_2_facts_still_search_right(server: ServerThread,
                                            imaps: imaplib.IMAP4_SSL) -> None:
    # Facts written before i;unicode-casemap: their casefolded values are not used.
    old = b"MF\x02" + analyze(STRASSE).to_bytes()[3:]
    uid = put(server, STRASSE, old)
    assert search(imaps, "SUBJECT", "STRAßE".encode()) == [uid]
    assert search(imaps, "SUBJECT", "STRASSE") == []


def test_body_search_skips_mime_structure(server: ServerThread, imaps: imaplib.IMAP4_SSL) -> None:
    multi, partial = put(server, MULTI), put(server, PARTIAL)
    assert search(imaps, "BODY", "apricot") == [multi]
    for structure in ("boundary42", "Content-Type", "giraffe", "zebra"):
        assert search(imaps, "BODY", structure) == [], structure
    assert search(imaps, "TEXT", "boundary42") == [multi]  # in the top-level header
    assert search(imaps, "BODY", "quince") == [partial]  # message/partial content is searched
