"""MessageView (mailserver/imap/view.py): the compact UID/flags view of a
selected mailbox, checked against the plain ``list`` + ``dict`` it replaced."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.imap.view import MessageView

SEEN = frozenset({"\\Seen"})
NONE: frozenset[str] = frozenset()
FLAGGED = frozenset({"\\Seen", "\\Flagged"})


def test_lookups_by_uid_and_sequence_number() -> None:
    v = MessageView([3, 7, 10], [SEEN, NONE, FLAGGED])
    assert len(v) == 3 and list(v) == [3, 7, 10]
    assert v.largest == 10
    assert [v.seq_of(u) for u in (3, 7, 10, 4, 0, 11)] == [1, 2, 3, None, None, None]
    assert [v.uid_at(n) for n in (1, 2, 3)] == [3, 7, 10]
    assert v.get(7) == NONE and v.get(8) is None
    assert 10 in v and 9 not in v and "10" not in v
    assert list(v.flag_sets()) == [SEEN, NONE, FLAGGED]


@pytest.mark.parametrize("seq", [0, 4, -1])
def test_uid_at_out_of_range(seq: int) -> None:
    with pytest.raises(IndexError):
        MessageView([3, 7, 10], [SEEN, NONE, FLAGGED]).uid_at(seq)


def test_empty_view() -> None:
    v = MessageView()
    assert len(v) == 0 and v.largest == 0 and v.seq_of(1) is None
    assert v.between(0, 2**32 - 1) == []


def test_set_only_changes_known_uids() -> None:
    v = MessageView([1, 2], [NONE, NONE])
    assert v.set(2, SEEN) and v.get(2) == SEEN
    assert not v.set(5, SEEN) and 5 not in v and len(v) == 2


def test_append_must_ascend() -> None:
    v = MessageView([5], [NONE])
    v.append(6, SEEN)
    for uid in (6, 3):
        with pytest.raises(ValueError):
            v.append(uid, SEEN)
    assert list(v) == [5, 6]


def test_uids_are_32_bit() -> None:
    """RFC 3501 §2.3.1.1: a UID is a 32-bit value; the largest one fits."""
    v = MessageView([1], [NONE])
    v.append(2**32 - 1, SEEN)
    assert v.largest == 2**32 - 1 and v.seq_of(2**32 - 1) == 2


def test_parallel_inputs_must_match() -> None:
    with pytest.raises(ValueError):
        MessageView([1, 2], [NONE])


def test_set_with_sequence_hint() -> None:
    v = MessageView([4, 9], [NONE, NONE])
    assert v.set(9, SEEN, 2) and v.get(9) == SEEN
    assert v.set(4, FLAGGED, 2) and v.get(4) == FLAGGED and v.get(9) == SEEN  # wrong hint
    assert not v.set(5, SEEN, 1) and not v.set(5, SEEN, 99)


def test_pairs() -> None:
    assert MessageView([4, 9, 12], [NONE] * 3).pairs([1, 3]) == [(1, 4), (3, 12)]


def test_remove_and_between() -> None:
    v = MessageView([1, 2, 4, 8, 16], [NONE, SEEN, NONE, SEEN, FLAGGED])
    v.remove({2, 8, 99})
    assert list(v) == [1, 4, 16] and list(v.flag_sets()) == [NONE, NONE, FLAGGED]
    assert v.seq_of(16) == 3
    assert v.between(1, 16) == [4, 16] and v.between(0, 3) == [1] and v.between(4, 4) == []


def test_equal_flag_sets_are_shared() -> None:
    """Sets built apart (a STORE's result) are stored once, not per message."""
    v = MessageView()
    for uid in range(1, 50):
        v.append(uid, frozenset(["\\Seen", "$Label" + "1"]))
    assert len({id(f) for f in v.flag_sets()}) == 1
    v.set(3, frozenset({"\\Seen"}) | {"$Label1"})
    assert len({id(f) for f in v.flag_sets()}) == 1


_FLAG_SETS = st.sampled_from([NONE, SEEN, FLAGGED, frozenset({"$Junk"})])
_UID = st.integers(min_value=1, max_value=60)
_OPS = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(min_value=1, max_value=5), _FLAG_SETS),
    st.tuples(st.just("set"), _UID, _FLAG_SETS, st.none() | st.integers(-1, 40)),
    st.tuples(st.just("remove"), st.frozensets(_UID, max_size=6)),
    st.tuples(st.just("lookup"), _UID),
    st.tuples(st.just("between"), _UID, _UID),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(start=st.lists(_FLAG_SETS, max_size=10), ops=_OPS)
def test_matches_list_and_dict_model(start: list[frozenset[str]],
                                     ops: list[tuple[object, ...]]) -> None:
    """Random append/set/remove/lookup against the ``list`` + ``dict`` model."""
    uids = [2 * i + 1 for i in range(len(start))]
    model_uids = list(uids)
    model_flags = dict(zip(uids, start, strict=True))
    v = MessageView(uids, start)
    for op in ops:
        match op:
            case ("append", int(step), frozenset() as fl):
                uid = (model_uids[-1] if model_uids else 0) + step
                v.append(uid, fl)
                model_uids.append(uid)
                model_flags[uid] = fl
            case ("set", int(uid), frozenset() as fl, hint):
                # A sequence-number hint, right or wrong, never misplaces flags.
                assert isinstance(hint, int | None)
                assert v.set(uid, fl, hint) == (uid in model_flags)
                if uid in model_flags:
                    model_flags[uid] = fl
            case ("remove", frozenset() as dead):
                v.remove(dead)
                model_uids = [u for u in model_uids if u not in dead]
                for u in dead:
                    model_flags.pop(u, None)
            case ("lookup", int(uid)):
                assert (uid in v) == (uid in model_flags)
                assert v.get(uid) == model_flags.get(uid)
                want = model_uids.index(uid) + 1 if uid in model_flags else None
                assert v.seq_of(uid) == want
            case ("between", int(low), int(high)):
                assert v.between(low, high) == [u for u in model_uids if low < u <= high]
        assert list(v) == model_uids and len(v) == len(model_uids)
        assert list(v.flag_sets()) == [model_flags[u] for u in model_uids]
        assert v.largest == (model_uids[-1] if model_uids else 0)
        for n, uid in enumerate(model_uids, 1):
            assert v.uid_at(n) == uid
