"""Selected-state commands: CHECK, CLOSE, UNSELECT, EXPUNGE (+ UID EXPUNGE),
SEARCH, FETCH, STORE, COPY, MOVE and their UID forms (RFC 3501 §6.4;
RFC 3691 UNSELECT; RFC 4315 UIDPLUS; RFC 6851 MOVE).

Message numbers are resolved against the session's view
(``SelectedMailbox``), never against the store directly: a message expunged
by another session keeps its number until this session is told.  Such a
message has no record any more; FETCH skips it, STORE/COPY ignore it.

FETCH/SEARCH rendering lives in ``mailserver.imap.fetch_render`` / ``.search_eval``; this
module only decides what to read and when (off the event loop when message
content is needed) and keeps the view's flag cache right.  A FETCH of FLAGS
and/or UID alone (a client's sync, ``FETCH 1:* (FLAGS)``) is answered from
the view, no record read (``mailserver.imap.flag_answers``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailserver.errors import Cannot, MailboxNotFound, ProtocolSyntaxError, UserError
from mailserver.imap import fetch_render, flag_answers
from mailserver.imap.message import MessageAccess
from mailserver.imap.selected import SelectedMailbox, compact_uids
from mailserver.imap.state import TaggedOk
from mailserver.protocol.imap.types import (
    Command,
    CopyArgs,
    ExpungeArgs,
    Fetch,
    FetchAtt,
    StoreArgs,
)
from mailserver.store import codec
from mailserver.store.junk_writes import Training
from mailserver.store.model import MessageRecord, WriteSpan

if TYPE_CHECKING:
    from mailserver.imap.session import ImapSession

#: FETCH items answered from the record alone; anything else reads the blob or facts.
_CHEAP_ATTS = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})
#: Items answered from the facts alone (sliced out, no part tree built).
_FACTS_ATTS = frozenset({"ENVELOPE", "BODY", "BODYSTRUCTURE"})
#: Messages rendered per worker-thread batch, and the output size that makes
#: us hand the buffered responses to the transport (bounded memory).
_BATCH = 64
_FLUSH_AT = 1 << 20
#: Messages per slice of a FETCH answered from the records alone (~200 KiB).
_SLICE = 4096
#: A FETCH estimated to take longer than this (microseconds) renders in worker
#: threads; a shorter one renders on the event loop, where it costs less than
#: the hop to a thread and back (see ``searching.ON_LOOP_US``).
_ON_LOOP_US = 3000
#: Rough costs of rendering, microseconds: per message, per facts read, per KiB
#: of message content copied into a literal (measured on the corpus).
_US_PER_MESSAGE = 4
_US_PER_FACTS = 10
_US_PER_KIB = 2
_CHARSETS = ("US-ASCII", "UTF-8")
_RECENT = frozenset({"\\Recent"})


def _view(session: ImapSession) -> SelectedMailbox:
    assert session.selected is not None
    return session.selected


def _writable(view: SelectedMailbox) -> None:
    if view.readonly:
        raise UserError("Mailbox is read-only (EXAMINE)", imap_code="READ-ONLY")


# ------------------------------------------------------------ housekeeping


async def check(session: ImapSession, cmd: Command) -> TaggedOk:
    """CHECK (§6.4.1): every change is already synced; acts like NOOP."""
    return TaggedOk("CHECK completed")


async def close(session: ImapSession, cmd: Command) -> TaggedOk:
    """CLOSE (§6.4.2): expunge silently when read-write, then unselect."""
    view = _view(session)
    session.select(None)
    if not view.readonly:
        try:
            await session.store.expunge(view.mailbox_id)
        except MailboxNotFound:
            pass  # deleted meanwhile: nothing left to expunge
    return TaggedOk("CLOSE completed")


async def unselect(session: ImapSession, cmd: Command) -> TaggedOk:
    """UNSELECT (RFC 3691 §2): unselect without expunging."""
    session.select(None)
    return TaggedOk("UNSELECT completed")


async def expunge(session: ImapSession, cmd: Command) -> TaggedOk:
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
            return _expunged(session, "UID EXPUNGE completed")
    await session.store.expunge(view.mailbox_id, uids)
    return _expunged(session, "UID EXPUNGE completed" if cmd.uid else "EXPUNGE completed")


def _expunged(session: ImapSession, text: str) -> TaggedOk:
    """The tagged OK of EXPUNGE: with CONDSTORE on it carries the mailbox's
    HIGHESTMODSEQ (RFC 7162 §3.2.10 example; §3.1.2.1)."""
    view = session.selected
    if view is None or not view.condstore:
        return TaggedOk(text)
    try:
        modseq = session.store.get_mailbox_by_id(view.mailbox_id).highestmodseq
    except MailboxNotFound:
        return TaggedOk(text)
    return TaggedOk(text, code=f"HIGHESTMODSEQ {modseq}")


def records(session: ImapSession, view: SelectedMailbox,
            pairs: Sequence[tuple[int, int]],
            after: WriteSpan | None = None) -> list[tuple[int, MessageRecord]]:
    """``(seq, record)`` for the pairs whose message still exists, in order:
    the store's current records (``Store.current_records``, a cache kept up to
    date by MODSEQ), or right after the command's own write ``after`` the
    records as of that write (``Store.records_since_write``, no read).  A
    mailbox deleted meanwhile has none."""
    try:
        if after is None:
            recs = session.store.current_records(view.mailbox_id)
        else:
            recs = session.store.records_since_write(after)
    except MailboxNotFound:
        return []
    pending = view.pending
    get = recs.get
    out = []
    for seq, uid in pairs:
        rec = get(uid)
        if rec is not None and uid not in pending:
            out.append((seq, rec))
    return out


def all_records(session: ImapSession, view: SelectedMailbox) -> list[tuple[int, MessageRecord]]:
    """``records`` for every message of the view (SEARCH, SORT, THREAD), in
    one pass over its UIDs: no ``(seq, uid)`` list built first."""
    try:
        recs = session.store.current_records(view.mailbox_id)
    except MailboxNotFound:
        return []
    pending = view.pending
    get = recs.get
    out: list[tuple[int, MessageRecord]] = []
    append = out.append
    if pending:
        for seq, uid in enumerate(view.messages, 1):
            rec = get(uid)
            if rec is not None and uid not in pending:
                append((seq, rec))
    else:
        for seq, uid in enumerate(view.messages, 1):
            rec = get(uid)
            if rec is not None:
                append((seq, rec))
    return out


# ------------------------------------------------------------------- FETCH


async def fetch(session: ImapSession, cmd: Command) -> TaggedOk | None:
    """FETCH / UID FETCH (§6.4.5, §6.4.8) with CHANGEDSINCE and VANISHED
    (RFC 7162 §3.1.4.1, §3.2.6).

    A non-peek body fetch on a read-write mailbox first sets ``\\Seen``
    (store_flags "add", synced) and the response then carries FLAGS
    (§6.4.5; with CONDSTORE on, UID and MODSEQ too, RFC 7162 §3.1).  Items
    needing message content are rendered in a worker thread in batches;
    responses go to the transport as they reach ``_FLUSH_AT``.
    """
    view = _view(session)
    args = cmd.args
    assert isinstance(args, Fetch)
    atts = list(args.atts)
    if args.vanished and "QRESYNC" not in session.enabled:
        raise ProtocolSyntaxError("VANISHED requires ENABLE QRESYNC")  # RFC 7162 §3.2.6
    if args.changedsince is not None or any(a.name == "MODSEQ" for a in atts):
        session.enable("CONDSTORE")  # RFC 7162 §3.1: a CONDSTORE enabling command
    # ``1:*`` (a client's sync) skips the (seq, uid) list of every message.
    whole = args.seqset.names_all() and len(view.messages) > 0
    pairs = [] if whole else view.resolve(args.seqset, uid=cmd.uid)
    if args.vanished:
        assert args.changedsince is not None
        _vanished_earlier(session, view, args)
    if args.changedsince is None:
        plan = fetch_render.plan_fetch(atts, uid_always=cmd.uid)
        if flag_answers.view_plan(plan):
            # FLAGS and UID only: from the view, no record read (flag_answers.py).
            seqs = range(1, len(view.messages) + 1) if whole else [seq for seq, _ in pairs]
            try:
                await flag_answers.fetch(session, view, plan, seqs)
            except MailboxNotFound:
                pass  # the sync after the command ends the session
            return None
    messages = all_records(session, view) if whole else records(session, view, pairs)
    if args.changedsince is not None:
        since = args.changedsince
        messages = [(seq, rec) for seq, rec in messages if rec.modseq > since]
        if not any(a.name == "MODSEQ" for a in atts):
            atts.append(FetchAtt("MODSEQ"))  # RFC 7162 §3.1.4.1: implied
    seen_now: set[int] = set()
    wants_flags = any(a.name == "FLAGS" for a in atts)
    if fetch_render.sets_seen(atts) and not view.readonly:
        unseen = [rec.uid for _, rec in messages if "\\Seen" not in rec.flags]
        if unseen:
            updated, _, _ = await session.store.store_flags(
                view.mailbox_id, unseen, "add", frozenset({"\\Seen"}))
            fresh = {r.uid: r for r in updated}
            seen_now = set(fresh)
            messages = [(seq, fresh.get(rec.uid, rec)) for seq, rec in messages]
    if wants_flags or seen_now:  # RFC 3501 §7.2.6: keywords told before they are shown
        for line in view.announce(rec.flags for _, rec in messages):
            session.write(line)
    extra = [FetchAtt("FLAGS")]
    if view.condstore:
        extra += [FetchAtt("UID"), FetchAtt("MODSEQ")]
    with_flags = atts + extra
    cheap = all(a.name in _CHEAP_ATTS for a in atts)

    plain = fetch_render.plan_fetch(atts, uid_always=cmd.uid)
    flagged = fetch_render.plan_fetch(with_flags, uid_always=cmd.uid)
    recent = view.recent

    def render(batch: list[tuple[int, MessageRecord]]) -> list[bytes]:
        out = []
        planned = fetch_render.render_planned
        with session.store.snapshot() as snap:  # one read transaction per batch
            for seq, rec in batch:
                uid = rec.uid
                flags = rec.flags | _RECENT if uid in recent else rec.flags
                out.append(planned(seq, MessageAccess(snap, rec),
                                   flagged if uid in seen_now else plain, flags))
        return out

    if not seen_now and fetch_render.record_only(plain):
        await _fetch_records(session, view, messages, plain, note=wants_flags)
        return None
    size = 0
    on_loop = cheap or _estimate_us(atts, messages) <= _ON_LOOP_US
    step = (len(messages) or 1) if on_loop else _BATCH
    for start in range(0, len(messages), step):
        batch = messages[start:start + step]
        lines = render(batch) if on_loop else await asyncio.to_thread(render, batch)
        for (seq, rec), line in zip(batch, lines, strict=True):
            if wants_flags or rec.uid in seen_now:
                view.note_flags(rec.uid, rec.flags, seq)
            session.write(line)
            size += len(line)
        if size >= _FLUSH_AT:
            await session.conn.flush()
            size = 0
    return None


async def _fetch_records(session: ImapSession, view: SelectedMailbox,
                         messages: Sequence[tuple[int, MessageRecord]],
                         plan: tuple[tuple[bytes, FetchAtt], ...], *, note: bool) -> None:
    """FETCH of a ``record_only`` plan on the event loop, in slices (each
    handed to the transport before the next is made: bounded memory),
    noting the flags told (``note``) in the view as the general path does."""
    told = view.messages.set
    recent = view.recent
    for start in range(0, len(messages), _SLICE):
        part = messages[start:start + _SLICE]
        if note:
            for seq, rec in part:
                told(rec.uid, rec.flags, seq)
        session.write(b"".join(fetch_render.render_records(part, plan, recent)))
        if start + _SLICE < len(messages):
            await session.conn.flush()  # at once unless the client is slow to read
            await asyncio.sleep(0)  # other sessions run between slices (no long stall)


def _estimate_us(atts: Sequence[FetchAtt], messages: Sequence[tuple[int, MessageRecord]]) -> int:
    """A rough upper bound of the time to render ``atts`` for ``messages``."""
    names = {a.name for a in atts} - _CHEAP_ATTS
    if any(a.name == "BODY" and a.section is not None for a in atts) or names - _FACTS_ATTS:
        octets = sum(r.size for _, r in messages)  # sections and RFC822*: content is read
        return (_US_PER_MESSAGE + _US_PER_FACTS) * len(messages) + _US_PER_KIB * octets // 1024
    return (_US_PER_MESSAGE + (_US_PER_FACTS if names else 0)) * len(messages)


def _vanished_earlier(session: ImapSession, view: SelectedMailbox, args: Fetch) -> None:
    """``* VANISHED (EARLIER) uids``: the UIDs of the set expunged after
    CHANGEDSINCE (RFC 7162 §3.2.6), exact because the store forgets none."""
    assert args.changedsince is not None
    gone = session.store.changes_since(view.mailbox_id, args.changedsince).expunged
    if not gone:
        return
    largest = max(view.largest_uid, gone[-1])
    hit = [u for u in gone if args.seqset.contains(u, largest) and u not in view.messages]
    if hit:
        session.write(b"* VANISHED (EARLIER) " + compact_uids(hit).encode() + b"\r\n")


# ------------------------------------------------------------------- STORE


def _would_change(session: ImapSession, view: SelectedMailbox, uids: list[int], mode: str,
                  flags: frozenset[str]) -> list[int] | None:
    """The UIDs among ``uids`` whose flags the STORE changes, judged on the
    committed records now (``current_records``): a STORE that changes nothing
    for a message is the same whether it runs now or in the writer, so only
    the others go to the writer (``STORE 1:* +FLAGS`` on a big mailbox, run
    again, writes nothing).  None when the records cannot tell (invalid
    flags, deleted mailbox): the writer then judges all, and raises."""
    try:
        wanted = codec.normalize_flags(flags)
        recs = session.store.current_records(view.mailbox_id)
    except (Cannot, MailboxNotFound):
        return None
    verdict: dict[frozenset[str], bool] = {}
    out = []
    for uid in uids:
        rec = recs.get(uid)
        if rec is None:
            continue  # expunged meanwhile: the writer would skip it too
        old = rec.flags
        change = verdict.get(old)
        if change is None:
            if mode == "add":
                change = not wanted <= old
            elif mode == "remove":
                change = not wanted.isdisjoint(old)
            else:
                change = wanted != old
            verdict[old] = change
        if change:
            out.append(uid)
    return out


async def store(session: ImapSession, cmd: Command) -> TaggedOk | None:
    """STORE / UID STORE (§6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3).
    ``\\Recent`` cannot be stored (§2.3.2).

    Without ``.SILENT`` every named message that still exists gets an untagged
    ``FETCH (FLAGS ...)`` with its flags now (UID included for UID STORE).
    With CONDSTORE on, those responses carry UID and MODSEQ, and a message
    whose flags changed gets ``FETCH (UID MODSEQ)`` even with ``.SILENT``
    (§3.1.3); messages failing UNCHANGEDSINCE get no FETCH and are listed in
    ``[MODIFIED set]`` (sequence numbers, or UIDs for UID STORE).
    The view's cache is updated either way, so the sync does not echo the
    change again (§7.4.1 and RFC 3501's "as if a FETCH of those flags").
    """
    view = _view(session)
    _writable(view)
    args = cmd.args
    assert isinstance(args, StoreArgs)
    if args.unchangedsince is not None:
        session.enable("CONDSTORE")
    pairs = view.live(view.resolve(args.seqset, uid=cmd.uid))
    flags = frozenset(f for f in args.flags if f.lower() != "\\recent")
    if not pairs:
        return None
    targets: list[int] | None = None  # None: every named message
    if args.unchangedsince is None:
        targets = _would_change(session, view, [u for _, u in pairs], args.mode, flags)
    span: WriteSpan | None = None
    updated: list[MessageRecord] = []
    failed: list[int] = []
    if targets is None or targets:
        # $Junk / $NotJunk set: the user's verdict, trained in the same commit.
        lowered = {f.lower() for f in flags}
        teach: JunkTeaching | None = None
        if args.mode in ("add", "set") and (_JUNK_FLAG in lowered or _NOT_JUNK_FLAG in lowered):
            wanted = None if targets is None else set(targets)
            teach = _teaching(session, [r for _, r in records(session, view, pairs, None)
                                        if wanted is None or r.uid in wanted],
                              _JUNK_FLAG in lowered)
        updated, failed, span = await session.store.store_flags(
            view.mailbox_id, [u for _, u in pairs] if targets is None else targets,
            args.mode, flags, unchangedsince=args.unchangedsince,
            training=None if teach is None else teach.training)
        view.took_own_flags(span, updated)
        if teach is not None:
            teach.done()
    refused = set(failed)
    fresh = {r.uid: r for r in updated}
    # RFC 3501 §7.2.6: a new keyword is announced before a FETCH shows it
    # (and before a later FETCH would, after .SILENT).
    for line in view.announce(r.flags for r in updated):
        session.write(line)
    if not args.silent:
        write, respond = session.write, view.flags_response
        # The flags as this STORE left them (RFC 3501 §6.4.6); later changes
        # by others follow in the sync.
        for seq, rec in records(session, view, pairs, span):  # span None: current
            if rec.uid in refused:
                continue
            rec = fresh.get(rec.uid, rec)
            view.note_flags(rec.uid, rec.flags, seq)
            write(respond(seq, rec.uid, rec.flags, with_uid=cmd.uid, modseq=rec.modseq))
    elif view.condstore:
        for seq, uid in pairs:
            changed = fresh.get(uid)
            if changed is not None:
                session.write(b"* %d FETCH (UID %d MODSEQ (%d))\r\n" % (seq, uid, changed.modseq))
    if failed:
        if cmd.uid:
            modified = compact_uids(sorted(refused))
        else:
            modified = compact_uids(seq for seq, uid in pairs if uid in refused)
        return TaggedOk("Conditional STORE failed for some messages", code=f"MODIFIED {modified}")
    return None


# ------------------------------------------------------------- COPY, MOVE


_JUNK_FLAG, _NOT_JUNK_FLAG = "$junk", "$notjunk"


@dataclass(frozen=True, slots=True)
class JunkTeaching:
    """What one command teaches the junk filter (``junk/filter.py``):
    ``training`` goes with the command's write (one commit), ``done`` after it."""

    junk: Any
    training: Training

    def done(self) -> None:
        """After the command's commit: count it and apply the journal."""
        self.junk.committed(self.training)


def _teaching(session: ImapSession, recs: Sequence[MessageRecord],
              spam: bool) -> JunkTeaching | None:
    """The junk training of ``recs`` as ``spam`` or ham, if the filter is on."""
    junk = getattr(session.services, "junk", None)
    if junk is None or not recs or session.user is None:
        return None
    training = junk.prepare(session.user, [r.blob_id for r in recs], spam)
    return None if training is None else JunkTeaching(junk, training)


def _junk_training(session: ImapSession, view: SelectedMailbox,
                   pairs: Sequence[tuple[int, int]], dest: str,
                   move: bool) -> JunkTeaching | None:
    """What a COPY/MOVE teaches the junk filter (issue #16 §1): into Junk is
    spam; moved out of Junk into anything but Trash is ham.  None: nothing."""
    if getattr(session.services, "junk", None) is None or session.user is None:
        return None
    try:
        target = session.store.get_mailbox(session.user, dest).special_use
        source = session.store.get_mailbox(session.user, view.name).special_use
    except MailboxNotFound:
        return None
    if target == "\\Junk" and source != "\\Junk":
        spam = True
    elif move and source == "\\Junk" and target not in ("\\Junk", "\\Trash"):
        spam = False
    else:
        return None
    return _teaching(session, [rec for _, rec in records(session, view, pairs, None)], spam)


async def copy(session: ImapSession, cmd: Command) -> TaggedOk | None:
    """COPY / UID COPY (§6.4.7) with COPYUID (RFC 4315 §3)."""
    return await _transfer(session, cmd, move=False)


async def move(session: ImapSession, cmd: Command) -> TaggedOk | None:
    """MOVE / UID MOVE (RFC 6851 §3): COPYUID in an untagged OK, then the
    EXPUNGE responses (from the sync), then the tagged OK (§3.3)."""
    _writable(_view(session))
    return await _transfer(session, cmd, move=True)


async def _transfer(session: ImapSession, cmd: Command, *, move: bool) -> TaggedOk | None:
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
    teach = _junk_training(session, view, pairs, args.mailbox, move)
    try:
        uidvalidity, mapping, claim = await session.store.transfer(
            view.mailbox_id, uids, session.user, args.mailbox, move=move,
            claim_for=session.claims_recent_in(view.mailbox_id),
            training=None if teach is None else teach.training)
    except MailboxNotFound:
        raise MailboxNotFound("Mailbox does not exist", imap_code="TRYCREATE") from None
    if view is session.selected:
        view.note_claim(claim)
    if teach is not None:
        teach.done()
    if not mapping:
        return None
    code = (f"COPYUID {uidvalidity} {compact_uids(s for s, _ in mapping)} "
            f"{compact_uids(d for _, d in mapping)}")
    if move:
        session.write(f"* OK [{code}] Moved\r\n".encode())
        return None
    return TaggedOk("COPY completed", code=code)
