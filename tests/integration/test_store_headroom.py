"""Headroom in a tiny LMDB map (``store/headroom.py``): once live data nears
the map size, new mail is refused (``StoreFull``: SMTP 452 4.3.1, IMAP NO
[OVERQUOTA]) while flag changes, EXPUNGE, MOVE and deletes still succeed,
and new mail is taken again once space is freed."""

from __future__ import annotations

import dataclasses
import imaplib
import smtplib
from pathlib import Path

import pytest
from support.server import DOMAIN, USERS, ServerThread, make_config

from mailserver.config import StoreSettings
from mailserver.store.headroom import StoreFull
from mailserver.store.store import Store

A = "alice@example.org"
MAP_SIZE = 4 << 20
BODY = b"x" * 60_000


def _message(i: int) -> bytes:
    return b"From: a@example.org\r\nSubject: big %d\r\n\r\n" % i + BODY + b"%d\r\n" % i


async def _fill(store: Store, size: int = len(BODY)) -> int:
    """APPEND until refused; returns how many fit."""
    for i in range(5000):
        try:
            await store.append(A, "INBOX", _message(i)[:size], b"", internal_date=1)
        except StoreFull:
            return i
    raise AssertionError("a 4 MiB map took far too much mail")


async def test_full_store_refuses_new_mail_but_keeps_deleting(tmp_path: Path) -> None:
    store = await Store.open(tmp_path, map_size=MAP_SIZE)
    try:
        await store.add_domain("example.org")
        await store.add_account(A, "h")
        fitted = await _fill(store)
        assert fitted > 10
        await _fill(store, 1000)  # to the last kilobyte below the limit
        inbox = store.get_mailbox(A, "INBOX")
        with pytest.raises(StoreFull):
            await store.copy(inbox.id, range(1, 21), A, "Trash")
        # What frees space still works in the reserve.
        updated, _, _ = await store.store_flags(inbox.id, range(1, 11), "add",
                                             frozenset({"\\Seen", "\\Deleted"}))
        assert len(updated) == 10
        _, moved = await store.move(inbox.id, [11, 12], A, "Trash")
        assert len(moved) == 2
        assert await store.expunge(inbox.id) == list(range(1, 11))
        # Space freed: new mail is taken again.
        await store.append(A, "INBOX", _message(10_000), b"", internal_date=1)
        await store.copy(inbox.id, [13], A, "Trash")
        # Filled again (free pages are fragmented now: a big message may find
        # no long enough run and the map itself is full, which is StoreFull
        # too), the store can still change flags, expunge, and be emptied.
        await _fill(store)
        await _fill(store, 1000)
        await store.store_flags(inbox.id, [13], "add", frozenset({"\\Deleted"}))
        assert await store.expunge(inbox.id) == [13]
        await store.delete_account(A)
    finally:
        await store.close()


def test_full_store_over_imap_and_smtp(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path / "data"),
                                 store=StoreSettings(map_size=MAP_SIZE))
    srv = ServerThread(config)
    try:
        for address, password in USERS.items():
            srv.add_user(address, password)
        alice = "alice@example.test"
        imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
        imap.login(alice, USERS[alice])
        assert imap.select("INBOX")[0] == "OK"
        refused = None
        for i in range(1000):
            typ, data = imap.append("INBOX", None, None, _message(i))
            if typ != "OK":
                refused = data[0]
                break
        assert refused is not None and refused.startswith(b"[OVERQUOTA] Mail store is nearly full")
        with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as smtp:
            smtp.ehlo("client.example.net")
            # SIZE= that does not fit: refused at MAIL (RFC 1870 §6.1).
            code, text = smtp.mail("someone@example.net", [f"SIZE={len(BODY) * 2}"])
            assert code == 452 and text.startswith(b"4.3.1"), (code, text)
            smtp.rset()
            smtp.mail("someone@example.net")
            smtp.rcpt(f"bob@{DOMAIN}")
            code, text = smtp.data(_message(0))
            assert code == 452 and text.startswith(b"4.3.1"), (code, text)
        assert imap.store("1:5", "+FLAGS", "(\\Deleted)")[0] == "OK"
        assert imap.expunge()[0] == "OK"
        assert imap.append("INBOX", None, None, _message(99_999))[0] == "OK"
        imap.logout()
    finally:
        srv.stop()
