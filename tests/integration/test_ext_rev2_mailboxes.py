"""Mailbox-tree correctness under concurrency (issue #4 §2) in both name
encodings, and IDLE at rest (RFC 2177, base in RFC 9051 §6.3.13): RENAME of
INBOX and of hierarchies while other sessions hold them selected, DELETE of a
mailbox with children (RFC 3501 §6.3.4, RFC 9051 §6.3.5), and many IDLE
sessions that cost one change-feed waiter each and wake only on a change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from support.server import ServerThread
from support.wire import ALICE, RawImap

MSG = b"Subject: m\r\n\r\nbody\r\n"


def append(c: RawImap, mailbox: bytes = b"INBOX") -> None:
    lines = c.cmd("ap", b'APPEND "' + mailbox + b'" {%d+}\r\n' % len(MSG) + MSG)
    assert lines[-1].startswith(b"ap OK"), lines


def names(lines: list[bytes]) -> set[bytes]:
    return {x.rstrip(b"\r\n").split(b'"/" ', 1)[1].strip(b'"')
            for x in lines if x.startswith(b"* LIST ")}


@pytest.fixture
def pair(server: ServerThread) -> Iterator[tuple[RawImap, RawImap]]:
    """A UTF-8 (IMAP4rev2) session and a modified-UTF-7 (rev1) session of alice."""
    a, b = RawImap(server.port("imap")), RawImap(server.port("imap"))
    a.login()
    b.login()
    a.cmd("en", "ENABLE IMAP4rev2")
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_rename_hierarchy_across_encodings(pair: tuple[RawImap, RawImap]) -> None:
    u8, m7 = pair
    assert u8.cmd("a", 'CREATE "Projets/Été/Plage"'.encode())[-1].startswith(b"a OK")
    append(u8, "Projets/Été/Plage".encode())
    # The rev1 session renames the middle level, in mUTF-7, into a new hierarchy.
    lines = m7.cmd("b", 'RENAME "Projets/&AMk-t&AOk-" "Archiv/&ANY-ffentlich/2024"')
    assert lines[-1].startswith(b"b OK")
    assert names(m7.cmd("c", 'LIST "" "*"')) >= {
        b"Projets", b"Archiv", b"Archiv/&ANY-ffentlich", b"Archiv/&ANY-ffentlich/2024",
        b"Archiv/&ANY-ffentlich/2024/Plage"}
    got = names(u8.cmd("d", 'LIST "" "*"'))
    assert "Archiv/Öffentlich/2024/Plage".encode() in got
    assert not any(n.startswith("Projets/Été".encode()) for n in got)
    # The message moved with its mailbox.
    lines = u8.cmd("e", 'STATUS "Archiv/Öffentlich/2024/Plage" (MESSAGES)'.encode())
    assert lines[0].endswith(b"(MESSAGES 1)\r\n")


def test_rename_of_selected_child_keeps_session_working(pair: tuple[RawImap, RawImap]) -> None:
    u8, m7 = pair
    u8.cmd("a", 'CREATE "Dossier/Fils"')
    append(u8, b"Dossier/Fils")
    m7.cmd("s", 'SELECT "Dossier/Fils"')
    assert u8.cmd("r", 'RENAME "Dossier" "Répertoire"'.encode())[-1].startswith(b"r OK")
    # Same mailbox, new name: the selected session goes on as before.
    assert m7.cmd("f", "FETCH 1 (FLAGS)")[0].startswith(b"* 1 FETCH (FLAGS (")
    append(u8, "Répertoire/Fils".encode())
    assert b"* 2 EXISTS\r\n" in m7.cmd("n", "NOOP")
    # Renaming the selected mailbox itself (by its own session) is fine too.
    assert m7.cmd("t", 'RENAME "R&AOk-pertoire/Fils" "Fils"')[-1].startswith(b"t OK")
    assert m7.cmd("u", "FETCH 2 (UID)")[0] == b"* 2 FETCH (UID 2)\r\n"


def test_rename_inbox_while_selected_elsewhere(pair: tuple[RawImap, RawImap]) -> None:
    u8, m7 = pair
    append(m7)
    append(m7)
    m7.cmd("c", "CREATE INBOX/Child")
    m7.cmd("s", "SELECT INBOX")
    assert u8.cmd("r", 'RENAME INBOX "Ancien courrier"')[-1].startswith(b"r OK")
    # The rev1 session that has INBOX selected is told its messages left.
    lines = m7.cmd("n", "NOOP")
    assert lines[:2] == [b"* 2 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]
    assert m7.cmd("x", "SEARCH ALL")[0] == b"* SEARCH\r\n"
    # INBOX still exists, empty, with its child; the new mailbox has the messages.
    got = names(u8.cmd("l", 'LIST "" "*"'))
    assert {b"INBOX", b"INBOX/Child", b"Ancien courrier"} <= got
    lines = u8.cmd("t", 'STATUS "Ancien courrier" (MESSAGES)')
    assert lines[0] == b'* STATUS "Ancien courrier" (MESSAGES 2)\r\n'
    append(u8)
    assert b"* 1 EXISTS\r\n" in m7.cmd("m", "NOOP")


def test_delete_with_children_both_encodings(pair: tuple[RawImap, RawImap]) -> None:
    u8, m7 = pair
    assert u8.cmd("a", 'CREATE "Père/Enfant"'.encode())[-1].startswith(b"a OK")
    append(u8, "Père".encode())
    # A selectable parent with children loses its messages and becomes \Noselect.
    assert m7.cmd("b", 'DELETE "P&AOg-re"')[-1].startswith(b"b OK")
    line = [x for x in u8.cmd("c", 'LIST "" "Père"'.encode()) if x.startswith(b"* LIST")][0]
    assert b"\\Noselect" in line and b"\\HasChildren" in line
    assert u8.cmd("d", 'SELECT "Père"'.encode())[-1].startswith(b"d NO")
    # A \Noselect level with children: NO [HASCHILDREN]; once childless it can go.
    assert u8.cmd("e", 'DELETE "Père"'.encode())[-1].startswith(b"e NO [HASCHILDREN]")
    assert m7.cmd("f", 'DELETE "P&AOg-re/Enfant"')[-1].startswith(b"f OK")
    assert u8.cmd("g", 'DELETE "Père"'.encode())[-1].startswith(b"g OK")
    assert not any(b"P&AOg-re" in x for x in m7.cmd("h", 'LIST "" "*"'))


def test_delete_selected_elsewhere_ends_that_session(pair: tuple[RawImap, RawImap]) -> None:
    u8, m7 = pair
    u8.cmd("a", 'CREATE "Éphémère"'.encode())
    m7.cmd("s", 'SELECT "&AMk-ph&AOk-m&AOg-re"')
    assert u8.cmd("d", 'DELETE "Éphémère"'.encode())[-1].startswith(b"d OK")
    m7.send(b"n NOOP\r\n")
    rest = m7.read_all()
    assert rest and rest[0].startswith(b"* BYE")


def _feed_waiters(server: ServerThread, mailbox_id: int) -> int:
    return len(server.store._feed._waiters.get(mailbox_id, ()))


def test_idle_sessions_wait_on_the_feed_only(server: ServerThread) -> None:
    """N sessions in IDLE: one change-feed waiter each, a bounded number of
    tasks, no output while nothing changes, one EXISTS each on a delivery."""
    n = 8  # each login hashes a password (argon2): keep the test quick
    info = server.call(server.store.get_mailbox, ALICE[0], "INBOX")
    clients = [RawImap(server.port("imap")) for _ in range(n)]
    try:
        tasks_before = server.call(lambda: len(asyncio.all_tasks()))
        for i, c in enumerate(clients):
            c.login()
            if i % 2:
                c.cmd("e", "ENABLE IMAP4rev2")
            c.cmd("s", "SELECT INBOX")
            c.send(b"i IDLE\r\n")
            assert c.readline().startswith(b"+ ")
        # Each IDLE is woken by the store's feed, nothing else: one waiter per
        # session, and at most the reader and the feed wait beside each
        # connection task (no per-session timers or polling tasks).
        assert server.call(_feed_waiters, server, info.id) == n
        tasks = server.call(lambda: len(asyncio.all_tasks())) - tasks_before
        assert tasks <= 3 * n
        # Nothing is sent while nothing changes: a NOOP-free round trip through
        # another session proves the server is responsive, and the idlers got nothing.
        other = RawImap(server.port("imap"))
        other.login()
        assert other.cmd("n", "NOOP")[-1].startswith(b"n OK")
        for c in clients:
            c.sock.settimeout(0.0)
            with pytest.raises(BlockingIOError):
                c.sock.recv(1)
            c.sock.settimeout(30)
        append(other)
        other.close()
        for c in clients:
            assert c.readline() == b"* 1 EXISTS\r\n"
            c.send(b"DONE\r\n")
            assert c.until_tagged("i")[-1].startswith(b"i OK")
        assert server.call(_feed_waiters, server, info.id) == 0
    finally:
        for c in clients:
            c.close()
