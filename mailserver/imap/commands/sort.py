"""SORT and UID SORT (RFC 5256 §3; DISPLAYFROM/DISPLAYTO, RFC 5957; ESORT's
RETURN options, RFC 5267 §3.2, and PARTIAL, RFC 9394).

::

    sort      = ["UID" SP] "SORT" SP sort-criteria SP search-criteria
    sort-data = "SORT" *(SP nz-number)

The search part runs as for SEARCH (``searching.run_search``, so ``$`` and
MODSEQ work the same); the keys come from ``protocol.imap.sortkeys``.  Each
matching message's header is read and parsed once per command, in a worker
thread, and only when a criterion needs it (ARRIVAL and SIZE come from the
record).  With a MODSEQ criterion the response ends with ``(MODSEQ n)`` as
SEARCH's does (RFC 7162 §3.1.5 covers SORT too).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mailserver.errors import NotFound
from mailserver.imap.commands.searching import (
    check_update_tag,
    esearch_response,
    run_search,
    start_context,
    uses_modseq,
)
from mailserver.imap.contexts import UpdateContext
from mailserver.imap.message import Source
from mailserver.imap.selected import SelectedMailbox
from mailserver.protocol.imap.sortkeys import SortHeaders, SortItem, sort_items
from mailserver.protocol.imap.types import Command, SortArgs
from mailserver.store.model import MessageRecord

if TYPE_CHECKING:
    from mailserver.imap.session import ImapSession

#: Criteria answered from the record alone.
_RECORD_KEYS = frozenset({"ARRIVAL", "SIZE"})
_NO_HEADERS = SortHeaders()


def headers_of(store: Source, record: MessageRecord) -> SortHeaders | None:
    """The SORT/THREAD header fields of a stored message, ``None`` when its
    content vanished meanwhile (expunged by another session).  The
    per-delivery prefix holds only trace fields, none of which SORT or THREAD
    look at, so the blob alone is parsed.  Blocking (LMDB read): call from a
    worker thread for many messages."""
    try:
        blob = store.get_blob(record.blob_id)
    except NotFound:
        return None
    return SortHeaders.parse(blob)


async def sort(session: ImapSession, cmd: Command) -> None:
    """SORT / UID SORT: ``* SORT`` with the sequence numbers (UIDs for UID
    SORT) of the matching messages in the asked order (RFC 5256 §3);
    ``NO [BADCHARSET]`` for a charset we cannot decode."""
    view = session.selected
    assert view is not None
    args = cmd.args
    assert isinstance(args, SortArgs)
    update = args.return_opts is not None and "UPDATE" in args.return_opts
    if update:
        check_update_tag(view, cmd.tag)  # CONTEXT=SORT, RFC 5267 §4.3
    modseq = uses_modseq(args.key)
    if modseq:
        session.enable("CONDSTORE")  # RFC 7162 §3.1: a CONDSTORE enabling command
    hits = await run_search(session, view, args)
    uids = await sort_uids(session, hits, args)
    numbers = uids if cmd.uid else _seqs(view, uids)
    if update:
        start_context(session, view, UpdateContext(cmd.tag, cmd.uid, args, uids))
    highest = max(rec.modseq for _, rec in hits) if modseq and hits else None
    if args.return_opts is not None:  # ESORT (RFC 5267 §3.2): one ESEARCH, in sort order
        session.write(esearch_response(cmd.tag, cmd.uid, args.return_opts, numbers, highest,
                                       partial=args.partial, ordered=True))
        return
    line = b"* SORT" + b"".join(b" %d" % n for n in numbers)
    if highest is not None:
        line += b" (MODSEQ %d)" % highest
    session.write(line + b"\r\n")


def _seqs(view: SelectedMailbox, uids: list[int]) -> list[int]:
    seq_of = view.seq_of
    return [n for n in map(seq_of, uids) if n is not None]


async def sort_uids(session: ImapSession, hits: list[tuple[int, MessageRecord]],
                    args: SortArgs) -> list[int]:
    """The UIDs of ``hits`` (``(seq, record)`` in sequence order, as
    ``run_search`` returns them) in ``args.criteria``'s order; messages whose
    content vanished meanwhile are left out.  Header fields are read in a
    worker thread, and only when a criterion needs them."""
    needs_headers = any(c.key not in _RECORD_KEYS for c in args.criteria)
    store = session.store

    def build() -> list[int]:
        items = []
        with store.snapshot() as snap:  # one read transaction for every header
            for seq, rec in hits:
                headers = headers_of(snap, rec) if needs_headers else _NO_HEADERS
                if headers is None:
                    continue
                items.append(SortItem(seq, rec.uid, rec.internal_date, rec.size, headers))
        return sort_items(items, args.criteria)

    return await asyncio.to_thread(build) if needs_headers and hits else build()
