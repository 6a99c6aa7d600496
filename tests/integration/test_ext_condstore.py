"""CONDSTORE and QRESYNC (RFC 7162) and ENABLE (RFC 5161), over raw sockets
and with imapclient: MODSEQ in FETCH/SEARCH/STATUS/SELECT, CHANGEDSINCE,
UNCHANGEDSINCE with [MODIFIED], SELECT (QRESYNC ...) with VANISHED (EARLIER),
VANISHED instead of EXPUNGE, and the [CLOSED] response code.
"""

from __future__ import annotations

import asyncio
import re

from imapclient import IMAPClient
from support.server import ServerThread
from support.wire import ALICE, RawImap

from mailserver.protocol.imap.seqset import parse_sequence_set
from mailserver.protocol.mime import analyze

MSG = b"Subject: c\r\n\r\nbody\r\n"


def append(c: RawImap, n: int = 1) -> None:
    for _ in range(n):
        line = c.cmd("ap", f"APPEND INBOX {{{len(MSG)}+}}\r\n".encode() + MSG)[-1]
        assert line.startswith(b"ap OK")


def uid_set(text: bytes) -> set[int]:
    return set(parse_sequence_set(text.decode()).resolve(0))


def code_value(lines: list[bytes], code: bytes) -> int:
    for line in lines:
        m = re.search(rb"\[" + code + rb" (\d+)\]", line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no {code!r} in {lines!r}")


def test_capabilities_and_enable(raw_imap: RawImap) -> None:
    caps = raw_imap.cmd("c", "CAPABILITY")[0].split()
    assert b"CONDSTORE" in caps and b"QRESYNC" in caps and b"ENABLE" in caps
    # QRESYNC implies CONDSTORE (§3.2.3); ENABLED lists what this command turned on.
    lines = raw_imap.cmd("e", "ENABLE QRESYNC CONDSTORE X-UNKNOWN")
    assert lines[0] == b"* ENABLED QRESYNC\r\n"
    assert raw_imap.cmd("f", "ENABLE CONDSTORE")[0] == b"* ENABLED\r\n"


def test_modseq_fetch_changedsince_and_unsolicited(server: ServerThread, raw_imap: RawImap) -> None:
    append(raw_imap, 3)
    lines = raw_imap.cmd("s", "SELECT INBOX (CONDSTORE)")
    high = code_value(lines, b"HIGHESTMODSEQ")
    assert lines[-1].startswith(b"s OK [READ-WRITE]")
    got = raw_imap.cmd("f", "FETCH 1:* (UID MODSEQ)")
    assert len(got) == 4 and all(b"MODSEQ (" in x for x in got[:3])
    # STORE with CONDSTORE on: UID and MODSEQ in the FETCH (§3.1).
    line = raw_imap.cmd("t", "STORE 2 +FLAGS (\\Flagged)")[0]
    m = re.fullmatch(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged \\Recent\) MODSEQ \((\d+)\)\)\r\n",
                     line)
    assert m and int(m.group(1)) > high
    # CHANGEDSINCE gives only that message, MODSEQ implied (§3.1.4.1).
    got = raw_imap.cmd("g", f"FETCH 1:* (FLAGS) (CHANGEDSINCE {high})")
    assert got[0] == b"* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (%s))\r\n" % m.group(1)
    assert got[1].startswith(b"g OK")
    # .SILENT still reports the new MODSEQ (§3.1.3).
    got = raw_imap.cmd("h", "STORE 3 +FLAGS.SILENT (\\Seen)")
    assert re.fullmatch(rb"\* 3 FETCH \(UID 3 MODSEQ \(\d+\)\)\r\n", got[0])
    # Another session's change arrives with UID and MODSEQ.
    other = RawImap(server.port("imap"))
    other.login()
    other.cmd("s", "SELECT INBOX")
    other.cmd("x", "STORE 1 +FLAGS.SILENT ($Done)")
    other.close()
    got = raw_imap.cmd("n", "NOOP")
    assert got[0].startswith(b"* FLAGS (") and b"$Done" in got[0]  # RFC 3501 §7.2.6
    assert re.fullmatch(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Recent \$Done\) MODSEQ \(\d+\)\)\r\n",
                        got[2])


def test_store_unchangedsince_modified(raw_imap: RawImap) -> None:
    append(raw_imap, 3)
    raw_imap.cmd("s", "SELECT INBOX")
    mods = {}
    for line in raw_imap.cmd("f", "FETCH 1:3 MODSEQ")[:3]:
        m = re.match(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)\)", line)
        assert m
        mods[int(m.group(1))] = int(m.group(2))
    raw_imap.cmd("t", "STORE 2 +FLAGS.SILENT (\\Answered)")
    # Message 2 changed after mods[3]: it fails, 1 and 3 are stored.
    lines = raw_imap.cmd("u", f"STORE 1:3 (UNCHANGEDSINCE {mods[3]}) +FLAGS (\\Flagged)")
    assert lines[-1].startswith(b"u OK [MODIFIED 2]")
    assert [x.split()[1] for x in lines[:-1]] == [b"1", b"3"]
    lines = raw_imap.cmd("v", "UID STORE 1:3 (UNCHANGEDSINCE 1) -FLAGS.SILENT (\\Flagged)")
    assert lines[-1].startswith(b"v OK [MODIFIED 1:3]")
    # UNCHANGEDSINCE 0 always fails (§3.1.3).
    assert raw_imap.cmd("w", "STORE 1 (UNCHANGEDSINCE 0) FLAGS ()")[-1].startswith(b"w OK [MODIFIED 1]")


def test_search_modseq_and_status(raw_imap: RawImap) -> None:
    append(raw_imap, 2)
    raw_imap.cmd("s", "SELECT INBOX")
    raw_imap.cmd("t", "STORE 2 +FLAGS.SILENT (\\Seen)")
    modseq = int(re.search(rb"MODSEQ \((\d+)\)", raw_imap.cmd("f", "FETCH 2 MODSEQ")[0]).group(1))
    assert raw_imap.cmd("a", f"SEARCH MODSEQ {modseq}")[0] == b"* SEARCH 2 (MODSEQ %d)\r\n" % modseq
    assert raw_imap.cmd("b", f"SEARCH MODSEQ {modseq + 1}")[0] == b"* SEARCH\r\n"
    status = raw_imap.cmd("c", "STATUS Drafts (HIGHESTMODSEQ)")[0]
    assert re.fullmatch(rb'\* STATUS "Drafts" \(HIGHESTMODSEQ \d+\)\r\n', status)


def test_qresync_needs_enable_and_closed(raw_imap: RawImap) -> None:
    assert raw_imap.cmd("a", "SELECT INBOX (QRESYNC (1 1))")[-1].startswith(b"a BAD")
    raw_imap.cmd("e", "ENABLE QRESYNC")
    assert raw_imap.cmd("b", "SELECT INBOX (QRESYNC (1 1 1:* (1 1)))")[-1].startswith(b"b OK")
    assert raw_imap.cmd("b2", "SELECT INBOX (QRESYNC (1 0))")[-1].startswith(b"b2 BAD")
    lines = raw_imap.cmd("c", "EXAMINE Drafts")
    assert lines[0] == b"* OK [CLOSED] Previous mailbox closed\r\n"
    assert raw_imap.cmd("d", "UID FETCH 1:* FLAGS (VANISHED)")[-1].startswith(b"d BAD")


def test_vanished_replaces_expunge(server: ServerThread, raw_imap: RawImap) -> None:
    append(raw_imap, 5)
    raw_imap.cmd("e", "ENABLE QRESYNC")
    raw_imap.cmd("s", "SELECT INBOX")
    raw_imap.cmd("d", "STORE 2:4 +FLAGS.SILENT (\\Deleted)")
    lines = raw_imap.cmd("x", "EXPUNGE")
    assert lines[0] == b"* VANISHED 2:4\r\n"
    assert re.fullmatch(rb"x OK \[HIGHESTMODSEQ \d+\] EXPUNGE completed\r\n", lines[-1])
    assert raw_imap.cmd("f", "FETCH 1:* UID")[:2] == [b"* 1 FETCH (UID 1)\r\n",
                                                  b"* 2 FETCH (UID 5)\r\n"]


def test_uid_fetch_vanished_earlier(raw_imap: RawImap) -> None:
    append(raw_imap, 6)
    raw_imap.cmd("e", "ENABLE QRESYNC")
    high = code_value(raw_imap.cmd("s", "SELECT INBOX"), b"HIGHESTMODSEQ")
    raw_imap.cmd("d", "STORE 2,5 +FLAGS.SILENT (\\Deleted)")
    raw_imap.cmd("x", "EXPUNGE")
    raw_imap.cmd("t", "UID STORE 6 +FLAGS.SILENT (\\Seen)")
    lines = raw_imap.cmd("f", f"UID FETCH 1:* FLAGS (CHANGEDSINCE {high} VANISHED)")
    assert lines[0] == b"* VANISHED (EARLIER) 2,5\r\n"
    assert len(lines) == 3 and lines[1].startswith(b"* 4 FETCH (UID 6 FLAGS (\\Seen \\Recent)")
    # Only UIDs of the given set are reported.
    lines = raw_imap.cmd("g", f"UID FETCH 3:4 FLAGS (CHANGEDSINCE {high} VANISHED)")
    assert lines == [b"g OK UID FETCH completed\r\n"]


def test_offline_client_gets_exact_vanished_set(server: ServerThread) -> None:
    """RFC 7162 §3.2.5: a client offline while 1,000 messages were expunged
    resynchronises with one SELECT and gets exactly those UIDs."""
    store = server.store
    account = ALICE[0]

    facts = analyze(MSG).to_bytes()

    async def fill() -> None:
        await asyncio.gather(*(
            store.append(account, "INBOX", MSG, facts, internal_date=1_700_000_000)
            for _ in range(1200)))

    server.run(fill(), timeout=120)
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*ALICE)
        assert c.enable("QRESYNC") == [b"QRESYNC"]
        info = c.select_folder("INBOX")
        high = info[b"HIGHESTMODSEQ"]
        validity = info[b"UIDVALIDITY"]
        assert info[b"EXISTS"] == 1200

    # Offline: another client expunges 1,000 messages and flags two.
    mb = server.call(store.get_mailbox, account, "INBOX")
    gone = {u for u in range(1, 1201) if u % 6 != 0}
    assert len(gone) == 1000
    server.run(store.store_flags(mb.id, sorted(gone), "add", frozenset({"\\Deleted"})))
    server.run(store.expunge(mb.id))
    server.run(store.store_flags(mb.id, [6, 1200], "add", frozenset({"\\Flagged"})))

    c = RawImap(server.port("imap"))
    c.login()
    c.cmd("e", "ENABLE QRESYNC")
    lines = c.cmd("s", f"SELECT INBOX (QRESYNC ({validity} {high}))")
    assert b"* 200 EXISTS\r\n" in lines
    vanished = [x for x in lines if x.startswith(b"* VANISHED")]
    assert len(vanished) == 1 and vanished[0].startswith(b"* VANISHED (EARLIER) ")
    assert uid_set(vanished[0][len(b"* VANISHED (EARLIER) "):].strip()) == gone
    fetched = [x for x in lines if b" FETCH " in x]
    assert len(fetched) == 2
    # (imapclient's SELECT claimed them all as \\Recent: none is recent here.)
    assert fetched[0].startswith(b"* 1 FETCH (UID 6 FLAGS (\\Flagged) MODSEQ (")
    assert fetched[1].startswith(b"* 200 FETCH (UID 1200 FLAGS (\\Flagged) MODSEQ (")
    six = int(re.search(rb"MODSEQ \((\d+)\)", fetched[0]).group(1))
    assert six > high
    # known-uids narrows both: only UIDs 1:12 are of interest.
    lines = c.cmd("t", f"SELECT INBOX (QRESYNC ({validity} {high} 1:12))")
    assert [x for x in lines if x.startswith(b"* VANISHED")] == [
        b"* VANISHED (EARLIER) 1:5,7:11\r\n"]
    assert [x for x in lines if b" FETCH " in x] == [
        b"* 1 FETCH (UID 6 FLAGS (\\Flagged) MODSEQ (%d))\r\n" % six]
    # A wrong UIDVALIDITY gets a plain SELECT.
    lines = c.cmd("u", f"SELECT INBOX (QRESYNC ({validity + 1} {high}))")
    assert not [x for x in lines if x.startswith(b"* VANISHED") or b" FETCH " in x]
    c.close()


def test_imapclient_condstore(server: ServerThread) -> None:
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*ALICE)
        c.append("INBOX", MSG)
        c.append("INBOX", MSG)
        assert c.enable("CONDSTORE") == [b"CONDSTORE"]
        high = c.select_folder("INBOX")[b"HIGHESTMODSEQ"]
        c.add_flags([2], [b"$Work"])
        got = c.fetch([1, 2], ["FLAGS"], modifiers=[f"CHANGEDSINCE {high}"])
        assert list(got) == [2] and got[2][b"MODSEQ"][0] > high
        hits = c.search(["MODSEQ", str(high + 1)])
        assert hits == [2] and hits.modseq == got[2][b"MODSEQ"][0]
        status = c.folder_status("INBOX", ["HIGHESTMODSEQ"])
        assert status[b"HIGHESTMODSEQ"] == got[2][b"MODSEQ"][0]
