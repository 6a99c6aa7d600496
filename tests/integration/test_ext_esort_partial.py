"""ESORT (RFC 5267 §3.2) and PARTIAL (RFC 9394) on the wire: SORT RETURN
answers one ESEARCH in sort order; PARTIAL pages through SEARCH and SORT
results from the first or from the last match."""

from __future__ import annotations

import pytest
from support.wire import RawImap

from mailserver.imap.commands.searching import ordered_set, partial_slice


@pytest.fixture
def box(raw_imap: RawImap) -> RawImap:
    # Subjects in an order that differs from arrival: SORT (SUBJECT) = 3 1 5 2 4.
    for subject in (b"b", b"d", b"a", b"e", b"c"):
        msg = b"Subject: " + subject + b"\r\n\r\nx\r\n"
        raw_imap.ok("a", b"APPEND INBOX {%d+}\r\n" % len(msg) + msg)
    raw_imap.ok("s", "SELECT INBOX")
    return raw_imap


def esearch(lines: list[bytes]) -> bytes:
    (line,) = [x for x in lines if x.startswith(b"* ESEARCH")]
    return line.rstrip(b"\r\n")


def test_capabilities(raw_imap: RawImap) -> None:
    caps = raw_imap.ok("c", "CAPABILITY")[0].split()
    assert b"ESORT" in caps and b"PARTIAL" in caps


def test_esort_return_options(box: RawImap) -> None:
    assert esearch(box.ok("t", "SORT RETURN (MIN MAX COUNT) (SUBJECT) UTF-8 ALL")) == \
        b'* ESEARCH (TAG "t") MIN 3 MAX 4 COUNT 5'
    assert esearch(box.ok("t", "SORT RETURN (ALL) (SUBJECT) UTF-8 ALL")) == \
        b'* ESEARCH (TAG "t") ALL 3,1,5,2,4'
    assert esearch(box.ok("t", "SORT RETURN () (REVERSE SUBJECT) UTF-8 ALL")) == \
        b'* ESEARCH (TAG "t") ALL 4,2,5,1,3'
    out = box.ok("u", "UID SORT RETURN (COUNT) (SUBJECT) UTF-8 UNSEEN")
    assert esearch(out) == b'* ESEARCH (TAG "u") UID COUNT 5'
    # Plain SORT keeps its own response.
    assert box.ok("p", "SORT (SUBJECT) UTF-8 ALL")[0] == b"* SORT 3 1 5 2 4\r\n"


def test_partial(box: RawImap) -> None:
    assert esearch(box.ok("t", "SEARCH RETURN (PARTIAL 2:3) ALL")) == \
        b'* ESEARCH (TAG "t") PARTIAL (2:3 2:3)'
    assert esearch(box.ok("t", "SEARCH RETURN (PARTIAL -1:-2 COUNT) ALL")) == \
        b'* ESEARCH (TAG "t") PARTIAL (-1:-2 4:5) COUNT 5'
    assert esearch(box.ok("t", "SEARCH RETURN (PARTIAL 9:20) ALL")) == \
        b'* ESEARCH (TAG "t") PARTIAL (9:20 NIL)'
    assert esearch(box.ok("t", "SORT RETURN (PARTIAL 1:2) (SUBJECT) UTF-8 ALL")) == \
        b'* ESEARCH (TAG "t") PARTIAL (1:2 3,1)'
    for bad in ("SEARCH RETURN (PARTIAL 1:2 ALL) ALL", "SEARCH RETURN (PARTIAL 0:2) ALL",
                "SEARCH RETURN (PARTIAL 1:-2) ALL", "SEARCH RETURN (PARTIAL) ALL"):
        assert box.cmd("b", bad)[-1].startswith(b"b BAD"), bad


def test_ordered_set() -> None:
    assert ordered_set([3, 1, 5, 6, 7, 2]) == b"3,1,5:7,2"
    assert ordered_set([5, 4, 3]) == b"5,4,3"


def test_partial_slice() -> None:
    nums = list(range(1, 11))
    assert partial_slice(nums, (1, 3)) == [1, 2, 3]
    assert partial_slice(nums, (9, 20)) == [9, 10]
    assert partial_slice(nums, (-1, -3)) == [8, 9, 10]
    assert partial_slice(nums, (-11, -20)) == []
    assert partial_slice(nums, (-10, -20)) == [1]
    assert partial_slice(nums, (-9, -20)) == [1, 2]


def test_partial_alone_with_modseq(box: RawImap) -> None:
    """RETURN (PARTIAL ...) with a MODSEQ criterion used to fail (no MIN or
    MAX picked, then max() of nothing): the MODSEQ is the highest match's."""
    out = box.ok("m", "SEARCH RETURN (PARTIAL 1:2) MODSEQ 1")
    assert esearch(out).startswith(b'* ESEARCH (TAG "m") PARTIAL (1:2 1:2) MODSEQ ')
