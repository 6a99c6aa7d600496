"""SORT's pure parts (RFC 5256 §2.1, §3, §5; RFC 5957): the base subject, the
sort keys and order, and the SORT / SEARCHRES / QUOTA command grammar (fed
whole, byte by byte and with trailing data, through ``parse_one``)."""

from __future__ import annotations

import time

import pytest
from support.imap_receiver import Err, feed_all_ways, parse_one

from mailserver.protocol.imap.quota import quota_response, quotaroot_response
from mailserver.protocol.imap.seqset import format_sequence_set, parse_sequence_set
from mailserver.protocol.imap.sortkeys import (
    SortCriterion,
    SortHeaders,
    SortItem,
    address_key,
    ascii_casemap,
    base_subject,
    display_key,
    sort_items,
)
from mailserver.protocol.imap.types import (
    Command,
    CopyArgs,
    Fetch,
    FetchAtt,
    QuotaArgs,
    Search,
    SearchAll,
    SearchAnd,
    SearchFlag,
    SearchHeader,
    SearchSeq,
    SearchUid,
    SequenceSet,
    SortArgs,
    ThreadArgs,
)

SAVED = SequenceSet((), saved=True)

# ------------------------------------------------------------- base subject

BASE = [
    # (subject, base, is_reply) — RFC 5256 §2.1 steps
    ("hello", "hello", False),
    ("Re: hello", "hello", True),
    ("RE: Re: re:hello", "hello", True),
    ("Fwd: hello", "hello", True),
    ("FW: hello", "hello", True),
    ("Re[2]: hello", "hello", True),
    ("Re [2] : hello", "hello", True),
    ("[list] hello", "hello", False),
    ("[list] Re: hello", "hello", True),
    ("[a][b] Re: [c] hello", "hello", True),
    ("Re: [list] Re: hello (fwd)", "hello", True),
    ("hello (fwd)", "hello", True),
    ("hello (FWD) (fwd)  ", "hello", True),
    ("[fwd: hello]", "hello", True),
    ("[Fwd: Re: [list] hello]", "hello", True),
    ("Re: [fwd: [fwd: hello]]", "hello", True),  # step 6 goes back to step 2
    ("[list]", "[list]", False),  # step 4: a blob alone stays
    ("[a] [b]", "[b]", False),
    ("Re:", "", True),
    ("", "", False),
    ("   ", "", False),
    ("\thello\t \t world ", "hello world", False),
    ("Re: Ré: x", "Ré: x", True),  # only re/fw/fwd are markers
    ("Rex: hello", "Rex: hello", False),
    ("[fwd: hello", "[fwd: hello", False),
    ("Fwd:Fw:Re:x", "x", True),
]


@pytest.mark.parametrize(("subject", "base", "reply"), BASE, ids=[b[0] or "empty" for b in BASE])
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


def test_base_subject_of_decoded_header() -> None:
    h = SortHeaders.parse(b"Subject: =?utf-8?q?Re=3A_caf=C3=A9?=\r\n =?utf-8?q?_au_lait?=\r\n\r\nx")
    assert base_subject(h.subject_text()) == ("café au lait", True)


@pytest.mark.parametrize("hostile", [
    "[]" * 200_000, "re:" * 200_000, "[fwd:" * 60_000 + "x" + "]" * 60_000,
    "(fwd)" * 100_000, "[x] " * 100_000 + "Re:" * 10_000 + "y", " " * 300_000,
])
def test_base_subject_is_linear_on_hostile_input(hostile: str) -> None:
    # A CPU-time guard, not a timing assertion: the quadratic version ran for minutes.
    start = time.process_time()
    base_subject(hostile)
    assert time.process_time() - start < 20


def test_ascii_casemap_folds_ascii_only() -> None:
    assert ascii_casemap("abcXYZé") == "ABCXYZé"


# -------------------------------------------------------------- sort keys


def test_address_and_display_keys() -> None:
    assert address_key(b"Ann Example <ann@example.org>, bob@x") == "ANN"
    # The first address structure of a group is its start: the group's name
    # (RFC 5256 §3 "[IMAP] addr-mailbox", RFC 3501 §7.4.2), as Dovecot sorts it.
    assert address_key(b"undisclosed-recipients:;, zed@x") == "UNDISCLOSED-RECIPIENTS"
    assert display_key(b"Friends: ann@x, bob@y;") == "FRIENDS"
    assert address_key(None) == ""
    # i;unicode-casemap (RFC 5957 §4): simple titlecase, then NFKD.
    assert display_key(b'"Zoe" <a@b>') == "ZOE"
    assert display_key(b"<Ann@Example.org>") == "ANN@EXAMPLE.ORG"
    assert display_key(b"=?utf-8?q?=C3=89mile?= <e@x>") == "E\u0301MILE"
    assert display_key(b'"" <e@x>') == "E@X"  # an empty name: the address
    assert display_key(b"") == ""


def _item(seq: int, header: bytes, date: int = 0, size: int = 0) -> SortItem:
    return SortItem(seq, seq * 10, date, size, SortHeaders.parse(header + b"\r\n\r\nbody"))


ITEMS = [
    _item(1, b"Subject: Re: beta\r\nFrom: c@x\r\nDate: Tue, 2 Jan 2024 10:00:00 +0000", 50, 300),
    _item(2, b"Subject: alpha\r\nFrom: A@x\r\nTo: z@x", 40, 100),  # no Date: INTERNALDATE
    _item(3, b"Subject: [l] Beta\r\nFrom: b@x\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000", 10, 100),
    _item(4, b"Subject: ALPHA (fwd)\r\nFrom: a@y\r\nDate: junk", 30, 200),
]


@pytest.mark.parametrize(("criteria", "expected"), [
    ([SortCriterion("ARRIVAL")], [30, 40, 20, 10]),
    ([SortCriterion("ARRIVAL", True)], [10, 20, 40, 30]),
    # Equal INTERNALDATEs keep sequence order, REVERSE or not (RFC 5256 §3).
    ([SortCriterion("ARRIVAL", True), SortCriterion("SIZE")], [10, 20, 40, 30]),
    ([SortCriterion("SIZE")], [20, 30, 40, 10]),  # ties by sequence number
    ([SortCriterion("SIZE", True)], [10, 40, 20, 30]),  # ties stay ascending
    ([SortCriterion("SUBJECT")], [20, 40, 10, 30]),
    ([SortCriterion("SUBJECT"), SortCriterion("ARRIVAL", True)], [20, 40, 10, 30]),
    ([SortCriterion("SUBJECT"), SortCriterion("SIZE", True)], [40, 20, 10, 30]),
    ([SortCriterion("FROM")], [20, 40, 30, 10]),
    ([SortCriterion("TO")], [10, 30, 40, 20]),  # empty keys first
    ([SortCriterion("DATE")], [40, 20, 30, 10]),  # no or junk Date: INTERNALDATE
])
def test_sort_items(criteria: list[SortCriterion], expected: list[int]) -> None:
    assert sort_items(ITEMS, criteria) == expected


def test_sort_dates_fall_back_to_internaldate() -> None:
    # Sent dates: 1 -> 1704189600, 3 -> 1704103200; 2 and 4 use INTERNALDATE 40 and 30.
    assert sort_items(ITEMS, [SortCriterion("DATE", True)]) == [10, 30, 20, 40]


# ----------------------------------------------------------------- grammar

GOOD = [
    (b"a SORT (SUBJECT) UTF-8 ALL", "SORT",
     SortArgs((SortCriterion("SUBJECT"),), SearchAll(), "UTF-8"), False),
    (b'a UID SORT (reverse date FROM) "us-ascii" UNSEEN FROM x', "SORT",
     SortArgs((SortCriterion("DATE", True), SortCriterion("FROM")),
              SearchAnd((SearchFlag("\\Seen", False), SearchHeader("FROM", "x"))), "US-ASCII"),
     True),
    (b"a SORT (DISPLAYFROM REVERSE DISPLAYTO ARRIVAL CC SIZE TO) UTF-8 1:*", "SORT",
     SortArgs((SortCriterion("DISPLAYFROM"), SortCriterion("DISPLAYTO", True),
               SortCriterion("ARRIVAL"), SortCriterion("CC"), SortCriterion("SIZE"),
               SortCriterion("TO")), SearchSeq(SequenceSet(((1, None),))), "UTF-8"), False),
    (b"a SORT (SIZE) X-BOGUS ALL", "SORT",
     SortArgs((SortCriterion("SIZE"),), SearchAll(), "X-BOGUS", True), False),
    (b"a THREAD REFERENCES UTF-8 ALL", "THREAD", ThreadArgs("REFERENCES", SearchAll(), "UTF-8"),
     False),
    (b"a UID THREAD orderedsubject US-ASCII $", "THREAD",
     ThreadArgs("ORDEREDSUBJECT", SearchSeq(SAVED), "US-ASCII"), True),
    # SEARCHRES (RFC 5182): $ as a whole sequence set.
    (b"a FETCH $ FLAGS", "FETCH", Fetch(SAVED, (FetchAtt("FLAGS"),)), False),
    (b"a UID COPY $ Trash", "COPY", CopyArgs(SAVED, "Trash"), True),
    (b"a SEARCH RETURN (SAVE) UID $", "SEARCH", Search(SearchUid(SAVED), None, ("SAVE",)), False),
    (b"a SEARCH $ 1", "SEARCH",
     Search(SearchAnd((SearchSeq(SAVED), SearchSeq(SequenceSet(((1, 1),)))))), False),
    # QUOTA (RFC 9208)
    (b'a GETQUOTA ""', "GETQUOTA", QuotaArgs(root=""), False),
    (b"a GETQUOTAROOT inbox", "GETQUOTAROOT", QuotaArgs(mailbox="INBOX"), False),
    (b'a SETQUOTA "" (STORAGE 512 message 10)', "SETQUOTA",
     QuotaArgs(root="", limits=(("STORAGE", 512), ("MESSAGE", 10))), False),
    (b'a SETQUOTA "" ()', "SETQUOTA", QuotaArgs(root=""), False),
]


@pytest.mark.parametrize(("wire", "name", "args", "uid"), GOOD,
                         ids=[g[0].decode() for g in GOOD])
def test_parse(wire: bytes, name: str, args: object, uid: bool) -> None:
    assert parse_one(wire + b"\r\n") == Command("a", name, args, uid)


BAD = [
    b"a SORT",
    b"a SORT SUBJECT UTF-8 ALL",
    b"a SORT () UTF-8 ALL",
    b"a SORT (BOGUS) UTF-8 ALL",
    b"a SORT (REVERSE) UTF-8 ALL",
    b"a SORT (REVERSE REVERSE DATE) UTF-8 ALL",
    b"a SORT (DATE) ALL",
    b"a SORT (DATE) UTF-8",
    b"a SORT (DATE)  UTF-8 ALL",
    b"a SORT (" + b"DATE " * 40 + b"SIZE) UTF-8 ALL",
    b"a THREAD UTF-8 ALL",
    b"a THREAD BOGUS UTF-8 ALL",
    b"a THREAD REFERENCES UTF-8",
    b"a FETCH 1,$ FLAGS",
    b"a FETCH $:3 FLAGS",
    b"a FETCH $$ FLAGS",
    b"a SEARCH UID 1$",
    b"a GETQUOTA",
    b"a GETQUOTAROOT",
    b'a SETQUOTA ""',
    b'a SETQUOTA "" (STORAGE)',
    b'a SETQUOTA "" (STORAGE x)',
    b"a UID GETQUOTA x",
]


@pytest.mark.parametrize("wire", BAD, ids=[b[:60].decode() for b in BAD])
def test_bad_syntax_is_tagged(wire: bytes) -> None:
    events = [e for e in feed_all_ways(wire + b"\r\n") if isinstance(e, Err)]
    assert events == [Err("a")]


def test_saved_set_round_trips_and_names_nothing_by_itself() -> None:
    s = parse_sequence_set("$")
    assert s == SAVED and format_sequence_set(s) == "$"
    assert s.resolve(10) == [] and not s.contains(1, 10) and s.valid_for(0)


def test_quota_responses() -> None:
    assert quota_response("", [("STORAGE", 10, 512)]) == b'* QUOTA "" (STORAGE 10 512)\r\n'
    assert quotaroot_response("INBOX", [""]) == b'* QUOTAROOT "INBOX" ""\r\n'
    assert quotaroot_response("Caf\u00e9", []) == b'* QUOTAROOT "Caf&AOk-"\r\n'
    with pytest.raises(ValueError):
        quota_response("", [])


def test_reverse_leaves_the_sequence_tie_break_alone() -> None:
    """RFC 5256 §3: REVERSE turns its own criterion only; messages received in
    the same second stay in sequence order under REVERSE ARRIVAL."""
    items = [_item(1, b"Cc: b@x", 10, 5), _item(2, b"Cc: a@x", 20, 1),
             _item(3, b"Cc: b@x", 10, 9), _item(4, b"Cc: a@x", 20, 7)]
    assert sort_items(items, [SortCriterion("ARRIVAL")]) == [10, 30, 20, 40]
    assert sort_items(items, [SortCriterion("ARRIVAL", True)]) == [20, 40, 10, 30]
    assert sort_items(items, [SortCriterion("ARRIVAL"), SortCriterion("SIZE", True)]) == [
        30, 10, 40, 20]
    assert sort_items(items, [SortCriterion("CC")]) == [20, 40, 10, 30]
    assert sort_items(items, [SortCriterion("CC", True)]) == [10, 30, 20, 40]
    assert sort_items(items, [SortCriterion("CC"), SortCriterion("ARRIVAL", True)]) == [
        20, 40, 10, 30]
