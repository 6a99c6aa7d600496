"""SEARCH and UID SEARCH (RFC 3501 §6.4.4, §6.4.8) with ESEARCH result
options (RFC 4731), SEARCHRES (RFC 5182: RETURN (SAVE) and ``$``), the MODSEQ
criterion and result (RFC 7162 §3.1.5) and ``\\Recent`` (RFC 3501 §2.3.2:
RECENT, NEW, OLD judged from the session's view).

::

    search          = "SEARCH" [search-return-opts] SP search-program
    search-return-opts = SP "RETURN" SP "(" [search-return-opt
                         *(SP search-return-opt)] ")"          ; RFC 4731 §7
    search-return-opt = "MIN" / "MAX" / "ALL" / "COUNT" / "SAVE"   ; SAVE: RFC 5182 §3
    esearch-response = "ESEARCH" [search-correlator] [SP "UID"]
                       *(SP search-return-data)
    search-correlator = SP "(" "TAG" SP tag-string ")"

Evaluation is ``mailserver.imap.search_eval``; this module decides where it runs
(a worker thread when message content is needed) and how the result is told.
A program of flags alone (UNSEEN, FLAGGED, KEYWORD, NEW..., their NOT, OR
and AND) is answered from the session's view instead, no record read
(``mailserver.imap.flag_answers``).  A long ``* SEARCH`` line is written in
slices, other sessions running in between.

SEARCHRES (RFC 5182 §2.1): SAVE keeps the result as UIDs in the view
(``SelectedMailbox.saved``), so it follows expunges and serves both the
sequence-number and the UID forms of ``$``.  With MIN and/or MAX but not ALL
only those are kept; with SAVE alone no ESEARCH response is sent.  A SAVE
search that fails (NO) leaves ``$`` empty.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Sequence
from itertools import compress
from operator import ne
from typing import TYPE_CHECKING

from mailserver.errors import MailboxNotFound, ProtocolSyntaxError, UserError
from mailserver.imap import flag_answers, search_eval
from mailserver.imap.commands.messages import all_records
from mailserver.imap.contexts import UpdateContext, tell_noupdate
from mailserver.imap.selected import SelectedMailbox, compact_uids
from mailserver.protocol.imap.response import quote
from mailserver.protocol.imap.types import (
    Command,
    Search,
    SearchKey,
    SearchModseq,
    SortArgs,
    ThreadArgs,
    search_leaves,
)
from mailserver.store.model import MessageRecord

if TYPE_CHECKING:
    from mailserver.imap.session import ImapSession

_CHARSETS = ("US-ASCII", "UTF-8")
#: Return options that ask for no result data (RFC 5182; RFC 5267 §4.2, §4.3).
NO_DATA = frozenset({"SAVE", "CONTEXT", "UPDATE"})
#: Work estimated above this (microseconds) runs in a worker thread; below it
#: the hop (a thread hand-over and a loop wake-up, and the GIL passed back and
#: forth) costs about as much as the work, and other sessions wait no longer
#: than a few milliseconds.
ON_LOOP_US = 3000
#: Numbers of a ``* SEARCH`` line formatted per slice (~3 ms), and the count
#: above which an ESEARCH response is made in a worker thread.
_NUMBERS_SLICE = 1 << 15
_THREAD_AT = 1 << 15


def uses_modseq(key: SearchKey) -> bool:
    """True when the program has a MODSEQ criterion (RFC 7162 §3.1.5: the
    result then carries the highest MODSEQ of the matching messages)."""
    return any(isinstance(k, SearchModseq) for k in search_leaves(key))


def check_charset(args: Search | SortArgs | ThreadArgs) -> None:
    """Raise ``NO [BADCHARSET]`` for a charset we cannot decode (RFC 3501 §6.4.4)."""
    if args.bad_charset or (args.charset is not None and args.charset.upper() not in _CHARSETS):
        raise UserError("Unsupported charset",
                        imap_code="BADCHARSET (" + " ".join(_CHARSETS) + ")")


async def run_search(session: ImapSession, view: SelectedMailbox,
                     args: Search | SortArgs | ThreadArgs) -> list[tuple[int, MessageRecord]]:
    """The messages of the view the program matches, as ``(seq, record)`` in
    sequence order.  Raises ``NO [BADCHARSET]`` for a charset we cannot decode.
    ``args`` needs ``key``, ``charset`` and ``bad_charset`` only (SORT and
    THREAD pass theirs)."""
    check_charset(args)
    messages = all_records(session, view)
    recent = frozenset(view.recent)

    saved = view.saved

    def run() -> list[tuple[int, MessageRecord]]:
        # One read transaction for every message the search opens.
        with session.store.snapshot() as snap:
            return search_eval.search_records(args.key, messages, snap,
                                              largest_uid=view.largest_uid,
                                              recent=recent, saved=saved)

    if search_eval.estimate_us(args.key, messages) > ON_LOOP_US:
        return await asyncio.to_thread(run)
    return run()  # cheaper than the hop to a thread and back


async def search(session: ImapSession, cmd: Command) -> None:
    """SEARCH / UID SEARCH: ``* SEARCH`` lists sequence numbers or UIDs, and
    ``(MODSEQ n)`` after them when the program used MODSEQ; with ``RETURN
    (...)`` one ``* ESEARCH`` answers instead (RFC 4731 §3.1)."""
    view = session.selected
    assert view is not None
    args = cmd.args
    assert isinstance(args, Search)
    save = args.return_opts is not None and "SAVE" in args.return_opts
    update = args.return_opts is not None and "UPDATE" in args.return_opts
    if update:
        check_update_tag(view, cmd.tag)
    if save:
        view.saved = frozenset()  # RFC 5182 §2.1: a failed SAVE search leaves $ empty
    modseq = uses_modseq(args.key)
    if modseq:
        session.enable("CONDSTORE")  # RFC 7162 §3.1: a CONDSTORE enabling command
    highest = None
    seqs: Sequence[int]
    uids: Sequence[int]
    test = None if modseq else flag_answers.flag_program(args.key)
    if test is not None:
        # Flags alone: answered from the view, no record read (flag_answers.py).
        check_charset(args)
        try:
            seqs, uids = await flag_answers.search(view, args.key, test,
                                                   want_uids=cmd.uid or save or update)
        except MailboxNotFound:
            seqs = uids = array("I")  # the sync after the command ends the session
    else:
        hits = await run_search(session, view, args)
        seqs = [seq for seq, _ in hits]
        uids = [rec.uid for _, rec in hits]
        if modseq:
            highest = returned_modseq(args.return_opts, [rec.modseq for _, rec in hits])
    numbers = uids if cmd.uid else seqs
    if update:
        start_context(session, view, UpdateContext(cmd.tag, cmd.uid, args, list(uids)))
    if save:
        assert args.return_opts is not None
        view.saved = saved_result(args.return_opts, uids)
        if args.return_opts == ("SAVE",):
            return  # RFC 5182 §2.1: SAVE alone gives no ESEARCH response
    if args.return_opts is None:
        tail = b" (MODSEQ %d)\r\n" % highest if highest is not None else b"\r\n"
        await write_numbers(session, b"* SEARCH", numbers, tail)
        return
    if len(numbers) > _THREAD_AT:
        # A long ALL set is a Python loop over the numbers: in a thread, the
        # loop runs other sessions between its GIL turns (no long stall).
        line = await asyncio.to_thread(esearch_response, cmd.tag, cmd.uid, args.return_opts,
                                       numbers, highest, partial=args.partial, ascending=True)
    else:
        line = esearch_response(cmd.tag, cmd.uid, args.return_opts, numbers, highest,
                                partial=args.partial, ascending=True)
    session.write(line)


async def write_numbers(session: ImapSession, head: bytes, numbers: Sequence[int],
                        tail: bytes) -> None:
    """``head``, then `` n`` for each of ``numbers``, then ``tail``: one
    response line (``* SEARCH 1 2 3``), written ``_NUMBERS_SLICE`` numbers at
    a time with other sessions let run in between (a 1,000,000-number line
    takes ~40 ms to format)."""
    step = _NUMBERS_SLICE
    if len(numbers) <= step:
        session.write(head + _numbers(numbers) + tail)
        return
    session.write(head)
    for start in range(0, len(numbers), step):
        session.write(_numbers(numbers[start:start + step]))
        await session.conn.flush()
        await asyncio.sleep(0)
    session.write(tail)


def _numbers(numbers: Sequence[int]) -> bytes:
    """`` n`` for each number: one ``bytes.__mod__`` (twice as fast as a
    ``str`` per number and a join)."""
    return (b" %d" * len(numbers)) % tuple(numbers)


def check_update_tag(view: SelectedMailbox, tag: str) -> None:
    """RFC 5267 §4.3: UPDATE with the tag of a command whose updates still
    run "SHALL result in ... a BAD response"."""
    if tag in view.contexts.by_tag:
        raise ProtocolSyntaxError("Tag reuse: an updating search has this tag")


def start_context(session: ImapSession, view: SelectedMailbox, ctx: UpdateContext) -> None:
    """Keep ``ctx`` updating (RFC 5267 §4.3), or refuse with ``* NO
    [NOUPDATE]`` when the session holds ``MAX_CONTEXTS`` (§4.3.1)."""
    if view.contexts.full():
        session.write(tell_noupdate(ctx.tag))
        return
    view.contexts.add(ctx, view.state_key)


def returned_modseq(opts: tuple[str, ...] | None, modseqs: list[int]) -> int | None:
    """The MODSEQ to report for a search with a MODSEQ criterion (RFC 7162
    §3.1.5; RFC 4731 §3.2): with MIN or MAX alone, that message's; with MIN
    and MAX and neither ALL nor COUNT, the higher of the two; otherwise (plain
    SEARCH, ALL, COUNT, ``RETURN ()``) the highest of every match.  ``modseqs``
    in sequence order; None when nothing matched."""
    if not modseqs:
        return None
    wanted = set(opts or ()) - NO_DATA
    if wanted and not wanted & {"ALL", "COUNT"}:
        picked = []
        if "MIN" in wanted:
            picked.append(modseqs[0])
        if "MAX" in wanted:
            picked.append(modseqs[-1])
        if picked:  # PARTIAL alone picks neither
            return max(picked)
    return max(modseqs)


def saved_result(opts: tuple[str, ...], uids: Sequence[int]) -> frozenset[int]:
    """What SAVE keeps (RFC 5182 §2.1): only the minimum and/or maximum when
    MIN and/or MAX are asked without ALL, else every match (SAVE alone, with
    ALL, or with COUNT).  ``uids`` ascending."""
    if uids and ("MIN" in opts or "MAX" in opts) and "ALL" not in opts:
        keep = set()
        if "MIN" in opts:
            keep.add(uids[0])
        if "MAX" in opts:
            keep.add(uids[-1])
        return frozenset(keep)
    return frozenset(uids)


def esearch_response(tag: str, uid: bool, opts: tuple[str, ...], numbers: Sequence[int],
                     highest: int | None, *, partial: tuple[int, int] | None = None,
                     ordered: bool = False, ascending: bool = False) -> bytes:
    """``* ESEARCH (TAG "t") [UID] ...`` (RFC 4731 §3.1).

    ``RETURN ()`` means ALL (§3.1).  MIN, MAX and ALL are left out when
    nothing matched; COUNT is always given when asked.  ``MODSEQ`` (RFC 7162
    §3.1.5) follows when the program used it and something matched.
    CONTEXT is a hint only and UPDATE asks for no data of its own (RFC 5267
    §4.2, §4.3): ``RETURN (UPDATE)`` gives the correlator alone.
    ``partial``: PARTIAL's range (RFC 9394 §3.1), answered as ``PARTIAL
    (range set-or-NIL)``.  ``ordered``: ``numbers`` are in a SORT's order
    (ESORT, RFC 5267 §3.2): MIN and MAX are then the first and the last in
    that order and ALL keeps it, as Dovecot answers.  ``ascending``:
    ``numbers`` ascend already (a SEARCH's, in sequence order): nothing is
    sorted again, and ALL costs a few steps per run (``ascending_set``).
    """
    in_order = ordered or ascending
    wanted = (set(opts) - {"SAVE", "CONTEXT"}) or {"ALL"}
    out = b"* ESEARCH (TAG " + quote(tag) + b")"
    if uid:
        out += b" UID"
    if numbers:
        if "MIN" in wanted:
            out += b" MIN %d" % (numbers[0] if in_order else min(numbers))
        if "MAX" in wanted:
            out += b" MAX %d" % (numbers[-1] if in_order else max(numbers))
        if "ALL" in wanted:
            if ascending:
                out += b" ALL " + ascending_set(numbers)
            else:
                out += b" ALL " + (ordered_set(numbers) if ordered
                                   else compact_uids(sorted(numbers)).encode())
    if partial is not None:
        picked = partial_slice(numbers if in_order else sorted(numbers), partial)
        first, last = partial
        rng = b"%d:%d" % (first, last)
        shown = (ascending_set if ascending else ordered_set)(picked) if picked else b"NIL"
        out += b" PARTIAL (" + rng + b" " + shown + b")"
    if "COUNT" in wanted:
        out += b" COUNT %d" % len(numbers)
    if numbers and highest is not None:
        out += b" MODSEQ %d" % highest
    return out + b"\r\n"


def ascending_set(numbers: Sequence[int]) -> bytes:
    """Strictly ascending ``numbers`` as a sequence-set, runs as ranges:
    what ``compact_uids`` gives, in steps per run rather than per number.
    From a run's first number, the run goes on while ``numbers[j] -
    numbers[i] == j - i`` (true for a prefix of ``j``, the numbers being
    ascending integers): galloping then bisecting finds its end in
    O(log length), so ``ALL 1:1000000`` costs ~40 steps."""
    parts: list[bytes] = []
    n = len(numbers)
    i = 0
    while i < n:
        first = numbers[i]
        lo, step = i, 1  # lo: known in the run
        while lo + step < n and numbers[lo + step] - first == lo + step - i:
            lo += step
            step *= 2
        hi = min(lo + step, n)  # not in the run (or the end)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if numbers[mid] - first == mid - i:
                lo = mid
            else:
                hi = mid
        parts.append(b"%d" % first if lo == i else b"%d:%d" % (first, numbers[lo]))
        i = lo + 1
    return b",".join(parts)


def ordered_set(numbers: Sequence[int]) -> bytes:
    """``numbers`` as a sequence-set that keeps their order (ESORT, RFC 5267
    §3.2): only ascending runs ``n, n+1, ...`` become ranges.  The run
    boundaries are found by C-level passes over ``_RUN_SLICE`` numbers at a
    time (so a worker thread running this gives the GIL back in between),
    then each run costs one step."""
    n = len(numbers)
    if not n:
        return b""
    starts = [0]
    for lo in range(1, n, _RUN_SLICE):
        hi = min(lo + _RUN_SLICE, n)
        # i starts a run when numbers[i] != numbers[i - 1] + 1.
        starts.extend(compress(range(lo, hi), map(ne, numbers[lo:hi],
                                                  map(_PLUS_ONE, numbers[lo - 1:hi - 1]))))
    ends = [i - 1 for i in starts[1:]] + [n - 1]
    return b",".join(b"%d" % numbers[i] if i == j else b"%d:%d" % (numbers[i], numbers[j])
                     for i, j in zip(starts, ends, strict=True))


_RUN_SLICE = 1 << 16
_PLUS_ONE = (1).__add__


def partial_slice(numbers: Sequence[int], partial: tuple[int, int]) -> Sequence[int]:
    """The matches at positions ``partial`` (RFC 9394 §3.1): ``(a, b)``
    1-based from the first, or ``(-a, -b)`` counted from the last (-1 is the
    last); positions past the end select nothing."""
    first, last = partial
    if first > 0:
        return numbers[first - 1:last]
    n = len(numbers)
    # -1:-100: the last 100, in the result's own order.
    start, stop = max(n + last, 0), n + first + 1
    return numbers[start:stop] if stop > 0 else []
