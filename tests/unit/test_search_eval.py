"""Pure parts of SEARCH evaluation: which keys need content, and the plan
that puts cheap keys first (RFC 3501 §6.4.4 keys; no store, no loop)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailserver.imap.search_eval import _plan, needs_content, search
from mailserver.protocol.imap.types import (
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModseq,
    SearchNot,
    SearchOr,
    SearchSeq,
    SearchSize,
    SearchText,
    SearchUid,
    SequenceSet,
)
from mailserver.store.model import MessageRecord

DAY = dt.date(2024, 1, 1)
SET = SequenceSet(((1, None),))

CHEAP: list[SearchKey] = [
    SearchAll(),
    SearchSeq(SET),
    SearchUid(SET),
    SearchFlag("\\Seen"),
    SearchFlag("$Label", False),
    SearchSize(10, larger=True),
    SearchModseq(5),
    SearchDate("ON", DAY),
    SearchAnd(()),
    SearchNot(SearchOr(SearchFlag("\\Seen"), SearchDate("BEFORE", DAY))),
]
COSTLY: list[SearchKey] = [
    SearchDate("SINCE", DAY, sent=True),
    SearchHeader("FROM", "x"),
    SearchHeader("X-ANY", ""),
    SearchText("x"),
    SearchText("x", header=True),
    SearchNot(SearchText("x")),
    SearchOr(SearchAll(), SearchHeader("TO", "y")),
    SearchAnd((SearchFlag("\\Seen"), SearchAnd((SearchText("x"),)))),
]


@pytest.mark.parametrize("key", CHEAP, ids=repr)
def test_cheap_keys_need_no_content(key: SearchKey) -> None:
    assert not needs_content(key)


@pytest.mark.parametrize("key", COSTLY, ids=repr)
def test_content_keys(key: SearchKey) -> None:
    assert needs_content(key)


def test_plan_sorts_and_by_cost() -> None:
    text, header, sent = SearchText("t"), SearchHeader("FROM", "f"), SearchDate("ON", DAY, True)
    flag, size = SearchFlag("\\Seen"), SearchSize(1, False)
    planned = _plan(SearchAnd((text, header, flag, sent, size)))
    assert planned == SearchAnd((flag, size, sent, header, text))


def test_plan_puts_cheap_or_side_first_at_every_depth() -> None:
    text, flag = SearchText("t"), SearchFlag("\\Seen")
    assert _plan(SearchOr(text, flag)) == SearchOr(flag, text)
    assert _plan(SearchOr(flag, text)) == SearchOr(flag, text)
    deep = SearchNot(SearchAnd((SearchOr(text, flag), flag)))
    assert _plan(deep) == SearchNot(SearchAnd((flag, SearchOr(flag, text))))


def _record(uid: int, flags: frozenset[str]) -> MessageRecord:
    return MessageRecord(1, uid, flags, 0, 0, 10, uid, bytes(32), b"")


@pytest.mark.parametrize("flag", ["\\Seen", "\\Deleted", "\\Flagged", "\\Recent"])
@pytest.mark.parametrize("present", [True, False])
def test_single_system_flag_key_matches_the_general_evaluator(flag: str, present: bool) -> None:
    """One system-flag key is answered straight from the records; the same key
    inside an AND goes through the general predicates: both agree."""
    sets = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Flagged", "\\Deleted"}),
            frozenset({"\\Seen", "$Bench"})]
    messages = [(i + 1, _record(10 + i, sets[i % len(sets)])) for i in range(9)]
    key = SearchFlag(flag, present)
    fast = search(key, messages, None, largest_uid=18)  # type: ignore[arg-type]
    general = search(SearchAnd((key, SearchAll())), messages, None,  # type: ignore[arg-type]
                     largest_uid=18)
    assert fast == general
    assert fast == [(s, r.uid) for s, r in messages if (flag in r.flags) == present]


@given(st.integers(0, 4_102_444_800), st.integers(-720, 840),
       st.sampled_from(["BEFORE", "ON", "SINCE"]), st.dates(dt.date(1970, 1, 2), dt.date(2099, 12, 31)))
def test_internaldate_keys_judge_the_day_in_its_own_zone(ts: int, tz: int, op: str,
                                                          day: dt.date) -> None:
    """BEFORE/ON/SINCE (RFC 3501 §6.4.4) compare the day of INTERNALDATE in the
    zone it was received in; compiled to second bounds, they agree with the
    date arithmetic."""
    rec = MessageRecord(1, 1, frozenset(), ts, tz, 10, 1, bytes(32), b"")
    local = dt.datetime.fromtimestamp(ts + 60 * tz, dt.UTC).date()
    expected = {"BEFORE": local < day, "ON": local == day, "SINCE": local >= day}[op]
    for key in (SearchDate(op, day), SearchAnd((SearchDate(op, day), SearchAll()))):
        hits = search(key, [(1, rec)], None, largest_uid=1)  # type: ignore[arg-type]
        assert bool(hits) == expected
