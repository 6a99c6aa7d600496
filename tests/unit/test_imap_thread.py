"""THREAD's pure parts (RFC 5256 §4): msg-id parsing, ORDEREDSUBJECT, the
REFERENCES steps 1-6 and the thread-list syntax."""

from __future__ import annotations

from mailserver.protocol.imap.sortkeys import ascii_casemap, base_subject
from mailserver.protocol.imap.thread import (
    Node,
    ThreadItem,
    ordered_subject,
    parse_msg_ids,
    references,
    references_of,
    render,
)


def msg(seq: int, subject: str = "", mid: str | None = None, refs: str | None = None,
        irt: str | None = None, date: int | None = None) -> ThreadItem:
    """A message as the server would describe it; dates default to ``seq``."""
    base, reply = base_subject(subject)
    ids = parse_msg_ids(mid)
    return ThreadItem(seq, seq, seq * 100 if date is None else date, ascii_casemap(base), reply,
                      ids[0] if ids else None, references_of(refs, irt))


def refs(*items: ThreadItem) -> bytes:
    return render(references(items))


def osub(*items: ThreadItem) -> bytes:
    return render(ordered_subject(items))


# ------------------------------------------------------------------ msg-ids


def test_parse_msg_ids() -> None:
    assert parse_msg_ids("<a@b> <c@d>\r\n\t<e@f>") == ["a@b", "c@d", "e@f"]
    assert parse_msg_ids("(comment <x@y>) <a@b>") == ["a@b"]
    # White space inside an id (obsolete CFWS) goes, as Dovecot does it.
    assert parse_msg_ids("junk <a b@c> <ok@x>") == ["ab@c", "ok@x"]
    # Not a msg-id without "@" and both halves (RFC 5322 §3.6.4): nothing to link.
    assert parse_msg_ids("<1234> <@x> <y@> <ok@x>") == ["ok@x"]
    assert parse_msg_ids(None) == [] and parse_msg_ids("no ids") == []
    # §4 step 1: In-Reply-To only when References has no id, and only its first.
    assert references_of("<a@b> <c@d>", "<z@z>") == ("a@b", "c@d")
    assert references_of("garbage", "<y@y> <z@z>") == ("y@y",)
    assert references_of(None, None) == ()


# ------------------------------------------------------------------ render


def test_render_rfc_example() -> None:
    """RFC 5256 §4: ``(2)(3 6 (4 23)(44 7 96))``."""
    def n(num: int, *children: Node) -> Node:
        return Node(ThreadItem(num, num, 0), list(children))

    roots = [n(2), n(3, n(6, n(4, n(23)), n(44, n(7, n(96)))))]
    assert render(roots) == b"(2)(3 6 (4 23)(44 7 96))"
    assert render([Node(None, [n(3), n(5)])]) == b"((3)(5))"
    assert render([]) == b""


# ---------------------------------------------------------------- REFERENCES


def test_chain_and_siblings() -> None:
    a = msg(1, "topic", "<a@x>")
    b = msg(2, "Re: topic", "<b@x>", "<a@x>")
    c = msg(3, "Re: topic", "<c@x>", "<a@x> <b@x>")
    d = msg(4, "Re: topic", "<d@x>", "<a@x>")
    assert refs(a, b, c) == b"(1 2 3)"
    assert refs(a, b, c, d) == b"(1 (2 3)(4))"


def test_in_reply_to_fallback_and_truncated_references() -> None:
    a = msg(1, "s", "<a@x>")
    b = msg(2, "Re: s", "<b@x>", irt="<a@x>")
    c = msg(3, "Re: s", "<c@x>", "<b@x>")  # truncated: only the last id
    assert refs(a, b, c) == b"(1 2 3)"


def test_dummy_parents() -> None:
    # Two replies to a message we do not have: a dummy at the root keeps them.
    b = msg(2, "Re: lost", "<b@x>", "<gone@x>")
    c = msg(3, "Re: lost", "<c@x>", "<gone@x>")
    assert refs(b, c) == b"((2)(3))"
    # A dummy with one child is replaced by it (step 4B).
    assert refs(b) == b"(2)"
    # A dummy in the middle of a chain is spliced out.
    a = msg(1, "x", "<a@x>")
    d = msg(4, "Re: x", "<d@x>", "<a@x> <gone@x>")
    assert refs(a, d) == b"(1 4)"


def test_children_ordered_by_sent_date_then_sequence() -> None:
    a = msg(1, "t", "<a@x>", date=100)
    late = msg(2, "Re: t", "<b@x>", "<a@x>", date=900)
    early = msg(3, "Re: t", "<c@x>", "<a@x>", date=500)
    tie = msg(4, "Re: t", "<d@x>", "<a@x>", date=500)
    assert refs(a, late, early, tie) == b"(1 (3)(4)(2))"
    # Threads too: by their root's date, a dummy by its first child's.
    x = msg(5, "other", "<e@x>", date=50)
    assert refs(a, late, early, tie, x) == b"(5)(1 (3)(4)(2))"


def test_subject_merging() -> None:
    a = msg(1, "hello", "<a@x>")
    reply = msg(2, "Re: hello", "<r@x>")  # no References: joined by subject
    assert refs(a, reply) == b"(1 2)"
    assert refs(reply, a) == b"(1 2)"
    # Two originals with the same subject get a dummy parent (step 5D).
    b = msg(3, "Hello", "<b@x>")
    assert refs(a, b) == b"((1)(3))"
    # The reply goes under the first original (step 5D), then the dummy comes.
    assert refs(a, b, reply) == b"((1 2)(3))"
    # Empty subjects are never merged.
    assert refs(msg(1, "", "<a@x>"), msg(2, "Re:", "<b@x>")) == b"(1)(2)"


def test_dummy_roots_with_same_subject_merge() -> None:
    b = msg(1, "Re: s", "<b@x>", "<p@x>")
    c = msg(2, "Re: s", "<c@x>", "<p@x>")
    d = msg(3, "Re: s", "<d@x>", "<q@x>")
    e = msg(4, "Re: s", "<e@x>", "<q@x>")
    assert refs(b, c, d, e) == b"((1)(2)(3)(4))"


def test_duplicate_message_ids_and_missing_ids() -> None:
    a = msg(1, "one", "<same@x>")
    dup = msg(2, "two", "<same@x>")
    child = msg(3, "Re: one", "<c@x>", "<same@x>")
    assert refs(a, dup, child) == b"(1 3)(2)"
    assert refs(msg(1, "p"), msg(2, "q")) == b"(1)(2)"


def test_reference_loops_terminate() -> None:
    a = msg(1, "a", "<a@x>", "<b@x>")
    b = msg(2, "b", "<b@x>", "<a@x>")
    c = msg(3, "c", "<c@x>", "<c@x>")  # refers to itself
    d = msg(4, "d", "<d@x>", "<e@x> <d@x> <e@x>")
    out = refs(a, b, c, d)
    numbers = sorted(int(x) for x in out.replace(b"(", b" ").replace(b")", b" ").split())
    assert numbers == [1, 2, 3, 4]


def test_deep_chain_does_not_recurse() -> None:
    n = 20_000
    items = [msg(1, "deep", "<m1@x>")]
    for i in range(2, n + 1):
        items.append(msg(i, "Re: deep", f"<m{i}@x>", f"<m{i - 1}@x>"))
    assert refs(*items) == b"(" + b" ".join(b"%d" % i for i in range(1, n + 1)) + b")"
    # A wide and deep binary-ish tree: each message answers the one two back.
    wide = [msg(1, "w", "<w1@x>"), msg(2, "Re: w", "<w2@x>", "<w1@x>")]
    for i in range(3, 5000):
        wide.append(msg(i, "Re: w", f"<w{i}@x>", f"<w{i - 2}@x>"))
    assert refs(*wide).count(b"(") > 1


# ------------------------------------------------------------ ORDEREDSUBJECT


def test_ordered_subject() -> None:
    items = [
        msg(1, "beta", date=300),
        msg(2, "Re: alpha", date=200),
        msg(3, "alpha", date=100),
        msg(4, "Re: beta", date=50),
        msg(5, "RE: ALPHA", date=400),
        msg(6, "gamma", date=350),
    ]
    # alpha: 3 (100) < 2 (200) < 5 (400); beta: 4 (50) < 1 (300); threads by first date.
    assert osub(*items) == b"(4 1)(3 (2)(5))(6)"
    assert osub() == b""
