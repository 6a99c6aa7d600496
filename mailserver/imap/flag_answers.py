"""SEARCH on flags and FETCH FLAGS answered from the session's view (issue #13 §3).

Design notes
------------
The selected session already holds every message's flags: its
``MessageView`` (``view.py``) keeps the UIDs in an ``array`` and, parallel to
them, one pointer per message to an interned flag set.  That *is* a compact
per-mailbox flag index, and it is in this process's memory, so a flag-only
``SEARCH`` (UNSEEN, FLAGGED, KEYWORD x, NOT DELETED, NEW, their ANDs and ORs)
and ``FETCH seq-set (FLAGS)`` / ``(UID FLAGS)`` are answered from it instead of
from the store's ``MessageRecord`` of every message: no record is read or
built, whatever the size of the store's records.  The alternative, a flag
index (or bitmaps) kept in LMDB by every write that changes flags, would need
each writer (deliver, APPEND, STORE, COPY/MOVE, EXPUNGE, on both store
backends) to keep it right, and a read of it would still cost a decode per
message; the view is kept right by the session already, for ``sync``.

Why the view answers correctly
------------------------------
RFC 3501 §6.4.4/§6.4.5 (RFC 9051 the same) answer a SEARCH or FETCH with the
mailbox's state, and another session's STORE committed before this command
must show in it (the tests for cross-session visibility).  The view holds
what this session was last told, not the store's state; the two differ only
by what was committed since the view's ``modseq``, which
``SelectedMailbox.unreported`` reads: one field when nothing was committed,
else the changed records only (``changes_since``, a MODSEQ index).  Its
invariant: a record *not* written since ``modseq`` has exactly the flags the
view holds (``selected.py``; every path that changes the view's flags does so
with a record at least as new as ``modseq``).  So the answer is the view
with ``changed`` laid over it and ``gone`` (expunged, reported or not) left
out: the same messages and flags as the records would give, at a cost
proportional to the mailbox's message count in C-speed passes (``map`` over
the flag pointers with one verdict per *distinct* flag set, ``compress``)
plus the changes, not to the records' size.

* ``\\Recent`` is session state (RFC 3501 §2.3.2), judged from the view's
  ``recent`` UIDs, never stored; a program naming it (RECENT, NEW, OLD)
  looks only those UIDs up one by one.
* Keywords compare case-insensitively (RFC 3501 §2.3.2), as in
  ``search_eval``.
* Messages that arrived after the view's last sync are not the view's (no
  sequence number yet): SEARCH and FETCH leave them out, as the records path
  does; the ``sync`` after the command reports them.
* FETCH FLAGS tells the client the flags now, so the view notes them (as
  the records path does): ``changed`` entries inside the fetched set are
  written into the view first and every line is rendered from the view.
  SEARCH changes nothing.
* No event-loop stall: the passes run in slices of ``SEARCH_SLICE`` messages
  and FETCH writes ``FETCH_SLICE`` lines at a time, yielding to the loop
  (and flushing to the client) in between; nothing else touches the view
  meanwhile (one command at a time per session).
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Callable, Sequence
from itertools import compress
from typing import TYPE_CHECKING

from mailserver.imap.selected import SelectedMailbox
from mailserver.protocol.imap.response import flag_list
from mailserver.protocol.imap.types import (
    FetchAtt,
    SearchAll,
    SearchAnd,
    SearchFlag,
    SearchKey,
    SearchNot,
    SearchOr,
)

if TYPE_CHECKING:
    from mailserver.imap.session import ImapSession

#: Messages per slice of a SEARCH pass (~1-2 ms each), and FETCH lines per
#: write (~200 KiB): between two, other sessions run.
SEARCH_SLICE = 1 << 16
FETCH_SLICE = 4096
_RECENT = frozenset({"\\Recent"})

#: ``flags, recent -> match``.
FlagTest = Callable[[frozenset[str], bool], bool]


# ------------------------------------------------------------------- SEARCH


def flag_program(key: SearchKey) -> FlagTest | None:
    """``key`` as a test of one message's stored flags and whether it is
    ``\\Recent`` for the session, when the key needs nothing else (flags,
    ALL, NOT, OR, AND of those); None otherwise.  Same matching as
    ``search_eval`` (RFC 3501 §6.4.4)."""
    match key:
        case SearchAll():
            return lambda flags, recent: True
        case SearchFlag(flag="\\Recent", present=present):
            return lambda flags, recent: recent == present
        case SearchFlag(flag=flag, present=present) if flag.startswith("\\"):
            if present:
                return lambda flags, recent: flag in flags
            return lambda flags, recent: flag not in flags
        case SearchFlag(flag=flag, present=present):
            folded = flag.casefold()
            return lambda flags, recent: any(f.casefold() == folded for f in flags) == present
        case SearchNot(key=inner):
            test = flag_program(inner)
            if test is None:
                return None
            return lambda flags, recent: not test(flags, recent)
        case SearchOr(left=left, right=right):
            a, b = flag_program(left), flag_program(right)
            if a is None or b is None:
                return None
            return lambda flags, recent: a(flags, recent) or b(flags, recent)
        case SearchAnd(keys=keys):
            tests = [flag_program(k) for k in keys]
            if any(t is None for t in tests):
                return None
            ready = [t for t in tests if t is not None]
            return lambda flags, recent: all(t(flags, recent) for t in ready)
    return None


def names_recent(key: SearchKey) -> bool:
    """Whether ``key`` tests ``\\Recent`` anywhere (RECENT, NEW, OLD)."""
    match key:
        case SearchFlag(flag=flag):
            return flag == "\\Recent"
        case SearchNot(key=inner):
            return names_recent(inner)
        case SearchOr(left=left, right=right):
            return names_recent(left) or names_recent(right)
        case SearchAnd(keys=keys):
            return any(names_recent(k) for k in keys)
    return False


class _Verdicts(dict[tuple[frozenset[str], bool], bool]):
    """The test's verdict per distinct ``(flags, recent)``, computed on first
    lookup, so ``map(verdicts.__getitem__, ...)`` runs at C speed."""

    def __init__(self, test: FlagTest) -> None:
        super().__init__()
        self._test = test

    def __missing__(self, key: tuple[frozenset[str], bool]) -> bool:
        hit = self[key] = self._test(*key)
        return hit


class _Plain(dict[frozenset[str], bool]):
    """``_Verdicts`` for a program that does not test ``\\Recent``: keyed
    by the flag set alone (no tuple per message)."""

    def __init__(self, test: FlagTest) -> None:
        super().__init__()
        self._test = test

    def __missing__(self, flags: frozenset[str]) -> bool:
        hit = self[flags] = self._test(flags, False)
        return hit


async def search(view: SelectedMailbox, key: SearchKey, test: FlagTest, *,
                 want_uids: bool = True) -> tuple[array[int], array[int]]:
    """The messages of the view the flag-only program ``test`` (of ``key``,
    from ``flag_program``) matches now, as parallel ``(seqs, uids)`` arrays
    in sequence order (``uids`` left empty unless ``want_uids``).  Arrays,
    not lists: a million matches freed at once as int objects would hold
    the event loop for ~30 ms.  Raises MailboxNotFound when the mailbox is
    gone."""
    changed, gone = view.unreported()
    uids, flags = view.messages.columns()
    count = len(uids)
    verdicts = _Verdicts(test)
    plain = _Plain(test)
    recent = view.recent if names_recent(key) else set()
    mask: list[bool] = []
    for start in range(0, count, SEARCH_SLICE):
        sel_flags = flags[start:start + SEARCH_SLICE]
        if recent:
            is_recent = map(recent.__contains__, uids[start:start + SEARCH_SLICE])
            mask.extend(map(verdicts.__getitem__, zip(sel_flags, is_recent, strict=True)))
        else:
            mask.extend(map(plain.__getitem__, sel_flags))
        if start + SEARCH_SLICE < count:
            await asyncio.sleep(0)
    # The messages whose flags now are not the view's: few.
    index = view.messages.index_of
    for uid, now in changed.items():
        i = index(uid)
        if i is not None:
            mask[i] = verdicts[now, uid in recent]
    for uid in gone:
        i = index(uid)
        if i is not None:
            mask[i] = False
    seqs = array("I")
    hit_uids = array("I")
    for start in range(0, count, SEARCH_SLICE):
        part = mask[start:start + SEARCH_SLICE]
        seqs.extend(compress(range(start + 1, start + 1 + len(part)), part))
        if want_uids:
            hit_uids.extend(compress(uids[start:start + SEARCH_SLICE], part))
        if start + SEARCH_SLICE < count:
            await asyncio.sleep(0)
    return seqs, hit_uids


# -------------------------------------------------------------------- FETCH


#: The FETCH items answered from the view, as ``%`` formats (RFC 3501 §7.4.2).
_FORMATS = {"FLAGS": b"FLAGS %s", "UID": b"UID %d"}


def view_plan(plan: Sequence[tuple[bytes, FetchAtt]]) -> bool:
    """Whether the FETCH ``plan`` (``fetch_render.plan_fetch``) asks for
    nothing but FLAGS and UID, which the view holds."""
    return bool(plan) and all(att.name in _FORMATS for _, att in plan)


class _Rendered(dict[tuple[frozenset[str], bool], bytes]):
    """``flag-list`` per distinct ``(flags, recent)``, ``\\Recent`` added
    when ``recent`` (it is never stored), made on first lookup."""

    def __init__(self) -> None:
        super().__init__()
        self._plain = (_RenderedAs(False), _RenderedAs(True))

    def __missing__(self, key: tuple[frozenset[str], bool]) -> bytes:
        flags, recent = key
        out = self[key] = self._plain[recent][flags]
        return out

    def plain(self, recent: bool) -> _RenderedAs:
        """The same keyed by the flag set alone, for messages all (not)
        ``\\Recent``."""
        return self._plain[recent]

    def flag_sets(self) -> set[frozenset[str]]:
        """Every flag set rendered so far."""
        return set(self._plain[False]) | set(self._plain[True])


class _RenderedAs(dict[frozenset[str], bytes]):
    """``flag-list`` per flag set, with ``\\Recent`` added or not."""

    def __init__(self, recent: bool) -> None:
        super().__init__()
        self._recent = recent

    def __missing__(self, flags: frozenset[str]) -> bytes:
        out = self[flags] = flag_list(flags | _RECENT if self._recent else flags)
        return out


async def fetch(session: ImapSession, view: SelectedMailbox,
                plan: Sequence[tuple[bytes, FetchAtt]], seqs: Sequence[int]) -> None:
    """Write ``* n FETCH (...)`` for the message sequence numbers ``seqs``
    (ascending, in 1..EXISTS) with a ``view_plan`` plan, the flags as they
    are now; messages without a record any more are skipped (RFC 3501
    §7.4.1: their EXPUNGE waits).  New keywords are announced before the
    lines that show them (§7.2.6).  Raises MailboxNotFound when the mailbox
    is gone."""
    changed, gone = view.unreported()
    names = [att.name for _, att in plan]
    wants_flags = "FLAGS" in names
    messages = view.messages
    skip: set[int] = set()
    for uid in gone:
        i = messages.index_of(uid)
        if i is not None:
            skip.add(i + 1)
    if wants_flags and changed:
        # Told now, so noted now: the lines below render from the view.
        wanted = None if isinstance(seqs, range) else set(seqs)
        first, last = (seqs[0], seqs[-1]) if seqs else (1, 0)
        for uid, now in changed.items():
            i = messages.index_of(uid)
            if i is not None and first <= i + 1 <= last and (wanted is None or i + 1 in wanted):
                messages.set(uid, now, i + 1)
    uids, flags = messages.columns()
    shown = _Rendered()
    fmt = b"* %d FETCH (" + b" ".join(_FORMATS[n] for n in names) + b")\r\n"
    for start in range(0, len(seqs), FETCH_SLICE):
        part = seqs[start:start + FETCH_SLICE]
        if skip:
            part = [s for s in part if s not in skip]
        lines = _lines(fmt, names, part, uids, flags, view.recent, shown)
        if wants_flags:
            for line in view.announce(shown.flag_sets()):
                session.write(line)
        session.write(lines)
        if start + FETCH_SLICE < len(seqs):
            await session.conn.flush()  # at once unless the client is slow to read
            await asyncio.sleep(0)


def _lines(fmt: bytes, names: list[str], seqs: Sequence[int], uids: Sequence[int],
           flags: list[frozenset[str]], recent: set[int], shown: _Rendered) -> bytes:
    """The FETCH lines of ``seqs`` (ascending), ``fmt`` filled with the items
    ``names``, joined: every step a C call (``map``, ``zip``, ``bytes.__mod__``)."""
    if isinstance(seqs, range):
        lo, hi = seqs.start - 1, seqs.stop - 1
        sel_flags: Sequence[frozenset[str]] = flags[lo:hi]
        sel_uids: Sequence[int] = uids[lo:hi]
    else:
        sel_flags = [flags[s - 1] for s in seqs]
        sel_uids = [uids[s - 1] for s in seqs]
    width = len(names) + 1
    # The values of every line one after the other, filled column by column
    # by slice assignment: no tuple per line (nor garbage for the collector).
    values: list[object] = [None] * (width * len(seqs))
    values[0::width] = seqs
    for at, name in enumerate(names, 1):
        if name == "UID":
            values[at::width] = sel_uids
            continue
        is_recent = list(map(recent.__contains__, sel_uids)) if recent else []
        marked = is_recent.count(True)
        if marked in (0, len(sel_flags)):  # none or all \Recent (the usual): no pairs
            values[at::width] = list(map(shown.plain(marked > 0).__getitem__, sel_flags))
        else:
            values[at::width] = list(map(shown.__getitem__,
                                         zip(sel_flags, is_recent, strict=True)))
    # One format for the whole slice: twice as fast as one per line.
    return (fmt * len(seqs)) % tuple(values)
