"""SEARCH on flags and FETCH FLAGS answered from the session's view
(``mailserver/imap/flag_answers.py``, issue #13 §3).

The view is what the session last told its client; these answers must
nevertheless show the mailbox as it is now (RFC 3501 §6.4.4, §6.4.5): another
session's STORE, EXPUNGE and MOVE committed before the command count, new
messages do not (they have no sequence number yet), expunged ones keep their
numbers but yield nothing (§7.4.1), and ``\\Recent`` stays session state
(§2.3.2).  The last test drives random changes by other sessions and checks
every answer against the records path, which a key or item the view does not
hold (``LARGER 0``, ``RFC822.SIZE``) still takes.
"""

from __future__ import annotations

import imaplib
import random
import re
from collections.abc import Iterator

import pytest
from support.server import ServerThread
from support.wire import RawImap

from mailserver.imap import flag_answers
from mailserver.imap.commands import searching

MSG = b"Subject: f\r\n\r\nbody\r\n"


def append(c: RawImap, mailbox: str = "INBOX", flags: str = "") -> None:
    spec = f"({flags}) " if flags else ""
    line = c.cmd("ap", f"APPEND {mailbox} {spec}{{{len(MSG)}+}}\r\n".encode() + MSG)[-1]
    assert line.startswith(b"ap OK"), line


@pytest.fixture
def sessions(server: ServerThread) -> Iterator[tuple[RawImap, RawImap, RawImap]]:
    """``a`` and ``b`` with INBOX selected (4 messages, none \\Recent for
    either), ``c`` logged in without a selection (its APPENDs become
    \\Recent for the next session to see them)."""
    a, b, c = (RawImap(server.port("imap")) for _ in range(3))
    for s in (a, b, c):
        s.login()
    c.ok("cr", "CREATE Other")
    for _ in range(4):
        append(c)
    a.ok("s0", "SELECT INBOX")  # claims the four as \Recent ...
    a.ok("s", "SELECT INBOX")  # ... and a new view has none
    b.ok("s", "SELECT INBOX")
    try:
        yield a, b, c
    finally:
        for s in (a, b, c):
            s.close()


def fetch_flags(lines: list[bytes]) -> dict[int, str]:
    """Sequence number -> flag list of the solicited ``FETCH (FLAGS ...)`` lines."""
    out = {}
    for line in lines:
        m = re.match(rb"\* (\d+) FETCH \(FLAGS \(([^)]*)\)", line)
        if m:
            out[int(m.group(1))] = m.group(2).decode()
    return out


def search_result(lines: list[bytes]) -> list[bytes]:
    return [x for x in lines if x.startswith((b"* SEARCH", b"* ESEARCH"))]


def test_other_sessions_store_shows_in_search_and_fetch(sessions) -> None:
    a, b, _ = sessions
    b.ok("x", "STORE 2,4 +FLAGS.SILENT (\\Seen)")
    # The SEARCH sees b's STORE; the sync after it then tells a (with UID).
    assert a.cmd("s", "SEARCH UNSEEN") == [
        b"* SEARCH 1 3\r\n",
        b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n",
        b"* 4 FETCH (UID 4 FLAGS (\\Seen))\r\n",
        b"s OK SEARCH completed\r\n"]
    b.ok("y", "STORE 1 +FLAGS.SILENT (\\Flagged)")
    b.ok("y2", "STORE 2 -FLAGS.SILENT (\\Seen)")
    # FETCH 1:* FLAGS tells the flags now, so nothing is echoed after it.
    assert a.cmd("f", "FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (FLAGS (\\Flagged))\r\n",
        b"* 2 FETCH (FLAGS ())\r\n",
        b"* 3 FETCH (FLAGS ())\r\n",
        b"* 4 FETCH (FLAGS (\\Seen))\r\n",
        b"f OK FETCH completed\r\n"]
    assert a.cmd("n", "NOOP") == [b"n OK NOOP completed\r\n"]


def test_fetch_of_a_subset_notes_only_what_it_told(sessions) -> None:
    a, b, _ = sessions
    b.ok("x", "STORE 1:2 +FLAGS.SILENT (\\Answered)")
    # Message 1 is answered by the FETCH; message 2's change comes in the sync.
    assert a.cmd("f", "UID FETCH 1 (FLAGS)") == [
        b"* 1 FETCH (UID 1 FLAGS (\\Answered))\r\n",
        b"* 2 FETCH (UID 2 FLAGS (\\Answered))\r\n",
        b"f OK UID FETCH completed\r\n"]
    assert a.cmd("n", "NOOP") == [b"n OK NOOP completed\r\n"]


def test_fetch_items_in_the_clients_order(sessions) -> None:
    a, _, _ = sessions
    a.ok("x", "STORE 3 +FLAGS.SILENT (\\Draft)")
    assert a.cmd("f", "FETCH 2:3 (FLAGS UID)") == [
        b"* 2 FETCH (FLAGS () UID 2)\r\n",
        b"* 3 FETCH (FLAGS (\\Draft) UID 3)\r\n",
        b"f OK FETCH completed\r\n"]
    assert a.cmd("u", "UID FETCH 3:* (UID)") == [
        b"* 3 FETCH (UID 3)\r\n", b"* 4 FETCH (UID 4)\r\n", b"u OK UID FETCH completed\r\n"]


@pytest.mark.parametrize("how", ["EXPUNGE", "MOVE"])
def test_message_gone_by_other_session(sessions, how: str) -> None:
    a, b, _ = sessions
    a.ok("x", "STORE 2 +FLAGS.SILENT (\\Seen)")
    if how == "EXPUNGE":
        b.ok("d", "STORE 3 +FLAGS.SILENT (\\Deleted)")
        b.ok("e", "EXPUNGE")
    else:
        b.ok("m", "MOVE 3 Other")
    # Message 3 keeps its number for a (no EXPUNGE during FETCH/SEARCH,
    # RFC 3501 §7.4.1) but has no data and matches nothing.
    assert a.cmd("s", "SEARCH UNSEEN") == [b"* SEARCH 1 4\r\n", b"s OK SEARCH completed\r\n"]
    assert a.cmd("s2", "SEARCH NOT SEEN NOT DELETED") == [
        b"* SEARCH 1 4\r\n", b"s2 OK SEARCH completed\r\n"]
    assert a.cmd("f", "FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (FLAGS ())\r\n", b"* 2 FETCH (FLAGS (\\Seen))\r\n",
        b"* 4 FETCH (FLAGS ())\r\n", b"f OK FETCH completed\r\n"]
    assert a.cmd("n", "NOOP") == [b"* 3 EXPUNGE\r\n", b"n OK NOOP completed\r\n"]
    assert a.cmd("s3", "SEARCH UNSEEN") == [b"* SEARCH 1 3\r\n", b"s3 OK SEARCH completed\r\n"]


def test_new_messages_wait_for_their_exists(sessions) -> None:
    a, _, c = sessions
    append(c)
    # Not the view's yet: no number in the answers; the EXISTS follows them.
    lines = a.cmd("s", "SEARCH UNSEEN")
    assert lines[0] == b"* SEARCH 1 2 3 4\r\n"
    assert b"* 5 EXISTS\r\n" in lines
    assert a.cmd("s2", "SEARCH UNSEEN") == [
        b"* SEARCH 1 2 3 4 5\r\n", b"s2 OK SEARCH completed\r\n"]


def test_keywords_case_insensitive_and_announced(sessions) -> None:
    a, b, _ = sessions
    b.ok("x", "STORE 2 +FLAGS.SILENT ($Label1)")
    assert a.cmd("s", "SEARCH KEYWORD $label1")[0] == b"* SEARCH 2\r\n"
    assert a.cmd("s2", "SEARCH UNKEYWORD $LABEL1 UNSEEN")[0] == b"* SEARCH 1 3 4\r\n"
    b.ok("y", "STORE 3 +FLAGS.SILENT ($Other)")
    lines = a.cmd("f", "FETCH 3 (FLAGS)")
    # RFC 3501 §7.2.6: the new keyword is announced before a FETCH shows it.
    at = lines.index(b"* 3 FETCH (FLAGS ($Other))\r\n")
    assert any(x.startswith(b"* FLAGS (") and b"$Other" in x for x in lines[:at])


def test_recent_is_session_state(sessions) -> None:
    a, b, c = sessions
    append(c)
    append(c)
    a.ok("n", "NOOP")  # a sees 5 and 6 first: they are \Recent for a only
    b.ok("n", "NOOP")
    b.ok("x", "STORE 5 +FLAGS.SILENT (\\Seen)")
    assert a.cmd("s", "SEARCH RECENT")[0] == b"* SEARCH 5 6\r\n"
    assert a.cmd("s2", "SEARCH NEW")[0] == b"* SEARCH 6\r\n"
    assert a.cmd("s3", "SEARCH OLD UNSEEN")[0] == b"* SEARCH 1 2 3 4\r\n"
    assert a.cmd("s4", "SEARCH OR RECENT FLAGGED")[0] == b"* SEARCH 5 6\r\n"
    assert b.cmd("s", "SEARCH RECENT")[0] == b"* SEARCH\r\n"
    assert fetch_flags(a.cmd("f", "FETCH 4:* (FLAGS)")) == {
        4: "", 5: "\\Seen \\Recent", 6: "\\Recent"}
    assert fetch_flags(b.cmd("f", "FETCH 4:* (FLAGS)")) == {4: "", 5: "\\Seen", 6: ""}
    # \Recent cannot be stored (RFC 3501 §2.3.2); another flag's STORE keeps it.
    assert a.cmd("r", "STORE 6 -FLAGS.SILENT (\\Recent)")[-1].startswith(b"r BAD")
    a.ok("r2", "STORE 6 +FLAGS.SILENT (\\Seen)")
    assert a.cmd("s5", "SEARCH RECENT")[0] == b"* SEARCH 5 6\r\n"


def test_esearch_save_and_uid_forms(sessions) -> None:
    a, b, _ = sessions
    b.ok("x", "STORE 1,3 +FLAGS.SILENT (\\Flagged)")
    assert a.cmd("e", "SEARCH RETURN (MIN MAX COUNT ALL) FLAGGED")[0] == (
        b'* ESEARCH (TAG "e") MIN 1 MAX 3 ALL 1,3 COUNT 2\r\n')
    assert a.cmd("u", "UID SEARCH RETURN (ALL) UNFLAGGED")[0] == (
        b'* ESEARCH (TAG "u") UID ALL 2,4\r\n')
    assert a.cmd("v", "SEARCH RETURN (SAVE) FLAGGED") == [b"v OK SEARCH completed\r\n"]
    assert fetch_flags(a.cmd("f", "FETCH $ (FLAGS)")) == {1: "\\Flagged", 3: "\\Flagged"}
    assert a.cmd("c", "SEARCH RETURN (COUNT) DELETED")[0] == b'* ESEARCH (TAG "c") COUNT 0\r\n'


def test_long_answers_in_slices(sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny slices, so every answer takes the sliced paths (the output must
    be the same as in one piece)."""
    a, b, _ = sessions
    monkeypatch.setattr(flag_answers, "SEARCH_SLICE", 3)
    monkeypatch.setattr(flag_answers, "FETCH_SLICE", 3)
    monkeypatch.setattr(searching, "_NUMBERS_SLICE", 3)
    monkeypatch.setattr(searching, "_THREAD_AT", 3)
    b.ok("x", "STORE 4 +FLAGS.SILENT (\\Seen)")
    assert a.cmd("s", "SEARCH UNSEEN")[0] == b"* SEARCH 1 2 3\r\n"
    assert a.cmd("s2", "SEARCH ALL")[0] == b"* SEARCH 1 2 3 4\r\n"
    assert a.cmd("e", "SEARCH RETURN (ALL) ALL")[0] == b'* ESEARCH (TAG "e") ALL 1:4\r\n'
    assert a.cmd("f", "FETCH 1:* (FLAGS)") == [
        b"* 1 FETCH (FLAGS ())\r\n", b"* 2 FETCH (FLAGS ())\r\n", b"* 3 FETCH (FLAGS ())\r\n",
        b"* 4 FETCH (FLAGS (\\Seen))\r\n", b"f OK FETCH completed\r\n"]


#: Flag-only programs (answered from the view) and what they test.
KEYS = ["ALL", "UNSEEN", "SEEN", "FLAGGED NOT DELETED", "OR ANSWERED DRAFT", "KEYWORD $a",
        "UNKEYWORD $B", "NEW", "OLD", "RECENT", "NOT RECENT", "(OR SEEN FLAGGED) UNDELETED",
        "NOT (KEYWORD $A KEYWORD $b)"]
FLAGS = ["\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "\\Draft", "$a", "$B"]


def test_view_answers_match_the_records(sessions) -> None:
    """Random changes by ``b`` and ``c`` (STORE, EXPUNGE, MOVE, APPEND) and
    by ``a`` itself; after each, a flag-only SEARCH or FETCH FLAGS of ``a``
    (its view stale by that change) equals what the records path answers
    right after (``LARGER 0`` and ``RFC822.SIZE`` send the same command
    there)."""
    a, b, c = sessions
    rnd = random.Random(13)
    for _ in range(6):
        append(c)
    checked = 0
    for step in range(150):
        op = rnd.choice(["store", "store", "store", "store", "own", "expunge", "move", "append"])
        count = len(fetch_flags(b.cmd("c", "FETCH 1:* (FLAGS)")))
        who = b if op != "own" else a
        if op in ("store", "own"):
            if who is a:
                count = len(fetch_flags(a.cmd("ac", "FETCH 1:* (FLAGS)")))
            if count:
                lo = rnd.randint(1, count)
                hi = rnd.randint(lo, min(count, lo + 4))
                flags = " ".join(rnd.sample(FLAGS, rnd.randint(1, 3)))
                who.ok("st", f"STORE {lo}:{hi} {rnd.choice('+-')}FLAGS.SILENT ({flags})")
        elif op == "expunge":
            b.ok("e", "EXPUNGE")
        elif op == "move" and count:
            b.ok("m", f"MOVE {rnd.randint(1, count)} Other")
        elif op == "append":
            append(c, flags=" ".join(rnd.sample(FLAGS, rnd.randint(0, 2))))
        if rnd.random() < 0.25:
            fast = a.cmd("ff", "FETCH 1:* (FLAGS)")
            if not any(x.endswith(b" EXISTS\r\n") for x in fast):
                slow = a.cmd("fs", "FETCH 1:* (FLAGS RFC822.SIZE)")
                assert fetch_flags(fast) == fetch_flags(slow), (step, op)
                checked += 1
            continue
        key, prefix = rnd.choice(KEYS), rnd.choice(["", "UID "])
        fast = a.cmd("f", f"{prefix}SEARCH {key}")
        if any(x.endswith(b" EXISTS\r\n") for x in fast):
            continue  # the sync after it grew the view: the two would differ
        slow = a.cmd("s", f"{prefix}SEARCH LARGER 0 {key}")
        assert search_result(fast) == search_result(slow), (step, op, prefix, key)
        checked += 1
    assert checked > 100


def test_select_of_a_big_mailbox_reads_it_in_a_thread(
        imaps: imaplib.IMAP4_SSL, monkeypatch: pytest.MonkeyPatch) -> None:
    """SELECT reads a mailbox of ``SELECT_IN_THREAD`` messages or more off the
    event loop (here every mailbox, the threshold at 0): the same answers."""
    from mailserver.imap.commands import select as select_command

    for i in range(3):
        flags = "(\\Seen)" if i == 1 else None
        assert imaps.append("INBOX", flags, None,
                            b"Subject: %d\r\n\r\nbody\r\n" % i)[0] == "OK"
    monkeypatch.setattr(select_command, "SELECT_IN_THREAD", 0)
    typ, data = imaps.select("INBOX")
    assert typ == "OK" and data == [b"3"]
    typ, data = imaps.fetch("1:*", "(FLAGS)")
    assert typ == "OK" and len(data) == 3 and b"\\Seen" in data[1]
    typ, data = imaps.search(None, "UNSEEN")
    assert data == [b"1 3"]
