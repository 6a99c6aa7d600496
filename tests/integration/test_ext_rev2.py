"""IMAP4rev2 (RFC 9051) next to IMAP4rev1, over raw sockets (imapclient has no
rev2 mode): ``ENABLE IMAP4rev2`` and each difference of RFC 9051 Appendix E
that a session can observe.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.server import ServerThread
from support.wire import RawImap

MSG = b"Subject: hello\r\nFrom: a@example.test\r\n\r\nbody text\r\n"


def append(c: RawImap, mailbox: str = "INBOX", msg: bytes = MSG, flags: str = "") -> None:
    flag_part = f" ({flags})" if flags else ""
    lines = c.cmd("ap", f'APPEND "{mailbox}"{flag_part} {{{len(msg)}+}}\r\n'.encode() + msg)
    assert lines[-1].startswith(b"ap OK"), lines


def rev2_client(server: ServerThread) -> RawImap:
    c = RawImap(server.port("imap"))
    c.login()
    lines = c.cmd("en", "ENABLE IMAP4rev2")
    assert lines == [b"* ENABLED IMAP4rev2\r\n", b"en OK ENABLE completed\r\n"]
    return c


@pytest.fixture
def r2(server: ServerThread) -> Iterator[RawImap]:
    c = rev2_client(server)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def r1(server: ServerThread) -> Iterator[RawImap]:
    c = RawImap(server.port("imap"))
    c.login()
    try:
        yield c
    finally:
        c.close()


def test_both_revisions_advertised(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    try:
        assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
        c.login()
        caps = c.cmd("a", "CAPABILITY")[0].split()
        assert b"IMAP4rev1" in caps and b"IMAP4rev2" in caps
        # ENABLE before login is not allowed (RFC 5161 §3.1: authenticated state).
    finally:
        c.close()
    c = RawImap(server.port("imap"))
    try:
        assert c.cmd("b", "ENABLE IMAP4rev2")[-1].startswith(b"b BAD")
    finally:
        c.close()


def test_enable_once_and_case_insensitive(r1: RawImap) -> None:
    assert r1.cmd("a", "enable imap4REV2 X-UNKNOWN")[0] == b"* ENABLED IMAP4rev2\r\n"
    assert r1.cmd("b", "ENABLE IMAP4rev2")[0] == b"* ENABLED\r\n"


def test_select_responses(r2: RawImap, r1: RawImap) -> None:
    append(r1)
    append(r1, flags="\\Seen")
    lines = r2.cmd("s", "SELECT INBOX")
    text = b"".join(lines)
    assert b"* 2 EXISTS\r\n" in lines
    assert b"RECENT" not in text  # Appendix E: no RECENT response
    assert b"[UNSEEN" not in text  # Appendix E: no UNSEEN response code
    assert b'* LIST () "/" "INBOX"\r\n' in lines  # §6.3.2
    for code in (b"[UIDVALIDITY ", b"[UIDNEXT 3]", b"[PERMANENTFLAGS ", b"* FLAGS ("):
        assert code in text
    assert lines[-1].startswith(b"s OK [READ-WRITE]")
    lines = r2.cmd("e", "EXAMINE INBOX")
    assert b'* LIST () "/" "INBOX"\r\n' in lines and b"RECENT" not in b"".join(lines)


def test_no_recent_flag_and_rev1_keeps_it(server: ServerThread, r2: RawImap,
                                          r1: RawImap) -> None:
    append(r1)
    r2.cmd("s", "SELECT INBOX")
    flags = r2.cmd("f", "FETCH 1 FLAGS")[0]
    assert flags == b"* 1 FETCH (FLAGS ())\r\n"
    # A message arriving while selected: EXISTS, still no \Recent.
    append(r1)
    lines = r2.cmd("n", "NOOP")
    assert b"* 2 EXISTS\r\n" in lines and b"RECENT" not in b"".join(lines)
    assert b"\\Recent" not in b"".join(r2.cmd("g", "FETCH 1:* FLAGS"))
    # The rev2 session claimed nothing: a rev1 SELECT still gets both as \Recent.
    lines = r1.cmd("t", "SELECT INBOX")
    assert b"* 2 RECENT\r\n" in lines
    assert b"\\Recent" in r1.cmd("u", "FETCH 2 FLAGS")[0]


def test_enable_while_selected_drops_recent(r1: RawImap) -> None:
    append(r1)
    r1.cmd("s", "SELECT INBOX")
    assert b"\\Recent" in r1.cmd("a", "FETCH 1 FLAGS")[0]
    r1.cmd("e", "ENABLE IMAP4rev2")
    assert r1.cmd("b", "FETCH 1 FLAGS")[0] == b"* 1 FETCH (FLAGS ())\r\n"


def test_search_answers_esearch(r2: RawImap, r1: RawImap) -> None:
    for flags in ("", "\\Seen", "", "\\Seen"):
        append(r1, flags=flags)
    r2.cmd("s", "SELECT INBOX")
    lines = r2.cmd("a", "SEARCH UNSEEN")
    assert lines == [b'* ESEARCH (TAG "a") ALL 1,3\r\n', b"a OK SEARCH completed\r\n"]
    lines = r2.cmd("b", "UID SEARCH SEEN")
    assert lines[0] == b'* ESEARCH (TAG "b") UID ALL 2,4\r\n'
    lines = r2.cmd("c", "SEARCH SUBJECT nothing-like-this")
    assert lines[0] == b'* ESEARCH (TAG "c")\r\n'  # ALL left out when nothing matched
    lines = r2.cmd("d", "SEARCH RETURN (COUNT MIN) ALL")
    assert lines[0] == b'* ESEARCH (TAG "d") MIN 1 COUNT 4\r\n'
    # CHARSET stays allowed in rev2 (UTF-8 must be supported, §6.4.4).
    assert r2.cmd("e", "SEARCH CHARSET UTF-8 ALL")[0] == b'* ESEARCH (TAG "e") ALL 1:4\r\n'
    assert not any(x.startswith(b"* SEARCH") for x in r2.cmd("f", "SEARCH ALL"))
    # A rev1 session still gets * SEARCH.
    r1.cmd("s", "SELECT INBOX")
    assert r1.cmd("g", "SEARCH UNSEEN")[0] == b"* SEARCH 1 3\r\n"


def test_mailbox_names_are_utf8(r2: RawImap, r1: RawImap) -> None:
    assert r2.cmd("c", 'CREATE "Répertoire/Été"'.encode())[-1].startswith(b"c OK")
    lines = r2.cmd("l", 'LIST "" "R*"')
    assert b'* LIST (\\HasChildren) "/" "R\xc3\xa9pertoire"\r\n' in lines
    assert b'* LIST (\\HasNoChildren) "/" "R\xc3\xa9pertoire/\xc3\x89t\xc3\xa9"\r\n' in lines
    # The same mailboxes in modified UTF-7 for a rev1 session (RFC 3501 §5.1.3).
    lines = r1.cmd("m", 'LIST "" "R*"')
    assert b'* LIST (\\HasChildren) "/" "R&AOk-pertoire"\r\n' in lines
    assert b'* LIST (\\HasNoChildren) "/" "R&AOk-pertoire/&AMk-t&AOk-"\r\n' in lines
    # A name created in mUTF-7 reads back in UTF-8.
    assert r1.cmd("n", 'CREATE "&ZeVnLIqe-"')[-1].startswith(b"n OK")
    assert b'"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"' in b"".join(r2.cmd("o", 'LIST "" "%"'))
    lines = r2.cmd("p", 'SELECT "日本語"'.encode())
    assert b'* LIST () "/" "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"\r\n' in lines
    assert lines[-1].startswith(b"p OK")
    # STATUS names the mailbox in UTF-8 too.
    lines = r2.cmd("q", 'STATUS "Répertoire/Été" (MESSAGES)'.encode())
    assert lines[0] == b'* STATUS "R\xc3\xa9pertoire/\xc3\x89t\xc3\xa9" (MESSAGES 0)\r\n'
    # "&" is an ordinary character in UTF-8 mode: "&AOk-" is not decoded.
    assert r2.cmd("r", 'CREATE "a&AOk-b"')[-1].startswith(b"r OK")
    assert b'"a&-AOk-b"' in b"".join(r1.cmd("s", 'LIST "" "a*"'))


def test_status_size_and_deleted(r2: RawImap, r1: RawImap) -> None:
    append(r1, flags="\\Deleted")
    append(r1)
    lines = r2.cmd("a", "STATUS INBOX (MESSAGES SIZE DELETED UIDNEXT)")
    assert lines[0] == b'* STATUS "INBOX" (MESSAGES 2 SIZE %d DELETED 1 UIDNEXT 3)\r\n' % (
        2 * len(MSG))


def test_list_extended_and_status_are_base(r2: RawImap) -> None:
    r2.cmd("c", "CREATE Work/Done")
    r2.cmd("u", "SUBSCRIBE Work/Done")
    lines = r2.cmd("a", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)')
    assert any(b'"Work" ("CHILDINFO" ("SUBSCRIBED"))' in x for x in lines)
    lines = r2.cmd("b", 'LIST "" "Work/%" RETURN (STATUS (MESSAGES))')
    assert b'* STATUS "Work/Done" (MESSAGES 0)\r\n' in lines


def test_alreadyexists_and_haschildren(r2: RawImap) -> None:
    assert r2.cmd("a", "CREATE Box")[-1].startswith(b"a OK")
    assert r2.cmd("b", "CREATE Box")[-1].startswith(b"b NO [ALREADYEXISTS]")
    assert r2.cmd("c", "CREATE INBOX")[-1].startswith(b"c NO [ALREADYEXISTS]")
    assert r2.cmd("d", "CREATE Other")[-1].startswith(b"d OK")
    assert r2.cmd("e", "RENAME Other Box")[-1].startswith(b"e NO [ALREADYEXISTS]")
    # A \Noselect level with children cannot be deleted: NO [HASCHILDREN] (§6.3.5).
    assert r2.cmd("f", "CREATE Top/Child")[-1].startswith(b"f OK")
    assert r2.cmd("g", "DELETE Top")[-1].startswith(b"g OK")  # becomes \Noselect
    assert b"\\Noselect" in r2.cmd("h", 'LIST "" "Top"')[0]
    assert r2.cmd("i", "DELETE Top")[-1].startswith(b"i NO [HASCHILDREN]")
    assert r2.cmd("j", "DELETE Top/Child")[-1].startswith(b"j OK")
    assert r2.cmd("k", "DELETE Top")[-1].startswith(b"k OK")
    assert r2.cmd("m", "DELETE Nope")[-1].startswith(b"m NO [NONEXISTENT]")


def test_rev2_base_extensions_work(r2: RawImap, r1: RawImap) -> None:
    """UIDPLUS, MOVE, UNSELECT, NAMESPACE, ESEARCH, IDLE are base in rev2."""
    append(r1)
    append(r1)
    r2.cmd("c", "CREATE Archive")
    assert r2.cmd("n", "NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    r2.cmd("s", "SELECT INBOX")
    lines = r2.cmd("m", "UID MOVE 1 Archive")
    assert any(b"[COPYUID " in x for x in lines)
    assert b"* 1 EXPUNGE\r\n" in lines
    r2.send(b"i IDLE\r\n")
    assert r2.readline().startswith(b"+ ")
    append(r1)
    assert r2.readline() == b"* 2 EXISTS\r\n"
    r2.send(b"DONE\r\n")
    assert r2.until_tagged("i")[-1].startswith(b"i OK")
    assert r2.cmd("u", "UNSELECT")[-1].startswith(b"u OK")


def test_qresync_vanished_in_rev2(r2: RawImap, r1: RawImap) -> None:
    append(r1)
    append(r1)
    assert r2.cmd("q", "ENABLE QRESYNC")[0] == b"* ENABLED QRESYNC\r\n"
    r2.cmd("s", "SELECT INBOX")
    r2.cmd("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    lines = r2.cmd("e", "EXPUNGE")
    assert b"* VANISHED 1\r\n" in lines


def test_lsub_kept_for_rev1(r1: RawImap) -> None:
    r1.cmd("c", "CREATE Subbed")
    r1.cmd("s", "SUBSCRIBE Subbed")
    assert r1.cmd("l", 'LSUB "" "*"')[0].startswith(b"* LSUB ")
