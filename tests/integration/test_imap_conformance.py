"""IMAP behaviours an independent conformance suite checks (issue #12 §2), each
over real sockets with two sessions where another session's change matters:
keywords announced by FLAGS before FETCH shows them (RFC 3501 §7.2.6), RECENT
after EXISTS (§7.3.2), mailbox names of atom-specials, ESEARCH with CONDSTORE
(RFC 7162 §3.1.5), LIST-EXTENDED (RFC 5258 §3.5), address SEARCH, SORT and THREAD
(RFC 5256).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from support.server import ServerThread
from support.wire import RawImap


@pytest.fixture
def other(server: ServerThread) -> Iterator[RawImap]:
    """A second session of alice."""
    with RawImap(server.port("imap")) as c:
        c.login()
        yield c


def append(c: RawImap, msg: bytes, flags: str = "", mailbox: str = "INBOX") -> list[bytes]:
    flag_part = f"({flags}) " if flags else ""
    return c.ok("ap", f"APPEND {mailbox} {flag_part}{{{len(msg)}+}}\r\n".encode() + msg)


class FlagTracker:
    """What a client that tracks FLAGS knows: every keyword in an untagged
    FETCH must have been in a ``* FLAGS`` response before (RFC 3501 §7.2.6)."""

    def __init__(self) -> None:
        self.flags: set[str] = set()
        self.permanent: set[str] = set()

    def feed(self, lines: list[bytes]) -> None:
        for line in lines:
            text = line.decode()
            m = re.match(r"\* FLAGS \(([^)]*)\)", text)
            if m:
                self.flags = set(m.group(1).split())
                continue
            m = re.match(r"\* OK \[PERMANENTFLAGS \(([^)]*)\)", text)
            if m:
                self.permanent = set(m.group(1).split())
                continue
            m = re.match(r"\* \d+ FETCH \(.*FLAGS \(([^)]*)\)", text)
            if m:
                for flag in m.group(1).split():
                    if not flag.startswith("\\"):
                        assert flag in self.flags, (flag, line)
                        assert flag in self.permanent, (flag, line)


MSG = b"Subject: x\r\n\r\nbody\r\n"


# ------------------------------------------------- 1. keywords announced first


def test_keywords_announced_before_fetch(raw_imap: RawImap, other: RawImap) -> None:
    append(raw_imap, MSG)
    seen = FlagTracker()
    seen.feed(raw_imap.ok("s", "SELECT INBOX"))
    other.ok("o", "SELECT INBOX")
    # Another session sets a keyword: our NOOP announces it before the FETCH.
    other.ok("o1", "STORE 1 +FLAGS ($Other)")
    lines = raw_imap.ok("n", "NOOP")
    seen.feed(lines)
    assert any(b"$Other" in x and b"FETCH" in x for x in lines)
    # Another session sets one and we FETCH before any sync told us.
    other.ok("o2", "STORE 1 +FLAGS (Fetched)")
    seen.feed(raw_imap.ok("f", "FETCH 1 FLAGS"))
    # Our own STORE, loud and silent.
    seen.feed(raw_imap.ok("t", "STORE 1 +FLAGS (Mine)"))
    seen.feed(raw_imap.ok("t2", "STORE 1 +FLAGS.SILENT (Quiet)"))
    assert "Quiet" in seen.flags
    seen.feed(raw_imap.ok("f2", "FETCH 1 FLAGS"))
    # APPEND (by another session, and our own) and COPY bring new keywords.
    append(other, MSG, "NewKw")
    seen.feed(raw_imap.ok("n2", "NOOP"))
    assert "NewKw" in seen.flags
    other.ok("c", "CREATE Box")
    append(other, MSG, "CopiedKw", "Box")
    other.ok("o3", "SELECT Box")
    other.ok("c2", "COPY 1 INBOX")
    seen.feed(raw_imap.ok("n3", "NOOP"))
    assert "CopiedKw" in seen.flags
    seen.feed(append(raw_imap, MSG, "OwnAppend"))
    seen.feed(raw_imap.ok("f3", "FETCH 1:* FLAGS"))
    assert "OwnAppend" in seen.flags


def test_examine_announces_without_permanent_flags(raw_imap: RawImap, other: RawImap) -> None:
    append(raw_imap, MSG)
    lines = raw_imap.ok("e", "EXAMINE INBOX")
    assert b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n" in lines
    other.ok("o", "SELECT INBOX")
    other.ok("o1", "STORE 1 +FLAGS (Ro)")
    lines = raw_imap.ok("n", "NOOP")
    assert lines[0].startswith(b"* FLAGS (") and b" Ro)" in lines[0]
    assert any(b"FETCH" in x and b"Ro" in x for x in lines[1:])


# ------------------------------------------------- 2. RECENT after EXISTS


def test_recent_reported_with_exists(raw_imap: RawImap, other: RawImap) -> None:
    raw_imap.ok("s", "SELECT INBOX")
    append(other, MSG)
    lines = raw_imap.ok("n", "NOOP")
    assert lines[:2] == [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"], lines
    other.ok("c", "CREATE Box")
    append(other, MSG, mailbox="Box")
    append(other, MSG, mailbox="Box")
    other.ok("o", "SELECT Box")
    other.ok("cp", "COPY 1:2 INBOX")
    lines = raw_imap.ok("n2", "NOOP")
    assert lines[:2] == [b"* 3 EXISTS\r\n", b"* 3 RECENT\r\n"], lines
    # Our own APPEND into the selected mailbox is ours to claim as well.
    lines = append(raw_imap, MSG)
    assert lines[:2] == [b"* 4 EXISTS\r\n", b"* 4 RECENT\r\n"], lines
    # Nothing new: no RECENT.
    assert raw_imap.ok("n4", "NOOP") == [b"n4 OK NOOP completed\r\n"]


# ------------------------------------------------- 3. names of atom-specials

ATOM_NAME = "!#$&'+,-.0123456789:;<=>?@^_`|[}"  # an atom, but not modified UTF-7


def test_names_not_modified_utf7_are_no_not_bad(raw_imap: RawImap) -> None:
    raw_imap.ok("s", "SELECT INBOX")
    for cmd in (f"SELECT {ATOM_NAME}", f'EXAMINE "{ATOM_NAME}"', f"STATUS {ATOM_NAME} (MESSAGES)",
                f"DELETE {ATOM_NAME}", f"SUBSCRIBE {ATOM_NAME}", f"RENAME {ATOM_NAME} x",
                'SELECT "&Jjo!"', "SELECT ~foo"):
        assert raw_imap.cmd("a", cmd)[-1].startswith(b"a NO [NONEXISTENT] "), cmd
    assert raw_imap.cmd("c", f"CREATE {ATOM_NAME}")[-1].startswith(b"c NO [CANNOT]")
    assert raw_imap.cmd("r", f"RENAME INBOX {ATOM_NAME}")[-1].startswith(b"r NO [CANNOT]")
    # The failed SELECT left the session unselected (RFC 3501 §6.3.1).
    assert raw_imap.cmd("n", "FETCH 1 FLAGS")[-1].startswith(b"n BAD")
    # LIST patterns of them are answered, match nothing, and the session goes on.
    for pattern in (ATOM_NAME, ATOM_NAME + "%*", '"~foo%*"', '"&Jjo!*"'):
        assert raw_imap.cmd("l", f'LIST "" {pattern}') == [b"l OK LIST completed\r\n"]
        assert raw_imap.cmd("m", f'LSUB "" {pattern}') == [b"m OK LSUB completed\r\n"]
    assert raw_imap.cmd("n2", "NOOP") == [b"n2 OK NOOP completed\r\n"]
    # The same characters spelt in modified UTF-7 ("&" as "&-") make a mailbox.
    spelt = ATOM_NAME.replace("&", "&-")
    raw_imap.ok("c2", f'CREATE "{spelt}"')
    assert raw_imap.ok("l2", f'LIST "" "{spelt}"')[0] == (
        b'* LIST (\\HasNoChildren) "/" "' + spelt.encode() + b'"\r\n')
    raw_imap.ok("s2", f'SELECT "{spelt}"')


# ------------------------------------------------- 4. ESEARCH with CONDSTORE


def _modseqs(c: RawImap) -> list[int]:
    return [int(m) for m in re.findall(rb"MODSEQ \((\d+)\)", b"".join(c.ok("m", "FETCH 1:* MODSEQ")))]


def test_fetch_modseq_enabling_condstore_tags_highestmodseq(server: ServerThread,
                                                           raw_imap: RawImap) -> None:
    for _ in range(2):
        append(raw_imap, MSG)
    high = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(raw_imap.ok("s", "SELECT INBOX")))[1])
    # The command that enables CONDSTORE in a selected mailbox (RFC 7162 §3.1).
    lines = raw_imap.ok("f", "FETCH 1 (FLAGS MODSEQ)")
    assert lines[-1] == b"f OK [HIGHESTMODSEQ %d] FETCH completed\r\n" % high
    # Only that one: later commands do not repeat it.
    assert raw_imap.ok("g", "FETCH 1 MODSEQ")[-1] == b"g OK FETCH completed\r\n"
    # CHANGEDSINCE enables it as well, in a fresh session.
    with RawImap(server.port("imap")) as c:
        c.login()
        c.ok("s", "SELECT INBOX")
        assert c.ok("f", "FETCH 1:* FLAGS (CHANGEDSINCE 1)")[-1] == (
            b"f OK [HIGHESTMODSEQ %d] FETCH completed\r\n" % high)


def test_esearch_min_max_modseq_of_returned_message(raw_imap: RawImap) -> None:
    for _ in range(3):
        append(raw_imap, MSG)
    raw_imap.ok("s", "SELECT INBOX")
    raw_imap.ok("t", "STORE 1 +FLAGS (\\Flagged)")  # message 1 now has the highest MODSEQ
    m1, m2, m3 = _modseqs(raw_imap)
    assert m1 > m3 > m2

    def esearch(opts: str) -> bytes:
        return raw_imap.ok("e", f"SEARCH RETURN ({opts}) MODSEQ 1")[0]

    # RFC 4731 §3.2 / RFC 7162 §3.1.5: MIN or MAX alone: that message's MODSEQ.
    assert esearch("MIN") == b'* ESEARCH (TAG "e") MIN 1 MODSEQ %d\r\n' % m1
    assert esearch("MAX") == b'* ESEARCH (TAG "e") MAX 3 MODSEQ %d\r\n' % m3
    # Both, no ALL/COUNT: the higher of the two; with ALL or COUNT: of every match.
    assert esearch("MIN MAX") == b'* ESEARCH (TAG "e") MIN 1 MAX 3 MODSEQ %d\r\n' % m1
    assert esearch("COUNT") == b'* ESEARCH (TAG "e") COUNT 3 MODSEQ %d\r\n' % m1
    raw_imap.ok("u", "STORE 2 +FLAGS (\\Seen)")
    m2 = _modseqs(raw_imap)[1]
    assert esearch("MAX") == b'* ESEARCH (TAG "e") MAX 3 MODSEQ %d\r\n' % m3
    assert esearch("ALL") == b'* ESEARCH (TAG "e") ALL 1:3 MODSEQ %d\r\n' % m2
    line = raw_imap.ok("e2", "UID SEARCH RETURN (MAX) MODSEQ 1 NOT SEEN")[0]
    assert line == b'* ESEARCH (TAG "e2") UID MAX 3 MODSEQ %d\r\n' % m3


# ------------------------------------------------- 5. LIST-EXTENDED


def _listed(lines: list[bytes]) -> list[bytes]:
    return [x[len(b"* LIST "):].rstrip(b"\r\n") for x in lines if x.startswith(b"* LIST ")]


def test_list_subscribed_shows_deleted_mailbox_nonexistent(raw_imap: RawImap) -> None:
    raw_imap.ok("c", "CREATE Gone")
    raw_imap.ok("s", "SUBSCRIBE Gone")
    raw_imap.ok("d", "DELETE Gone")
    lines = raw_imap.ok("l", 'LIST (SUBSCRIBED) "" "G*"')
    assert _listed(lines) == [b'(\\NonExistent \\HasNoChildren \\Subscribed) "/" "Gone"']
    assert b'* LSUB () "/" "Gone"\r\n' in raw_imap.ok("m", 'LSUB "" "*"')
    # A plain LIST does not show it (§3.1: only with the SUBSCRIBED selection).
    assert _listed(raw_imap.ok("p", 'LIST "" "G*"')) == []
    # Created again, the name is subscribed again; UNSUBSCRIBE of a gone name works.
    raw_imap.ok("c2", "CREATE Gone")
    assert _listed(raw_imap.ok("l2", 'LIST (SUBSCRIBED) "" "G*"')) == [
        b'(\\HasNoChildren \\Subscribed) "/" "Gone"']
    raw_imap.ok("d2", "DELETE Gone")
    raw_imap.ok("u", "UNSUBSCRIBE Gone")
    assert _listed(raw_imap.ok("l3", 'LIST (SUBSCRIBED) "" "G*"')) == []
    assert raw_imap.cmd("u2", "UNSUBSCRIBE Gone")[-1].startswith(b"u2 NO")


def test_recursivematch_childinfo_as_rfc5258_example_9(raw_imap: RawImap) -> None:
    """RFC 5258 §5 example 9: the hierarchy and subscriptions given there."""
    for name in ("foo2/bar1", "foo2/bar2", "baz2/bar2", "baz2/bar22", "baz2/bar222",
                 "eps2/mamba", "qux2/bar2"):
        raw_imap.ok("c", f"CREATE {name}")
    for name in ("foo2/bar1", "foo2/bar2", "baz2/bar2", "baz2/bar22", "baz2/bar222",
                 "eps2", "eps2/mamba", "qux2/bar2"):
        raw_imap.ok("s", f"SUBSCRIBE {name}")
    raw_imap.ok("u", "SUBSCRIBE qux2")
    raw_imap.ok("d", "DELETE qux2")  # has a child: stays as a \Noselect level
    raw_imap.ok("u2", "UNSUBSCRIBE qux2")
    got = _listed(raw_imap.ok("l", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*2"'))
    assert got == [
        b'(\\HasNoChildren \\Subscribed) "/" "baz2/bar2"',
        b'(\\HasNoChildren \\Subscribed) "/" "baz2/bar22"',
        b'(\\HasNoChildren \\Subscribed) "/" "baz2/bar222"',
        b'(\\HasChildren \\Subscribed) "/" "eps2" ("CHILDINFO" ("SUBSCRIBED"))',
        b'(\\HasChildren) "/" "foo2" ("CHILDINFO" ("SUBSCRIBED"))',
        b'(\\HasNoChildren \\Subscribed) "/" "foo2/bar2"',
        b'(\\HasNoChildren \\Subscribed) "/" "qux2/bar2"',
    ]
    got = _listed(raw_imap.ok("m", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'))
    assert b'(\\HasChildren) "/" "baz2" ("CHILDINFO" ("SUBSCRIBED"))' in got
    assert b'(\\Noselect \\HasChildren) "/" "qux2" ("CHILDINFO" ("SUBSCRIBED"))' in got
    # "*": every passing descendant is listed itself, so no CHILDINFO at all.
    got = _listed(raw_imap.ok("n", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"'))
    assert not any(b"CHILDINFO" in x for x in got)
    assert b'(\\HasChildren \\Subscribed) "/" "eps2"' in got


# ------------------------------------------------- 6. address SEARCH


ADDRESSED = [
    b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.com>\r\nTo: x@y.org\r\n",
    b'From: "=?iso-8859-1?q?Ren=E9?= Dupont" <rene@example.fr>\r\n'
    b"Cc: Team: alice@example.org, Bob (the boss) Smith <bob@example.org>;\r\n",
    b"From: carol(work)@example.net (Carol Jones)\r\nBcc: dave@example.net\r\n",
]


def test_search_address_fields_match_decoded_names_and_addresses(raw_imap: RawImap) -> None:
    for head in ADDRESSED:
        append(raw_imap, head + b"Subject: s\r\n\r\nbody\r\n")
    raw_imap.ok("s", "SELECT INBOX")

    def hits(criteria: str) -> bytes:
        line = raw_imap.ok("q", f"SEARCH CHARSET UTF-8 {criteria}".encode())[0]
        return line.rstrip(b"\r\n")

    assert hits('FROM "jörg müller"') == b"* SEARCH 1"  # encoded words
    assert hits('FROM "Müller <joerg@"') == b"* SEARCH 1"  # name and address as one
    assert hits('FROM "René Dupont"') == b"* SEARCH 2"  # encoded word in a quoted string
    assert hits('CC "Bob Smith"') == b"* SEARCH 2"  # a comment inside the name
    assert hits('CC "alice@example.org"') == b"* SEARCH 2"  # in a group
    assert hits('CC "team:"') == b"* SEARCH 2"  # the group's name
    assert hits('FROM "carol@example.net"') == b"* SEARCH 3"  # a comment inside the address
    assert hits('FROM "Carol Jones"') == b"* SEARCH 3"  # the comment as the name
    assert hits('BCC "dave@"') == b"* SEARCH 3"
    assert hits('TO "joerg"') == b"* SEARCH"


# ------------------------------------------------- 7. SORT and THREAD


def _append_at(c: RawImap, date: str, head: bytes) -> None:
    msg = head + b"Subject: s\r\n\r\nbody\r\n"
    c.ok("ap", f'APPEND INBOX "{date}" {{{len(msg)}+}}\r\n'.encode() + msg)


def test_sort_reverse_arrival_cc_displayto(raw_imap: RawImap) -> None:
    early, late = "01-Jan-2024 10:00:00 +0000", "02-Jan-2024 10:00:00 +0000"
    _append_at(raw_imap, early, b"To: Zed <zed@x.org>\r\nCc: undisclosed-recipients:;\r\n")
    _append_at(raw_imap, late, b"To: =?utf-8?q?=C3=A9mile?= <e@x.org>\r\nCc: bob@x.org\r\n")
    _append_at(raw_imap, early, b"To: <adam@x.org>\r\nCc: Amy <amy@x.org>\r\n")
    _append_at(raw_imap, late, b"To: Friends: a@x.org;\r\n")
    raw_imap.ok("s", "SELECT INBOX")

    def sort(criteria: str) -> bytes:
        return raw_imap.ok("o", f"SORT ({criteria}) UTF-8 ALL")[0].rstrip(b"\r\n")

    # Same-second arrivals keep sequence order whichever way ARRIVAL runs.
    assert sort("ARRIVAL") == b"* SORT 1 3 2 4"
    assert sort("REVERSE ARRIVAL") == b"* SORT 2 4 1 3"
    # CC: addr-mailbox of the first address structure; a group's is its name.
    assert sort("CC") == b"* SORT 4 3 2 1"
    assert sort("REVERSE CC") == b"* SORT 1 2 3 4"
    # DISPLAYTO: name, else mailbox@host, else the group's name (RFC 5957 §3).
    assert sort("DISPLAYTO") == b"* SORT 3 2 4 1"
    assert sort("REVERSE DISPLAYTO") == b"* SORT 1 4 2 3"


def test_thread_references_links_valid_msg_ids_only(raw_imap: RawImap) -> None:
    """RFC 5256 §4 step 1 follows *valid* msg-ids (RFC 5322 §3.6.4 needs the
    "@"): "<1>" referenced by "<1>" leaves two threads, as Dovecot has them."""
    date = "01-Jan-2024 10:00:00 +0000"
    _append_at(raw_imap, date, b"Message-ID: <1>\r\n")
    _append_at(raw_imap, date, b"Message-ID: <2>\r\nReferences: <1>\r\n")
    _append_at(raw_imap, date, b"Message-ID: <3@x>\r\n")
    _append_at(raw_imap, date, b"Message-ID: <4@x>\r\nIn-Reply-To: <3 @x> (comment)\r\n")
    raw_imap.ok("s", "SELECT INBOX")
    # All share the subject "s", so step 5 gathers the roots under one dummy;
    # linking "<2>" under "<1>" would have given ((1 2)(3 4)).
    line = raw_imap.ok("t", "THREAD REFERENCES UTF-8 ALL")[0]
    assert line == b"* THREAD ((1)(2)(3 4))\r\n"
