"""SEARCH text matching through the real server, with imaplib (answers that
used to differ from Dovecot, bench/COMPARE.md).

* SEARCH compares with i;unicode-casemap (RFC 5051; RFC 9051 §6.4.4): ß is not ss;
  stores written with the old normalisation (facts version 2) stay correct.
* SEARCH BODY looks at the decoded content, not MIME headers or boundary lines.
"""

from __future__ import annotations

import imaplib

from support.imap_data import put, uid_search
from support.server import ServerThread

from mailserver.protocol.mime import analyze

STRASSE = ("Subject: Straße\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           "Wir wohnen in der Hauptstraße.\r\n").encode()
CLASS = b"Subject: class\r\n\r\nA class of its own; SS Great Britain.\r\n"
MULTI = (b"Subject: multi\r\nContent-Type: multipart/mixed; boundary=boundary42\r\n\r\n"
         b"preamble word zebra\r\n"
         b"--boundary42\r\nContent-Type: text/plain\r\nContent-Description: giraffe\r\n\r\n"
         b"only apricot here\r\n--boundary42--\r\n")
PARTIAL = (b"Subject: part\r\nContent-Type: message/partial; id=x; number=1\r\n\r\n"
           b"Subject: inner\r\n\r\nquince\r\n")


def test_search_uses_unicode_casemap(server: ServerThread, imaps: imaplib.IMAP4_SSL) -> None:
    strasse, klass = put(server, STRASSE), put(server, CLASS)
    assert uid_search(imaps, "BODY", "ß".encode()) == [strasse]
    assert uid_search(imaps, "BODY", "HAUPTSTRAßE".encode()) == [strasse]
    assert uid_search(imaps, "BODY", "ss") == [klass]
    assert uid_search(imaps, "BODY", "STRASSE") == []
    assert uid_search(imaps, "SUBJECT", "STRAßE".encode()) == [strasse]
    assert uid_search(imaps, "TEXT", "subject: straße".encode()) == [strasse]


def test_version_2_facts_still_search_right(server: ServerThread,
                                            imaps: imaplib.IMAP4_SSL) -> None:
    # Facts written before i;unicode-casemap: their casefolded values are not used.
    old = b"MF\x02" + analyze(STRASSE).to_bytes()[3:]
    uid = put(server, STRASSE, old)
    assert uid_search(imaps, "SUBJECT", "STRAßE".encode()) == [uid]
    assert uid_search(imaps, "SUBJECT", "STRASSE") == []


def test_body_search_skips_mime_structure(server: ServerThread, imaps: imaplib.IMAP4_SSL) -> None:
    multi, partial = put(server, MULTI), put(server, PARTIAL)
    assert uid_search(imaps, "BODY", "apricot") == [multi]
    for structure in ("boundary42", "Content-Type", "giraffe", "zebra"):
        assert uid_search(imaps, "BODY", structure) == [], structure
    assert uid_search(imaps, "TEXT", "boundary42") == [multi]  # in the top-level header
    assert uid_search(imaps, "BODY", "quince") == [partial]  # message/partial content is searched
