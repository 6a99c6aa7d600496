"""Selected-state commands: CHECK, CLOSE, UNSELECT, EXPUNGE (+ UID EXPUNGE),
SEARCH, FETCH, STORE, COPY, MOVE and their UID forms (RFC 3501 §6.4;
RFC 3691 UNSELECT; RFC 4315 UIDPLUS; RFC 6851 MOVE).

Message numbers are resolved against the session's view
(``SelectedMailbox``), never against the store directly: a message expunged
by another session keeps its number until this session is told.  Such a
message has no record any more; FETCH skips it, STORE/COPY ignore it.

FETCH/SEARCH rendering lives in ``mailserver.imap.fetch`` / ``.search``; this
module only decides what to read and when (off the event loop when message
content is needed) and keeps the view's flag cache right.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailserver.errors import MailboxNotFound, UserError
from mailserver.imap import fetch as fetch_render
from mailserver.imap import search as search_eval
from mailserver.imap.message import MessageAccess
from mailserver.imap.selected import SelectedMailbox, compact_uids
from mailserver.imap.state import Reply
from mailserver.protocol.imap.types import (
    Command,
    CopyArgs,
    ExpungeArgs,
    Fetch,
    FetchAtt,
    Search,
    StoreArgs,
)
from mailserver.store.model import MessageRecord

if TYPE_CHECKING:
    from mailserver.imap.session import Session

#: FETCH items answered from the record alone; anything else reads the blob or facts.
_CHEAP_ATTS = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})
#: Messages rendered per worker-thread batch, and the output size that makes
#: us hand the buffered responses to the transport (bounded memory).
_BATCH = 64
_FLUSH_AT = 1 << 20
_CHARSETS = ("US-ASCII", "UTF-8")


def _view(session: Session) -> SelectedMailbox:
    assert session.selected is not None
    return session.selected


def _writable(view: SelectedMailbox) -> None:
    if view.readonly:
        raise UserError("Mailbox is read-only (EXAMINE)", imap_code="READ-ONLY")


# ------------------------------------------------------------ housekeeping


async def check(session: Session, cmd: Command) -> Reply:
    """CHECK (§6.4.1): every change is already synced; acts like NOOP."""
    return Reply("CHECK completed")


async def close(session: Session, cmd: Command) -> Reply:
    """CLOSE (§6.4.2): expunge silently when read-write, then unselect."""
    view = _view(session)
    session.select(None)
    if not view.readonly:
        try:
            await session.store.expunge(view.mailbox_id)
        except MailboxNotFound:
            pass  # deleted meanwhile: nothing left to expunge
    return Reply("CLOSE completed")


async def unselect(session: Session, cmd: Command) -> Reply:
    """UNSELECT (RFC 3691 §2): unselect without expunging."""
    session.select(None)
    return Reply("UNSELECT completed")


async def expunge(session: Session, cmd: Command) -> Reply:
    """EXPUNGE (§6.4.3) and UID EXPUNGE (RFC 4315 §2.1).

    The ``* n EXPUNGE`` responses come from the view's sync after the command,
    together with any made by other sessions.
    """
    view = _view(session)
    _writable(view)
    uids = None
    args = cmd.args
    if cmd.uid:
        assert isinstance(args, ExpungeArgs) and args.uids is not None
        uids = [u for _, u in view.resolve(args.uids, uid=True)]
        if not uids:
            return Reply("UID EXPUNGE completed")
    await session.store.expunge(view.mailbox_id, uids)
    return Reply("UID EXPUNGE completed" if cmd.uid else "EXPUNGE completed")


# ------------------------------------------------------------------ SEARCH


async def search(session: Session, cmd: Command) -> Reply | None:
    """SEARCH / UID SEARCH (§6.4.4, §6.4.8): ``* SEARCH`` lists sequence
    numbers or UIDs.  Charsets: US-ASCII and UTF-8 (``NO [BADCHARSET]``)."""
    view = _view(session)
    args = cmd.args
    assert isinstance(args, Search)
    if args.charset is not None and args.charset.upper() not in _CHARSETS:
        raise UserError("Unsupported charset",
                        imap_code="BADCHARSET (" + " ".join(_CHARSETS) + ")")
    messages = _records(session, view, [(i + 1, u) for i, u in enumerate(view.uids)])
    pairs = [(seq, rec) for seq, rec in messages]

    def run() -> list[tuple[int, int]]:
        return search_eval.search(args.key, pairs, session.store, largest_uid=view.largest_uid)

    if search_eval.needs_content(args.key):
        hits = await asyncio.to_thread(run)
    else:
        hits = run()
    numbers = [u if cmd.uid else s for s, u in hits]
    session.write(b"* SEARCH" + b"".join(b" %d" % n for n in numbers) + b"\r\n")
    return None


def _records(session: Session, view: SelectedMailbox,
             pairs: Sequence[tuple[int, int]]) -> list[tuple[int, MessageRecord]]:
    """``(seq, record)`` for the pairs whose message still exists, in order."""
    recs = {r.uid: r for r in session.store.get_messages(view.mailbox_id,
                                                         [u for _, u in pairs])}
    return [(seq, recs[uid]) for seq, uid in pairs if uid in recs and uid not in view.pending]


# ------------------------------------------------------------------- FETCH


async def fetch(session: Session, cmd: Command) -> Reply | None:
    """FETCH / UID FETCH (§6.4.5, §6.4.8).

    A non-peek body fetch on a read-write mailbox first sets ``\\Seen``
    (store_flags "add", synced) and the response then carries FLAGS
    (§6.4.5).  Items needing message content are rendered in a worker thread
    in batches; responses go to the transport as they reach ``_FLUSH_AT``.
    """
    view = _view(session)
    args = cmd.args
    assert isinstance(args, Fetch)
    pairs = view.resolve(args.seqset, uid=cmd.uid)
    messages = _records(session, view, pairs)
    atts = list(args.atts)
    seen_now: set[int] = set()
    if fetch_render.sets_seen(atts) and not view.readonly:
        unseen = [rec.uid for _, rec in messages if "\\Seen" not in rec.flags]
        if unseen:
            updated, _ = await session.store.store_flags(
                view.mailbox_id, unseen, "add", frozenset({"\\Seen"}))
            fresh = {r.uid: r for r in updated}
            seen_now = set(fresh)
            messages = [(seq, fresh.get(rec.uid, rec)) for seq, rec in messages]
    with_flags = atts + [FetchAtt("FLAGS")]
    wants_flags = any(a.name == "FLAGS" for a in atts)
    cheap = all(a.name in _CHEAP_ATTS for a in atts)

    def render(batch: list[tuple[int, MessageRecord]]) -> list[bytes]:
        out = []
        for seq, rec in batch:
            use = with_flags if rec.uid in seen_now and not wants_flags else atts
            out.append(fetch_render.render_fetch(seq, MessageAccess(session.store, rec), use,
                                                 uid_always=cmd.uid))
        return out

    size = 0
    step = (len(messages) or 1) if cheap else _BATCH
    for start in range(0, len(messages), step):
        batch = messages[start:start + step]
        lines = render(batch) if cheap else await asyncio.to_thread(render, batch)
        for (_, rec), line in zip(batch, lines, strict=True):
            if wants_flags or rec.uid in seen_now:
                view.note_flags(rec.uid, rec.flags)
            session.write(line)
            size += len(line)
        if size >= _FLUSH_AT:
            await session.conn.flush()
            size = 0
    return None


# ------------------------------------------------------------------- STORE


async def store(session: Session, cmd: Command) -> Reply | None:
    """STORE / UID STORE (§6.4.6).  ``\\Recent`` cannot be stored (§2.3.2).

    Without ``.SILENT`` every named message that still exists gets an untagged
    ``FETCH (FLAGS ...)`` with its flags now (UID included for UID STORE).
    The view's cache is updated either way, so the sync does not echo the
    change again (§7.4.1 and RFC 3501's "as if a FETCH of those flags").
    """
    view = _view(session)
    _writable(view)
    args = cmd.args
    assert isinstance(args, StoreArgs)
    pairs = view.live(view.resolve(args.seqset, uid=cmd.uid))
    flags = frozenset(f for f in args.flags if f.lower() != "\\recent")
    if not pairs:
        return None
    updated, _failed = await session.store.store_flags(
        view.mailbox_id, [u for _, u in pairs], args.mode, flags,
        unchangedsince=args.unchangedsince)
    for rec in updated:
        view.note_flags(rec.uid, rec.flags)
    if not args.silent:
        current = _records(session, view, pairs)
        fresh = {r.uid: r for r in updated}
        for seq, rec in current:
            rec = fresh.get(rec.uid, rec)
            view.note_flags(rec.uid, rec.flags)
            session.write(view.flags_response(seq, rec.uid, rec.flags, with_uid=cmd.uid))
    return None


# ------------------------------------------------------------- COPY, MOVE


async def copy(session: Session, cmd: Command) -> Reply | None:
    """COPY / UID COPY (§6.4.7) with COPYUID (RFC 4315 §3)."""
    return await _transfer(session, cmd, move=False)


async def move(session: Session, cmd: Command) -> Reply | None:
    """MOVE / UID MOVE (RFC 6851 §3): COPYUID in an untagged OK, then the
    EXPUNGE responses (from the sync), then the tagged OK (§3.3)."""
    _writable(_view(session))
    return await _transfer(session, cmd, move=True)


async def _transfer(session: Session, cmd: Command, *, move: bool) -> Reply | None:
    view = _view(session)
    args = cmd.args
    assert isinstance(args, CopyArgs) and session.user is not None
    pairs = view.live(view.resolve(args.seqset, uid=cmd.uid))
    uids = [u for _, u in pairs]
    # The destination must exist even when nothing is copied (TRYCREATE, §6.4.7).
    try:
        session.store.get_mailbox(session.user, args.mailbox)
    except MailboxNotFound:
        raise MailboxNotFound("Mailbox does not exist", imap_code="TRYCREATE") from None
    if not uids:
        return None
    op = session.store.move if move else session.store.copy
    try:
        uidvalidity, mapping = await op(view.mailbox_id, uids, session.user, args.mailbox)
    except MailboxNotFound:
        raise MailboxNotFound("Mailbox does not exist", imap_code="TRYCREATE") from None
    if not mapping:
        return None
    code = (f"COPYUID {uidvalidity} {compact_uids(s for s, _ in mapping)} "
            f"{compact_uids(d for _, d in mapping)}")
    if move:
        session.write(f"* OK [{code}] Moved\r\n".encode())
        return None
    return Reply("COPY completed", code=code)
