"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4): RETURN (UPDATE) keeps a
search or sort result current with ADDTO/REMOVEFROM in untagged ESEARCH
responses as this and other sessions change the mailbox; CANCELUPDATE ends
it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.server import ServerThread
from support.wire import RawImap

from mailserver.imap.contexts import UpdateContext, render, sorted_diff
from mailserver.protocol.imap.types import Search, SearchAll


def append(conn: RawImap, subject: bytes, flags: bytes = b"") -> None:
    msg = b"Subject: " + subject + b"\r\n\r\nx\r\n"
    conn.ok("a", b"APPEND INBOX (" + flags + b") {%d+}\r\n" % len(msg) + msg)


@pytest.fixture
def pair(server: ServerThread, raw_imap: RawImap) -> tuple[RawImap, RawImap]:
    """Two sessions of alice on INBOX: the first watches, the second writes.
    INBOX holds b (seen), d, a (seen), e: UNSEEN matches 2 and 4."""
    for subject, flags in ((b"b", b"\\Seen"), (b"d", b""), (b"a", b"\\Seen"), (b"e", b"")):
        append(raw_imap, subject, flags)
    raw_imap.ok("s", "SELECT INBOX")
    other = RawImap(server.port("imap"))
    other.login()
    other.ok("s", "SELECT INBOX")
    yield raw_imap, other
    other.close()


def updates(lines: list[bytes]) -> list[bytes]:
    """The ESEARCH update lines and the EXISTS/EXPUNGE lines, in order."""
    keep = re.compile(rb"^\* (ESEARCH .*(ADDTO|REMOVEFROM)|\d+ (EXISTS|EXPUNGE))")
    return [x.rstrip(b"\r\n") for x in lines if keep.match(x)]


def test_capabilities(raw_imap: RawImap) -> None:
    caps = raw_imap.ok("c", "CAPABILITY")[0].split()
    assert b"CONTEXT=SEARCH" in caps and b"CONTEXT=SORT" in caps


def test_search_update_follows_other_session(pair: tuple[RawImap, RawImap]) -> None:
    me, other = pair
    out = me.ok("B01", "SEARCH RETURN (UPDATE COUNT) UNSEEN")
    assert b'* ESEARCH (TAG "B01") COUNT 2\r\n' in out
    append(other, b"c")  # a new unseen message: 5
    assert updates(me.ok("n", "NOOP")) == [b"* 5 EXISTS", b'* ESEARCH (TAG "B01") ADDTO (0 5)']
    other.ok("f", "STORE 2 +FLAGS (\\Seen)")  # leaves the result
    other.ok("f", "STORE 3 -FLAGS (\\Seen)")  # joins it
    assert updates(me.ok("n", "NOOP")) == [b'* ESEARCH (TAG "B01") REMOVEFROM (0 2) ADDTO (0 3)']
    # An expunge: REMOVEFROM while its number still names it, then EXPUNGE.
    other.ok("f", "STORE 4 +FLAGS (\\Deleted)")
    other.ok("e", "EXPUNGE")
    assert updates(me.ok("n", "NOOP")) == [b'* ESEARCH (TAG "B01") REMOVEFROM (0 4)',
                                           b"* 4 EXPUNGE"]
    # The session's own STORE updates too; nothing is reported twice.
    assert updates(me.ok("f", "STORE 1 -FLAGS (\\Seen)")) == [
        b'* ESEARCH (TAG "B01") ADDTO (0 1)']
    assert updates(me.ok("n", "NOOP")) == []


def test_uid_search_and_cancelupdate(pair: tuple[RawImap, RawImap]) -> None:
    me, other = pair
    out = me.ok("C01", "UID SEARCH RETURN (UPDATE) UNSEEN")
    assert b'* ESEARCH (TAG "C01") UID\r\n' in out  # UPDATE alone asks for no data
    # The same tag with UPDATE while its updates run: BAD (§4.3).
    assert me.cmd("C01", "UID SEARCH RETURN (UPDATE) ALL")[-1].startswith(b"C01 BAD")
    other.ok("f", "UID STORE 2 +FLAGS (\\Seen)")
    other.ok("f", "UID STORE 4 +FLAGS (\\Deleted)")
    other.ok("e", "EXPUNGE")
    assert updates(me.ok("n", "NOOP")) == [
        b'* ESEARCH (TAG "C01") UID REMOVEFROM (0 4)', b"* 4 EXPUNGE",
        b'* ESEARCH (TAG "C01") UID REMOVEFROM (0 2)']
    assert me.cmd("x", 'CANCELUPDATE "nope"')[-1].startswith(b"x NO")
    me.ok("x", 'CANCELUPDATE "C01"')
    append(other, b"c")
    assert updates(me.ok("n", "NOOP")) == [b"* 4 EXISTS"]
    assert me.cmd("x", 'CANCELUPDATE "C01"')[-1].startswith(b"x NO")
    assert me.cmd("x", "CANCELUPDATE C01")[-1].startswith(b"x BAD")  # quoted (§5)


def test_sort_update_positions(pair: tuple[RawImap, RawImap]) -> None:
    me, other = pair
    # SUBJECT order of b d a e: a(3) b(1) d(2) e(4).
    out = me.ok("S01", "UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 ALL")
    assert b'* ESEARCH (TAG "S01") UID ALL 3,1:2,4\r\n' in out
    append(other, b"c")  # uid 5 sorts third
    append(other, b"f")  # uid 6 sorts last
    assert updates(me.ok("n", "NOOP")) == [
        b"* 6 EXISTS", b'* ESEARCH (TAG "S01") UID ADDTO (3 5 6 6)']
    other.ok("f", "STORE 1 +FLAGS (\\Deleted)")
    other.ok("e", "EXPUNGE")
    assert updates(me.ok("n", "NOOP")) == [
        b'* ESEARCH (TAG "S01") UID REMOVEFROM (2 1)', b"* 1 EXPUNGE"]
    # Sequence-number SORT with a flag criterion: positions and numbers.
    out = me.ok("S02", "SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNSEEN")
    assert b'* ESEARCH (TAG "S02") ALL 4,1,3,5\r\n' in out  # c d e f
    other.ok("f", "STORE 1,4 +FLAGS (\\Seen)")  # d, c leave
    assert updates(me.ok("n", "NOOP")) == [b'* ESEARCH (TAG "S02") REMOVEFROM (1 4,1)']


def test_idle_gets_updates(pair: tuple[RawImap, RawImap]) -> None:
    me, other = pair
    me.ok("B02", "SEARCH RETURN (UPDATE) UNSEEN")
    me.send(b"i IDLE\r\n")
    assert me.readline().startswith(b"+ ")
    append(other, b"c")
    assert me.readline() == b"* 5 EXISTS\r\n"
    line = me.readline()
    while not line.startswith(b"* ESEARCH"):
        line = me.readline()  # RECENT
    assert line == b'* ESEARCH (TAG "B02") ADDTO (0 5)\r\n'
    me.send(b"DONE\r\n")
    assert me.until_tagged("i")[-1].startswith(b"i OK")


def test_noupdate_beyond_limit(pair: tuple[RawImap, RawImap]) -> None:
    from mailserver.imap.contexts import MAX_CONTEXTS
    me, _ = pair
    for i in range(MAX_CONTEXTS):
        me.ok(f"U{i}", "SEARCH RETURN (UPDATE) ALL")
    out = me.ok("Z", "SEARCH RETURN (UPDATE COUNT) ALL")
    assert out[0] == b'* NO [NOUPDATE "Z"] Too many updating contexts\r\n'
    assert b'* ESEARCH (TAG "Z") COUNT 4\r\n' in out  # the other options still answered


# ------------------------------------------------------------ pure parts


@given(st.lists(st.integers(1, 40), unique=True), st.data())
def test_sorted_diff_replays(old: list[int], data: st.DataObject) -> None:
    """Removals then insertions, applied as a client does (§4.3.3, §4.3.4),
    turn the old order into the new one whenever kept elements keep their
    relative order."""
    kept = [u for u in old if data.draw(st.booleans())]
    new = list(kept)
    for u in data.draw(st.lists(st.integers(41, 80), unique=True)):
        new.insert(data.draw(st.integers(0, len(new))), u)
    removed, added = sorted_diff(old, new)
    result = list(old)
    for pos, u in removed:
        assert result[pos - 1] == u
        del result[pos - 1]
    for pos, u in added:
        result.insert(pos - 1, u)
    assert result == new


def test_render_groups_runs() -> None:
    ctx = UpdateContext("t", True, Search(SearchAll()))
    line = render(ctx, [(2, 7), (2, 8), (5, 1)], [(1, 3), (2, 4), (9, 5)], lambda u: u)
    assert line == b'* ESEARCH (TAG "t") UID REMOVEFROM (2 7:8 5 1) ADDTO (1 3:4 9 5)\r\n'
    seq = UpdateContext("t", False, Search(SearchAll()))
    assert render(seq, [(0, 7)], [], lambda u: None) is None  # no number: nothing to say
