"""Grammar of the IMAP extensions (no sockets): WITHIN search keys (RFC 5032),
SELECT/EXAMINE parameters CONDSTORE and QRESYNC (RFC 7162 §7), CREATE (USE ...)
(RFC 6154 §6), the ESEARCH response (RFC 4731 §3.1), LIST-EXTENDED options
(RFC 5258 §6) and FETCH/STORE modifiers (RFC 7162).

Wire cases go through the Receiver whole, byte by byte and with a trailing
command (``parse_one`` / ``feed_all_ways``).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.imap_receiver import Err, feed_all_ways, parse_one

from mailserver.errors import ProtocolSyntaxError, UserError
from mailserver.imap.commands.mailbox import _special_use
from mailserver.imap.commands.searching import esearch_response, uses_modseq
from mailserver.imap.commands.select import parse_select_params
from mailserver.protocol.imap.types import (
    Command,
    Fetch,
    FetchAtt,
    ListArgs,
    MailboxArg,
    Search,
    SearchAll,
    SearchAnd,
    SearchModseq,
    SearchNot,
    SearchWithin,
    SequenceSet,
)

ALL = SequenceSet(((1, None),))


@pytest.mark.parametrize(
    ("wire", "args"),
    [
        (b"a SEARCH OLDER 3600", Search(SearchWithin(3600, True))),
        (b"a SEARCH younger 0", Search(SearchWithin(0, False))),
        (b"a SEARCH NOT OLDER 60 ALL",
         Search(SearchAnd((SearchNot(SearchWithin(60, True)), SearchAll())))),
        (b"a SEARCH RETURN (MIN MAX) YOUNGER 5",
         Search(SearchWithin(5, False), return_opts=("MIN", "MAX"))),
    ],
)
def test_within_keys(wire: bytes, args: Search) -> None:
    assert parse_one(wire + b"\r\n") == Command("a", "SEARCH", args)


@pytest.mark.parametrize("wire", [b"a SEARCH OLDER", b"a SEARCH OLDER -1",
                                  b"a SEARCH YOUNGER x", b"a SEARCH OLDER 99999999999"])
def test_within_bad(wire: bytes) -> None:
    assert [e for e in feed_all_ways(wire + b"\r\n") if isinstance(e, Err)] == [Err("a")]


def test_select_params_on_the_wire() -> None:
    cmd = parse_one(b"a SELECT INBOX (QRESYNC (67890007 90060115194045000 41,43:211 "
                    b"(1:3 41,43:44)))\r\n")
    assert cmd.args == MailboxArg("INBOX", ("QRESYNC", (
        67890007, 90060115194045000, "41,43:211", ("1:3", "41,43:44"))))
    condstore, q = parse_select_params(cmd.args.params)
    assert not condstore and q is not None
    assert (q.uidvalidity, q.modseq) == (67890007, 90060115194045000)
    assert q.known is not None and q.known.contains(100, 500) and not q.known.contains(42, 500)


@pytest.mark.parametrize(
    ("params", "condstore", "known"),
    [
        ((), False, None),
        (("CONDSTORE",), True, None),
        (("QRESYNC", (1, 2)), False, None),
        (("QRESYNC", (1, 2, 7)), False, 7),  # a one-number set arrives as an int
        (("QRESYNC", (1, 2, (1, 7))), False, None),  # seq-match without known-uids
        (("CONDSTORE", "QRESYNC", (1, 2, "5:9")), True, 6),
    ],
)
def test_select_params(params: tuple, condstore: bool, known: int | None) -> None:
    got_condstore, q = parse_select_params(params)
    assert got_condstore is condstore
    if "QRESYNC" in params:
        assert q is not None
        if known is not None:
            assert q.known is not None and q.known.contains(known, 10)
    else:
        assert q is None


@pytest.mark.parametrize(
    "params",
    [
        ("BOGUS",),
        ("CONDSTORE", "CONDSTORE"),
        ("QRESYNC",),
        ("QRESYNC", (1,)),
        ("QRESYNC", (0, 1)),
        ("QRESYNC", (1, 0)),
        ("QRESYNC", (1, 1 << 63)),
        ("QRESYNC", (1, 2, "x")),
        ("QRESYNC", (1, 2, "1:5", (1,))),
        ("QRESYNC", (1, 2, "1:5", (1, 2), 3)),
        ("QRESYNC", "1 2"),
    ],
)
def test_select_params_bad(params: tuple) -> None:
    with pytest.raises(ProtocolSyntaxError):
        parse_select_params(params)


_generic = st.recursive(
    st.one_of(st.integers(0, 1 << 64), st.sampled_from(["QRESYNC", "CONDSTORE", "1:*", "x"]),
              st.none()),
    lambda inner: st.lists(inner, max_size=5).map(tuple),
    max_leaves=12,
)


@given(st.lists(_generic, max_size=4).map(tuple))
def test_select_params_never_crash(params: tuple) -> None:
    try:
        parse_select_params(params)
    except ProtocolSyntaxError:
        pass


def test_create_use_parameter() -> None:
    cmd = parse_one(b"a CREATE Stuff (USE (\\Archive))\r\n")
    assert cmd.args == MailboxArg("Stuff", ("USE", ("\\Archive",)))
    assert _special_use(cmd.args.params) == "\\Archive"
    assert _special_use(("USE", ("\\junk",))) == "\\Junk"
    assert _special_use(()) is None and _special_use(("USE", ())) is None
    for bad in (("USE", ("\\All",)), ("USE", ("\\Sent", "\\Trash"))):
        with pytest.raises(UserError) as info:
            _special_use(bad)
        assert info.value.imap_code == "USEATTR"
    for syntax in (("FOO", ("\\Sent",)), ("USE", "\\Sent"), ("USE", ("Sent",))):
        with pytest.raises(ProtocolSyntaxError):
            _special_use(syntax)


def test_list_extended_on_the_wire() -> None:
    cmd = parse_one(b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "Work/%") '
                    b"RETURN (CHILDREN STATUS (MESSAGES SIZE))\r\n")
    assert cmd.args == ListArgs("", "INBOX", ("SUBSCRIBED", "RECURSIVEMATCH"),
                                ("CHILDREN", "STATUS"), ("INBOX", "Work/%"),
                                ("MESSAGES", "SIZE"))


def test_fetch_modifiers_on_the_wire() -> None:
    cmd = parse_one(b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n")
    assert cmd == Command("a", "FETCH", Fetch(ALL, (FetchAtt("FLAGS"),), 12345, True), True)
    for bad in (b"a FETCH 1:* FLAGS (VANISHED CHANGEDSINCE 1)",  # VANISHED needs UID
                b"a UID FETCH 1:* FLAGS (VANISHED)",  # and CHANGEDSINCE
                b"a FETCH 1 FLAGS (CHANGEDSINCE 0)"):  # mod-sequence-value is nz
        assert [e for e in feed_all_ways(bad + b"\r\n") if isinstance(e, Err)] == [Err("a")]


@pytest.mark.parametrize(
    ("tag", "uid", "opts", "numbers", "modseq", "wire"),
    [
        ("A1", False, ("MIN", "MAX", "COUNT"), [3, 1, 7], None,
         b'* ESEARCH (TAG "A1") MIN 1 MAX 7 COUNT 3\r\n'),
        ("A2", True, (), [1, 2, 3, 5, 9, 10], None, b'* ESEARCH (TAG "A2") UID ALL 1:3,5,9:10\r\n'),
        ("A3", False, ("ALL", "MIN", "COUNT"), [], None, b'* ESEARCH (TAG "A3") COUNT 0\r\n'),
        ("A4", False, ("MAX",), [], 5, b'* ESEARCH (TAG "A4")\r\n'),
        ("A5", True, ("COUNT",), [4], 77, b'* ESEARCH (TAG "A5") UID COUNT 1 MODSEQ 77\r\n'),
    ],
)
def test_esearch_response(tag: str, uid: bool, opts: tuple[str, ...], numbers: list[int],
                          modseq: int | None, wire: bytes) -> None:
    assert esearch_response(tag, uid, opts, numbers, modseq) == wire


def test_uses_modseq() -> None:
    assert uses_modseq(SearchAnd((SearchAll(), SearchNot(SearchModseq(3)))))
    assert not uses_modseq(SearchAnd((SearchAll(), SearchWithin(3, True))))
