"""``fetch_render.render_records`` (FETCH answered from the records alone)
gives byte for byte what the general ``render_planned`` gives, for every plan
of FLAGS, UID, MODSEQ and RFC822.SIZE (RFC 3501 §7.4.2, RFC 7162 §3.1.4.1);
``SequenceSet.names_all`` is true only for sets that name every message."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailserver.imap import fetch_render
from mailserver.imap.message import MessageAccess
from mailserver.protocol.imap.types import FetchAtt, SequenceSet
from mailserver.store.model import MessageRecord

FLAGS = ["\\Seen", "\\Answered", "\\Deleted", "$Junk", "work"]
NAMES = ["FLAGS", "UID", "MODSEQ", "RFC822.SIZE"]

record = st.builds(
    lambda uid, flags, size, modseq: MessageRecord(1, uid, frozenset(flags), 0, 0, size, modseq,
                                                   b"\0" * 32, b""),
    st.integers(1, 2**32 - 2), st.sets(st.sampled_from(FLAGS)), st.integers(0, 10**9),
    st.integers(1, 2**63 - 1))


@given(st.lists(record, max_size=20), st.lists(st.sampled_from(NAMES), min_size=1, max_size=5),
       st.booleans(), st.data())
def test_same_bytes_as_the_general_path(recs, names, uid_always, data) -> None:
    plan = fetch_render.plan_fetch([FetchAtt(n) for n in names], uid_always=uid_always)
    assert fetch_render.record_only(plan)
    messages = list(enumerate(recs, 1))
    recent = data.draw(st.sets(st.sampled_from([r.uid for r in recs]) if recs else st.nothing()))
    quick = fetch_render.render_records(messages, plan, recent)
    general = [
        fetch_render.render_planned(seq, MessageAccess(None, rec), plan,  # type: ignore[arg-type]
                                    rec.flags | {"\\Recent"} if rec.uid in recent else rec.flags)
        for seq, rec in messages]
    assert quick == general


def test_other_items_take_the_general_path() -> None:
    for name in ("INTERNALDATE", "ENVELOPE", "BODYSTRUCTURE"):
        plan = fetch_render.plan_fetch([FetchAtt("FLAGS"), FetchAtt(name)])
        assert not fetch_render.record_only(plan)
    assert not fetch_render.record_only(())


def test_names_all() -> None:
    assert SequenceSet(((1, None),)).names_all()
    assert SequenceSet(((None, 1),)).names_all()
    assert SequenceSet(((5, 9), (1, None))).names_all()
    assert not SequenceSet(((2, None),)).names_all()
    assert not SequenceSet(((1, 100),)).names_all()
    assert not SequenceSet((), saved=True).names_all()
