"""\\Recent (RFC 3501 §2.3.2) and ESEARCH (RFC 4731), over raw sockets and
with imapclient: RECENT counts in SELECT/STATUS, \\Recent in FLAGS for exactly
one session, SEARCH RECENT/NEW/OLD, SEARCH RETURN (MIN MAX ALL COUNT) and
UID SEARCH RETURN.
"""

from __future__ import annotations

from imapclient import IMAPClient
from support.server import ServerThread
from support.wire import ALICE, RawImap

MSG = b"Subject: s\r\n\r\nbody\r\n"


def append(c: RawImap, n: int = 1) -> None:
    for _ in range(n):
        line = c.cmd("ap", f"APPEND INBOX {{{len(MSG)}+}}\r\n".encode() + MSG)[-1]
        assert line.startswith(b"ap OK")


def test_recent_belongs_to_first_read_write_select(server: ServerThread, raw_imap: RawImap) -> None:
    append(raw_imap, 3)
    assert b"RECENT 3" in raw_imap.cmd("st", "STATUS INBOX (RECENT)")[0]
    # EXAMINE shows \Recent but does not claim it (§6.3.2).
    assert b"* 3 RECENT\r\n" in raw_imap.cmd("x", "EXAMINE INBOX")
    assert b"* 3 RECENT\r\n" in raw_imap.cmd("x2", "EXAMINE INBOX")
    # The first SELECT claims all three; a second session sees none.
    assert b"* 3 RECENT\r\n" in raw_imap.cmd("s", "SELECT INBOX")
    other = RawImap(server.port("imap"))
    other.login()
    assert b"* 0 RECENT\r\n" in other.cmd("s", "SELECT INBOX")
    assert b"RECENT 0" in raw_imap.cmd("st2", "STATUS INBOX (RECENT)")[0]
    assert raw_imap.cmd("f", "FETCH 1 FLAGS")[0] == b"* 1 FETCH (FLAGS (\\Recent))\r\n"
    assert other.cmd("f", "FETCH 1 FLAGS")[0] == b"* 1 FETCH (FLAGS ())\r\n"
    # A delivery while both have INBOX selected is recent for the first to hear of it.
    append(other)  # its APPEND's own reply told it "* 4 EXISTS" already
    assert raw_imap.cmd("n", "NOOP")[0] == b"* 4 EXISTS\r\n"
    assert other.cmd("f2", "FETCH 4 FLAGS")[0] == b"* 4 FETCH (FLAGS (\\Recent))\r\n"
    assert raw_imap.cmd("f2", "FETCH 4 FLAGS")[0] == b"* 4 FETCH (FLAGS ())\r\n"
    # RECENT, NEW (recent and unseen) and OLD.
    raw_imap.cmd("t", "STORE 2 +FLAGS.SILENT (\\Seen)")
    assert raw_imap.cmd("a", "SEARCH RECENT")[0] == b"* SEARCH 1 2 3\r\n"
    assert raw_imap.cmd("b", "SEARCH NEW")[0] == b"* SEARCH 1 3\r\n"
    assert raw_imap.cmd("c", "SEARCH OLD")[0] == b"* SEARCH 4\r\n"
    assert other.cmd("d", "UID SEARCH RECENT")[0] == b"* SEARCH 4\r\n"
    # \Recent survives the session only as "not recent" for everybody after.
    other.close()
    raw_imap.cmd("s2", "SELECT INBOX")
    assert raw_imap.cmd("e", "SEARCH RECENT")[0] == b"* SEARCH\r\n"


def test_recent_with_imapclient(server: ServerThread) -> None:
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*ALICE)
        c.append("INBOX", MSG)
        c.append("INBOX", MSG, flags=[b"\\Seen"])
        assert c.folder_status("INBOX", [b"RECENT"])[b"RECENT"] == 2
        assert c.select_folder("INBOX")[b"RECENT"] == 2
        assert c.search(["RECENT"]) == [1, 2]
        assert c.search(["NEW"]) == [1]
        assert c.get_flags([1, 2]) == {1: (b"\\Recent",), 2: (b"\\Seen", b"\\Recent")}
        assert c.select_folder("INBOX")[b"RECENT"] == 0
        assert c.search(["OLD"]) == [1, 2]


def test_esearch_return_options(raw_imap: RawImap) -> None:
    append(raw_imap, 6)
    raw_imap.cmd("s", "SELECT INBOX")
    raw_imap.cmd("t", "STORE 2,4:5 +FLAGS.SILENT (\\Flagged)")
    caps = raw_imap.cmd("c", "CAPABILITY")[0].split()
    assert b"ESEARCH" in caps
    assert raw_imap.cmd("a", "SEARCH RETURN (MIN MAX COUNT) FLAGGED") == [
        b'* ESEARCH (TAG "a") MIN 2 MAX 5 COUNT 3\r\n', b"a OK SEARCH completed\r\n"]
    assert raw_imap.cmd("b", "SEARCH RETURN () FLAGGED")[0] == b'* ESEARCH (TAG "b") ALL 2,4:5\r\n'
    assert raw_imap.cmd("c", "UID SEARCH RETURN (ALL COUNT) UNFLAGGED")[0] == (
        b'* ESEARCH (TAG "c") UID ALL 1,3,6 COUNT 3\r\n')
    # Nothing matched: only COUNT is returned (RFC 4731 §3.1).
    assert raw_imap.cmd("d", "SEARCH RETURN (MIN MAX ALL COUNT) DELETED")[0] == (
        b'* ESEARCH (TAG "d") COUNT 0\r\n')
    assert raw_imap.cmd("e", "SEARCH RETURN (MIN) SUBJECT nomatch")[0] == b'* ESEARCH (TAG "e")\r\n'
    # MODSEQ comes along when the program used it (RFC 7162 §3.1.5).
    line = raw_imap.cmd("f", "SEARCH RETURN (COUNT) MODSEQ 1")[0]
    assert line.startswith(b'* ESEARCH (TAG "f") COUNT 6 MODSEQ ')
    assert raw_imap.cmd("g", "SEARCH RETURN (BOGUS) ALL")[-1].startswith(b"g BAD")


def test_esearch_with_imapclient(server: ServerThread) -> None:
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*ALICE)
        for _ in range(4):
            c.append("INBOX", MSG)
        c.select_folder("INBOX")
        c.add_flags([2, 3], [b"\\Answered"])
        got = c._raw_command_untagged(  # imapclient has no ESEARCH helper
            b"SEARCH", [b"RETURN", b"(MIN", b"COUNT)", b"ANSWERED"], uid=True,
            response_name="ESEARCH")
        assert len(got) == 1 and got[0].startswith(b'(TAG "')
        assert got[0].endswith(b") UID MIN 2 COUNT 2")


def test_within_older_younger(raw_imap: RawImap) -> None:
    """RFC 5032: OLDER/YOUNGER n compare INTERNALDATE with now - n seconds."""
    assert b"WITHIN" in raw_imap.cmd("c", "CAPABILITY")[0].split()
    line = raw_imap.cmd("a", f'APPEND INBOX "01-Jan-2001 00:00:00 +0000" {{{len(MSG)}+}}\r\n'.encode()
                   + MSG)[-1]
    assert line.startswith(b"a OK")
    append(raw_imap)  # INTERNALDATE now
    raw_imap.cmd("s", "SELECT INBOX")
    assert raw_imap.cmd("b", "SEARCH OLDER 86400")[0] == b"* SEARCH 1\r\n"
    assert raw_imap.cmd("d", "SEARCH YOUNGER 86400")[0] == b"* SEARCH 2\r\n"
    assert raw_imap.cmd("e", "UID SEARCH NOT YOUNGER 86400")[0] == b"* SEARCH 1\r\n"
    assert raw_imap.cmd("f", "SEARCH OLDER x")[-1].startswith(b"f BAD")
