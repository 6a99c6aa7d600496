"""Mailbox-listing extensions over raw sockets and imapclient: LIST-EXTENDED
(RFC 5258), LIST-STATUS (RFC 5819), STATUS=SIZE (RFC 8438), SPECIAL-USE and
CREATE-SPECIAL-USE (RFC 6154), APPENDLIMIT (RFC 7889).
"""

from __future__ import annotations

from imapclient import IMAPClient
from support.server import ServerThread, make_config
from support.wire import ALICE, RawImap

MSG = b"Subject: m\r\n\r\nbody\r\n"


def lists(lines: list[bytes]) -> dict[bytes, bytes]:
    """name -> the whole LIST line, for ``* LIST`` lines."""
    out = {}
    for line in lines:
        if line.startswith(b"* LIST "):
            name = line.rstrip(b"\r\n").split(b'"/" ', 1)[1].split(b" (", 1)[0]
            out[name.strip(b'"')] = line
    return out


def test_capabilities(raw_imap: RawImap) -> None:
    caps = raw_imap.cmd("c", "CAPABILITY")[0].split()
    for cap in (b"LIST-EXTENDED", b"LIST-STATUS", b"STATUS=SIZE", b"SPECIAL-USE",
                b"CREATE-SPECIAL-USE", b"APPENDLIMIT=%d" % (50 * 1024 * 1024)):
        assert cap in caps


def test_list_extended_selection_and_return(raw_imap: RawImap) -> None:
    for name in ("Work", "Work/Done", "Work/Todo", "Play"):
        assert raw_imap.cmd("c", f"CREATE {name}")[-1].startswith(b"c OK")
    raw_imap.cmd("u", "SUBSCRIBE Work/Done")  # CREATE does not subscribe
    # Several patterns (RFC 5258 §3).
    got = lists(raw_imap.cmd("a", 'LIST "" ("Work/*" "Pl%")'))
    assert set(got) == {b"Work/Done", b"Work/Todo", b"Play"}
    # SUBSCRIBED selection implies \Subscribed.
    got = lists(raw_imap.cmd("b", 'LIST (SUBSCRIBED) "" "Work*"'))
    assert set(got) == {b"Work/Done"} and b"\\Subscribed" in got[b"Work/Done"]
    # RECURSIVEMATCH: an unsubscribed parent with a subscribed child, with CHILDINFO.
    got = lists(raw_imap.cmd("c", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'))
    assert got[b"Work"].endswith(b' "Work" ("CHILDINFO" ("SUBSCRIBED"))\r\n')
    assert b"\\Subscribed" not in got[b"Work"]
    assert b"Play" not in got and b"CHILDINFO" not in got[b"INBOX"]
    assert raw_imap.cmd("d", 'LIST (RECURSIVEMATCH) "" "*"')[-1].startswith(b"d BAD")
    # RETURN (SUBSCRIBED CHILDREN) on a plain selection.
    got = lists(raw_imap.cmd("e", 'LIST "" "Work*" RETURN (SUBSCRIBED CHILDREN)'))
    assert b"\\HasChildren" in got[b"Work"] and b"\\Subscribed" not in got[b"Work"]
    assert b"\\Subscribed" in got[b"Work/Done"] and b"\\HasNoChildren" in got[b"Work/Done"]
    # Without RETURN (SUBSCRIBED), no \Subscribed.
    assert b"\\Subscribed" not in lists(raw_imap.cmd("f", 'LIST "" "Play"'))[b"Play"]
    assert raw_imap.cmd("g", 'LIST (BOGUS) "" "*"')[-1].startswith(b"g BAD")


def test_special_use_list_and_create(raw_imap: RawImap) -> None:
    got = lists(raw_imap.cmd("a", 'LIST (SPECIAL-USE) "" "*"'))
    assert set(got) == {b"Sent", b"Drafts", b"Trash", b"Junk"}
    assert b"\\Drafts" in got[b"Drafts"]
    got = lists(raw_imap.cmd("b", 'LIST "" "*" RETURN (SPECIAL-USE)'))
    assert b"\\Sent" in got[b"Sent"] and b"INBOX" in got
    assert raw_imap.cmd("c", "CREATE Old (USE (\\Archive))")[-1].startswith(b"c OK")
    assert b"\\Archive" in lists(raw_imap.cmd("d", 'LIST "" "Old"'))[b"Old"]
    assert raw_imap.cmd("e", "CREATE Odd (USE (\\All))")[-1].startswith(b"e NO [USEATTR]")
    assert raw_imap.cmd("f", "CREATE Two (USE (\\Sent \\Trash))")[-1].startswith(b"f NO [USEATTR]")
    assert raw_imap.cmd("g", "CREATE Bad (FOO (\\Sent))")[-1].startswith(b"g BAD")
    assert raw_imap.cmd("h", "CREATE Plain (USE ())")[-1].startswith(b"h OK")
    # Nothing was created by the refused commands.
    names = lists(raw_imap.cmd("i", 'LIST "" "*"'))
    assert b"Odd" not in names and b"Two" not in names and b"Bad" not in names


def test_list_status_and_status_size(raw_imap: RawImap) -> None:
    raw_imap.cmd("c", "CREATE Box")
    raw_imap.cmd("c2", "CREATE Box/Child")
    raw_imap.cmd("d", "DELETE Box")  # Box becomes \Noselect: no STATUS for it
    raw_imap.cmd("a", f"APPEND INBOX {{{len(MSG)}+}}\r\n".encode() + MSG)
    raw_imap.cmd("b", f"APPEND INBOX (\\Seen \\Deleted) {{{len(MSG)}+}}\r\n".encode() + MSG)
    lines = raw_imap.cmd("l", 'LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN SIZE DELETED))')
    i = next(n for n, x in enumerate(lines) if x.startswith(b'* LIST') and b'"INBOX"' in x)
    assert lines[i + 1] == (b'* STATUS "INBOX" (MESSAGES 2 UNSEEN 1 SIZE %d DELETED 1)\r\n'
                            % (2 * len(MSG)))
    assert not any(x.startswith(b'* STATUS "Box"') for x in lines)
    assert any(x.startswith(b'* STATUS "Box/Child" (MESSAGES 0') for x in lines)
    assert raw_imap.cmd("s", "STATUS INBOX (SIZE APPENDLIMIT)")[0] == (
        b'* STATUS "INBOX" (SIZE %d APPENDLIMIT %d)\r\n' % (2 * len(MSG), 50 * 1024 * 1024))


def test_imapclient_listing(server: ServerThread) -> None:
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*ALICE)
        assert c.find_special_folder(b"\\Sent") == "Sent"
        c.append("INBOX", MSG)
        assert c.folder_status("INBOX", [b"SIZE"])[b"SIZE"] == len(MSG)
        got = c.list_folders(pattern="INBOX")
        assert got and got[0][2] == "INBOX"


def test_appendlimit_follows_limits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv = ServerThread(make_config(tmp_path / "d", max_message_size=4096))
    try:
        c = RawImap(srv.port("imap"))
        assert b"APPENDLIMIT=4096" in c.greeting.split()
        c.close()
    finally:
        srv.stop()
