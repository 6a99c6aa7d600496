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
from mailserver.imap.commands.searching import esearch_response, run_search, uses_modseq
from mailserver.imap.message import Source
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
    modseq = uses_modseq(args.key)
    if modseq:
        session.enable("CONDSTORE")  # RFC 7162 §3.1: a CONDSTORE enabling command
    hits = await run_search(session, view, args)
    needs_headers = any(c.key not in _RECORD_KEYS for c in args.criteria)
    store = session.store

    def build() -> list[int]:
        items = []
        with store.snapshot() as snap:  # one read transaction for every header
            for seq, rec in hits:
                headers = headers_of(snap, rec) if needs_headers else _NO_HEADERS
                if headers is None:
                    continue
                items.append(SortItem(seq, rec.uid if cmd.uid else seq, rec.internal_date,
                                      rec.size, headers))
        return sort_items(items, args.criteria)

    numbers = await asyncio.to_thread(build) if needs_headers and hits else build()
    highest = max(rec.modseq for _, rec in hits) if modseq and hits else None
    if args.return_opts is not None:  # ESORT (RFC 5267 §3.2): one ESEARCH, in sort order
        session.write(esearch_response(cmd.tag, cmd.uid, args.return_opts, numbers, highest,
                                       partial=args.partial, ordered=True))
        return
    line = b"* SORT" + b"".join(b" %d" % n for n in numbers)
    if highest is not None:
        line += b" (MODSEQ %d)" % highest
    session.write(line + b"\r\n")
