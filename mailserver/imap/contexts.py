"""Updating search and sort contexts (RFC 5267 §4.3: CONTEXT=SEARCH, CONTEXT=SORT).

::

    search-return-opt =/ "UPDATE" / "CONTEXT"                   ; §5
    ret-data-addto      = "ADDTO" SP "(" context-position SP sequence-set
                          *(SP context-position SP sequence-set) ")"
    ret-data-removefrom = "REMOVEFROM" SP "(" context-position SP sequence-set
                          *(SP context-position SP sequence-set) ")"
    context-position  = number      ; 0 for SEARCH result additions
    command-select   =/ "CANCELUPDATE" 1*(SP quoted)

Design notes
------------
A ``SEARCH``/``SORT`` with ``RETURN (UPDATE ...)`` leaves an ``UpdateContext``
in the selected view (``SelectedMailbox.contexts``): the tag, UID or sequence
form, the arguments, and the result as UIDs (in sort order for SORT).  The
result is kept as UIDs so expunges do not renumber it; sequence numbers are
computed when a response is written.

* After every sync of the view (each command, each IDLE wake-up) the session
  runs the program again when the view moved (``UpdateContexts.stale``) and
  sends the difference as one ``* ESEARCH (TAG "t") [UID] [REMOVEFROM (...)]
  [ADDTO (...)]`` per context (``changes``).  That is after ``EXISTS``, so
  the sequence numbers of new messages are valid (§4.3.3).
* An expunge is taken out of every context *before* its ``EXPUNGE`` (or
  ``VANISHED``) is written, while its sequence number still names it
  (§4.3.4): ``expunged``, called by ``SelectedMailbox`` itself.
* SEARCH contexts use position 0 and sets in mailbox order (§4.3.3, §4.3.4
  RECOMMENDED).  SORT contexts give real positions.  Every SORT key is fixed
  for a message's life (header fields, size, arrival) and ties fall back to
  mailbox order, which expunges keep: messages that stay in the result keep
  their relative order, so removals then insertions turn the old order into
  the new one (``sorted_diff``).
* There is no interaction with the other return options (§4.3): updates
  cover every match, whatever MIN, MAX or PARTIAL the command asked.
* A context ends with the view (another SELECT, CLOSE, UNSELECT: §4.3 "when
  the mailbox is no longer selected") or by CANCELUPDATE (§4.3.5).  At most
  ``MAX_CONTEXTS`` per session; beyond that ``* NO [NOUPDATE "tag"]``
  (§4.3.1) and the other return options are still honoured.

Only sessions that asked for UPDATE pay: one search per context per change
of the mailbox.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mailserver.protocol.imap.response import quote
from mailserver.protocol.imap.seqset import compact
from mailserver.protocol.imap.types import Search, SortArgs

#: Updating contexts one session may hold (§4.3.1: "at least one ... SHOULD
#: provide more").
MAX_CONTEXTS = 8

#: ``(position, uid)`` pairs in the order they are applied (§4.3.2).
Updates = list[tuple[int, int]]


@dataclass(slots=True)
class UpdateContext:
    """One updating context: ``tag`` of the searching command, ``uid`` when
    it was UID SEARCH/UID SORT (updates then list UIDs, §4.3.2), ``args``
    the command's arguments, ``uids`` the current result (ascending for a
    SEARCH, in sort order for a SORT)."""

    tag: str
    uid: bool
    args: Search | SortArgs
    uids: list[int] = field(default_factory=list)

    @property
    def sorted(self) -> bool:
        """A SORT context (real positions), not a SEARCH one (position 0)."""
        return isinstance(self.args, SortArgs)


class UpdateContexts:
    """The updating contexts of one selected view, by tag, in creation order."""

    __slots__ = ("by_tag", "_seen")

    def __init__(self) -> None:
        self.by_tag: dict[str, UpdateContext] = {}
        #: The view's state (``SelectedMailbox.state_key``) the results were
        #: computed at; another value means "search again".
        self._seen: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.by_tag)

    def full(self) -> bool:
        """No room for another context (§4.3.1: answer NOUPDATE)."""
        return len(self.by_tag) >= MAX_CONTEXTS

    def add(self, ctx: UpdateContext, state: tuple[int, ...]) -> None:
        """Start updating ``ctx``, whose result was computed at ``state``
        (the others keep theirs: they may still have to catch up)."""
        if not self.by_tag:
            self._seen = state
        self.by_tag[ctx.tag] = ctx

    def cancel(self, tags: Iterable[str]) -> list[str]:
        """CANCELUPDATE (§4.3.5): drop the contexts of ``tags``; the tags
        that had none are returned (and nothing is dropped then)."""
        tags = list(tags)
        unknown = [t for t in tags if t not in self.by_tag]
        if not unknown:
            for t in tags:
                del self.by_tag[t]
        return unknown

    def stale(self, state: tuple[int, ...]) -> bool:
        """The view moved since the results were computed."""
        return bool(self.by_tag) and state != self._seen

    def mark(self, state: tuple[int, ...]) -> None:
        """The results are current at ``state``."""
        self._seen = state

    def expunged(self, gone: set[int], seq_of: Callable[[int], int | None]) -> list[bytes]:
        """``REMOVEFROM`` responses for messages about to be reported expunged
        (``gone``: UIDs), to send before the ``EXPUNGE``/``VANISHED`` lines
        while ``seq_of`` still numbers the messages (§4.3.4)."""
        out = []
        for ctx in self.by_tag.values():
            if not gone.intersection(ctx.uids):
                continue
            new = [u for u in ctx.uids if u not in gone]
            removed = (sorted_diff(ctx.uids, new)[0] if ctx.sorted
                       else [(0, u) for u in ctx.uids if u in gone])
            ctx.uids = new
            line = render(ctx, removed, [], seq_of)
            if line:
                out.append(line)
        return out

    def changes(self, ctx: UpdateContext, new: list[int],
                seq_of: Callable[[int], int | None]) -> bytes | None:
        """Replace ``ctx``'s result by ``new`` (UIDs, ascending or in sort
        order) and return the ESEARCH response telling the difference, None
        when there is none."""
        if new == ctx.uids:
            return None
        if ctx.sorted:
            removed, added = sorted_diff(ctx.uids, new)
        else:
            removed, added = search_diff(ctx.uids, new)
        ctx.uids = new
        return render(ctx, removed, added, seq_of)


def search_diff(old: list[int], new: list[int]) -> tuple[Updates, Updates]:
    """Removals and additions of a SEARCH context, position 0, ascending
    (§4.3.3, §4.3.4)."""
    olds, news = set(old), set(new)
    return ([(0, u) for u in old if u not in news], [(0, u) for u in new if u not in olds])


def sorted_diff(old: list[int], new: list[int]) -> tuple[Updates, Updates]:
    """Removals and additions turning the ordered ``old`` into ``new``,
    applied in order (§4.3.2): each removal's position counts on the list
    as the earlier removals left it; each insertion's is its final position,
    in ascending order.  Assumes the elements kept keep their relative order
    (see the module notes)."""
    olds, news = set(old), set(new)
    removed: Updates = []
    kept = 0
    for u in old:
        if u in news:
            kept += 1
        else:
            removed.append((kept + 1, u))
    added = [(i + 1, u) for i, u in enumerate(new) if u not in olds]
    return removed, added


def render(ctx: UpdateContext, removed: Updates, added: Updates,
           seq_of: Callable[[int], int | None]) -> bytes | None:
    """``* ESEARCH (TAG "t") [UID] REMOVEFROM (...) ADDTO (...)``: removals
    first, as they apply first.  Runs continuing each other share one
    ``position set`` pair.  Messages no longer in the view are left out of a
    sequence-number context (they have no number)."""
    if not ctx.uid:
        removed = _numbered(removed, seq_of)
        added = _numbered(added, seq_of)
    if not removed and not added:
        return None
    out = b"* ESEARCH (TAG " + quote(ctx.tag) + b")"
    if ctx.uid:
        out += b" UID"
    if removed:
        out += b" REMOVEFROM (" + _pairs(removed, removal=True) + b")"
    if added:
        out += b" ADDTO (" + _pairs(added, removal=False) + b")"
    return out + b"\r\n"


def _numbered(updates: Updates, seq_of: Callable[[int], int | None]) -> Updates:
    out = []
    for pos, uid in updates:
        seq = seq_of(uid)
        if seq is not None:
            out.append((pos, seq))
    return out


def _pairs(updates: Updates, *, removal: bool) -> bytes:
    """``position set`` pairs: consecutive updates join one group when they
    continue it (a removal at the same position, an insertion right after
    the previous one, or position 0)."""
    groups: list[tuple[int, list[int]]] = []
    for pos, n in updates:
        if groups:
            start, values = groups[-1]
            follows = start if removal or start == 0 else start + len(values)
            if pos == follows:
                values.append(n)
                continue
        groups.append((pos, [n]))
    return b" ".join(b"%d %s" % (pos, compact(values).encode()) for pos, values in groups)


def tell_noupdate(tag: str) -> bytes:
    """``* NO [NOUPDATE "tag"]`` (§4.3.1): no updates for that command."""
    return b"* NO [NOUPDATE " + quote(tag) + b"] Too many updating contexts\r\n"
