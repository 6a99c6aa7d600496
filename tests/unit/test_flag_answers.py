"""``flag_answers.flag_program``: a flag-only SEARCH program judged on one
message's flags matches exactly as ``search_eval`` does on its record
(RFC 3501 §6.4.4; keywords case-insensitive, \\Recent from the session)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailserver.imap.flag_answers import flag_program, names_recent
from mailserver.imap.search_eval import search
from mailserver.protocol.imap.types import (
    SearchAll,
    SearchAnd,
    SearchFlag,
    SearchKey,
    SearchNot,
    SearchOr,
    SearchSize,
    SearchUid,
    SequenceSet,
)
from mailserver.store.model import MessageRecord

STORED = ["\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "\\Draft", "$Label", "$label",
          "Junk", "$Other"]
KEYS = ["\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "\\Draft", "\\Recent", "$LABEL",
        "junk", "$none"]

leaves = st.builds(SearchFlag, st.sampled_from(KEYS), st.booleans()) | st.just(SearchAll())
keys: st.SearchStrategy[SearchKey] = st.recursive(
    leaves,
    lambda inner: (st.builds(SearchNot, inner)
                   | st.builds(SearchOr, inner, inner)
                   | st.builds(SearchAnd, st.lists(inner, min_size=1, max_size=3).map(tuple))),
    max_leaves=6)


def record(uid: int, flags: frozenset[str]) -> MessageRecord:
    return MessageRecord(mailbox_id=1, uid=uid, flags=flags, internal_date=0, tz_offset=0,
                         size=10, modseq=1, blob_id=b"\0" * 32, prefix=b"")


@given(keys, st.lists(st.frozensets(st.sampled_from(STORED)), min_size=1, max_size=8),
       st.sets(st.integers(1, 8)))
def test_same_verdicts_as_search_eval(key: SearchKey, flag_sets: list[frozenset[str]],
                                      recent: set[int]) -> None:
    test = flag_program(key)
    assert test is not None
    messages = [(i, record(i, f)) for i, f in enumerate(flag_sets, 1)]
    want = search(key, messages, None, largest_uid=len(messages),  # type: ignore[arg-type]
                  recent=recent)
    got = [(i, i) for i, f in enumerate(flag_sets, 1) if test(f, i in recent)]
    assert got == want
    if not names_recent(key):
        # Without \Recent in the program, whether a message is recent is moot.
        assert all(test(f, True) == test(f, False) for f in flag_sets)


def test_other_keys_take_the_records_path() -> None:
    flag = SearchFlag("\\Seen")
    for key in (SearchSize(1, larger=True), SearchUid(SequenceSet(((1, None),))),
                SearchAnd((flag, SearchSize(1, larger=True))),
                SearchOr(flag, SearchNot(SearchSize(1, larger=False)))):
        assert flag_program(key) is None
