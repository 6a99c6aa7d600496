"""Messages put straight into a test server's store, and imaplib's UID FETCH and
UID SEARCH with their answers checked, for tests that look at what IMAP makes of
exact message bytes (imaplib's APPEND would rewrite bare LFs)."""

from __future__ import annotations

import imaplib
from typing import Any

from mailserver.protocol.mime import analyze
from support.wire import ALICE


def put(server: Any, blob: bytes, facts: bytes | None = None) -> int:
    """Store ``blob`` unchanged in alice's INBOX (INTERNALDATE 1 s after the epoch)
    on ``server`` (``support.server.ServerThread``); ``facts`` default to
    ``analyze(blob)``'s.  Returns the UID."""
    facts = analyze(blob).to_bytes() if facts is None else facts
    return server.run(server.store.append(ALICE[0], "INBOX", blob, facts, internal_date=1))[0].uid


def uid_fetch(c: imaplib.IMAP4, uid: int, what: str) -> list[Any]:
    """SELECT INBOX, then UID FETCH ``uid`` ``what``: imaplib's data (it must be OK)."""
    c.select("INBOX")
    typ, data = c.uid("FETCH", str(uid), what)
    assert typ == "OK", data
    return data


def uid_search(c: imaplib.IMAP4, *criteria: str | bytes) -> list[int]:
    """SELECT INBOX, then UID SEARCH CHARSET UTF-8 ``criteria``; a bytes last
    criterion goes as a literal.  The UIDs found."""
    c.select("INBOX")
    args = list(criteria)
    if isinstance(args[-1], bytes):
        c.literal = args.pop()
    typ, data = c.uid("SEARCH", "CHARSET", "UTF-8", *args)
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]
