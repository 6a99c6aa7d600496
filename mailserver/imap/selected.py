"""The selected mailbox as one session sees it (RFC 3501 §2.3.1.2, §5.2, §7.4.1).

Design notes
------------
A session's view of its selected mailbox is *not* the store's current state:
it is the state last reported to the client.  Message sequence numbers are
positions in ``messages`` (the view), so they only change when this session
reports ``EXPUNGE`` or ``EXISTS``.  ``messages`` is a compact ``MessageView``
(``view.py``): an idle session costs ~12 bytes per message of its mailbox.

Invariants
----------
* ``messages`` ascends by UID; ``seq`` n is ``messages.uid_at(n)``.
* ``messages.get(uid)`` is the flag set last reported to the client for that
  message (or known to it, e.g. after its own STORE): ``sync`` reports a
  ``FETCH (FLAGS ...)`` only where the store now differs, so a session's own
  STORE is never echoed a second time.
* ``modseq`` is the HIGHESTMODSEQ up to which the store's changes have been
  folded in; ``store.changes_since(mailbox_id, modseq)`` is all that is new.
* A message of the view (not ``pending``) whose record was not written since
  ``modseq`` has in ``messages`` exactly that record's flags: every path that
  sets the view's flags (SELECT's read after the mailbox's, ``sync``, a
  FETCH or STORE noting what it told, ``took_own_flags``) does so with a
  record at least as new as ``modseq``.  So the view plus ``unreported``
  is the store's state now (``flag_answers.py`` answers from it).
* Messages expunged in the store but not yet reported (``pending``) keep their
  sequence numbers until a command that may carry ``EXPUNGE`` responses runs
  (RFC 3501 §7.4.1: not during FETCH, STORE, SEARCH, nor between commands).
  Meanwhile they have no record in the store: FETCH returns nothing for them.
* ``EXISTS`` never decreases without EXPUNGEs reported first (§7.3.1).
* ``recent`` holds the UIDs that are ``\\Recent`` for this session (RFC 3501
  §2.3.2): a read-write view claims every message it is the first to see
  (``claim_recent`` moves the store's per-mailbox boundary, serialised by the
  writer, so no two sessions get the same message); a read-only view only
  looks at the boundary.  ``\\Recent`` is added to FLAGS on output only; the
  flag cache keeps the stored flags.  The session's own APPEND/COPY/MOVE into
  the view's mailbox claims in its own transaction (``note_claim``): the
  claimed UIDs are held in ``_owned`` until the sync brings them into the view.
* ``announced`` holds the keywords the client has been told of in a
  ``* FLAGS`` (and ``PERMANENTFLAGS``) response (RFC 3501 §7.2.6).  Before
  any FETCH shows a keyword outside it (set by this or another session, or
  brought by APPEND/COPY), ``announce`` sends both responses again with the
  keyword added, so a client that tracks FLAGS never meets an unknown one.
  The list only grows while the mailbox is selected (as Dovecot's).
* Once CONDSTORE is enabled (RFC 7162 §3.1) every unsolicited FETCH carries
  UID and MODSEQ; once QRESYNC is, expunges are reported as ``* VANISHED``
  (§3.2.10) instead of ``* n EXPUNGE``.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailserver.errors import ProtocolSyntaxError
from mailserver.imap.contexts import UpdateContexts
from mailserver.imap.view import MessageView
from mailserver.protocol.imap.response import flag_list
from mailserver.protocol.imap.seqset import compact
from mailserver.protocol.imap.types import SequenceSet
from mailserver.store.model import MailboxInfo, MessageRecord, RecentClaim, WriteSpan
from mailserver.store.store import Store

#: The system flags (RFC 3501 §2.3.2) a client may store; ``\Recent`` is
#: session state (``SelectedMailbox.recent``), never stored.
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


class SelectedMailbox:
    """The selected mailbox of one session: sequence numbers, cached flags, sync point.

    Built by ``open`` from the store; ``sync`` folds in the store's changes and
    returns the untagged responses (bytes, CRLF-terminated) that tell the client.
    """

    __slots__ = ("store", "mailbox_id", "name", "readonly", "uidvalidity", "messages",
                 "modseq", "pending", "pending_floor", "recent", "condstore", "qresync",
                 "_claimed", "_owned", "saved", "announced", "_announced_sets", "grew",
                 "contexts")

    def __init__(self, store: Store, info: MailboxInfo,
                 records: Iterable[MessageRecord] | tuple[list[int], list[frozenset[str]]],
                 *, readonly: bool) -> None:
        """``records`` are the mailbox's messages ascending by UID: records, or
        ``(uids, flags)`` parallel lists as ``Store.list_flags`` returns them
        (SELECT reads those: no record is built)."""
        self.store = store
        self.mailbox_id = info.id
        self.name = info.name
        self.readonly = readonly
        self.uidvalidity = info.uidvalidity
        self.modseq = info.highestmodseq
        if isinstance(records, tuple):
            self.messages = MessageView(*records)
        else:
            self.messages = MessageView()
            for rec in records:
                self.messages.append(rec.uid, rec.flags)
        self.pending: set[int] = set()
        #: HIGHESTMODSEQ before the oldest expunge held in ``pending``.
        self.pending_floor = self.modseq
        self.recent: set[int] = set()
        self.condstore = False  # RFC 7162 §3.1: UID and MODSEQ in unsolicited FETCH
        self.qresync = False  # RFC 7162 §3.2.10: VANISHED instead of EXPUNGE
        self._claimed = 0  # UIDs up to this one have been judged for \Recent
        #: ``(low, high)``: UIDs ``low+1..high`` claimed by this session's own
        #: writes and not yet marked in ``recent`` (they join the view at the sync).
        self._owned: list[tuple[int, int]] = []
        #: UIDs of the last SEARCH RETURN (SAVE) result, ``$`` (RFC 5182 §2.1): a
        #: new view starts empty, which is the reset SELECT/EXAMINE require.
        #: Expunged UIDs may linger here; ``resolve`` only names live ones.
        self.saved: frozenset[int] = frozenset()
        #: Keywords told to the client by ``* FLAGS`` (RFC 3501 §7.2.6); set by
        #: ``flags_lines`` at SELECT, grown by ``announce``.
        self.announced: frozenset[str] = frozenset()
        #: Flag sets already known to hold announced keywords only (the store
        #: interns sets, so most checks are one lookup); bounded.
        self._announced_sets: set[frozenset[str]] = set()
        #: The last ``sync`` reported EXISTS (new messages): RECENT follows.
        self.grew = False
        #: Updating SEARCH/SORT contexts (RFC 5267 §4.3); they end with the view.
        self.contexts = UpdateContexts()

    @classmethod
    def open(cls, store: Store, account: str, name: str, *, readonly: bool) -> SelectedMailbox:
        """Read the mailbox and its messages (SELECT/EXAMINE).

        The mailbox info (hence ``modseq``) is read *before* the message list:
        a change committed in between shows up in the list and again in the
        next ``sync``, which tolerates that (known UIDs are only compared).
        Raises MailboxNotFound.
        """
        info = store.get_mailbox(account, name)
        return cls(store, info, store.list_flags(info.id), readonly=readonly)

    # ----------------------------------------------------------------- lookups

    @property
    def exists(self) -> int:
        return len(self.messages)

    @property
    def largest_uid(self) -> int:
        return self.messages.largest

    @property
    def state_key(self) -> tuple[int, ...]:
        """Changes whenever a search over the view may answer differently:
        a commit to the mailbox (HIGHESTMODSEQ), messages joining or leaving
        the view, expunges held back, \\Recent claims."""
        return (self.modseq, len(self.messages), len(self.pending), len(self.recent))

    def seq_of(self, uid: int) -> int | None:
        return self.messages.seq_of(uid)

    def resolve(self, seqset: SequenceSet, *, uid: bool) -> list[tuple[int, int]]:
        """``(seq, uid)`` pairs named by a set, ascending, messages held for a
        pending EXPUNGE included.

        Message sequence numbers outside 1..EXISTS are a BAD (RFC 3501 §7.1:
        ``ProtocolSyntaxError``).  A UID set only names the UIDs that exist in
        the view; ``*`` is the largest UID (``n:*`` always includes it, §6.4.8).
        UID sets are tested range by range, never expanded: ``1:4294967295``
        costs as much as the mailbox has messages.
        """
        if seqset.saved:  # "$" (RFC 5182 §2.1): never a BAD, possibly empty
            saved = self.saved
            return [(i + 1, u) for i, u in enumerate(self.messages) if u in saved]
        if uid:
            largest = self.largest_uid
            return [(i + 1, u) for i, u in enumerate(self.messages)
                    if seqset.contains(u, largest)]
        count = len(self.messages)
        if not seqset.valid_for(count) or (count == 0 and seqset.ranges):
            raise ProtocolSyntaxError("Invalid message sequence number")
        return self.messages.pairs(seqset.resolve(count))

    def live(self, pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """The pairs whose message is not waiting for its EXPUNGE to be reported."""
        return [p for p in pairs if p[1] not in self.pending]

    def keywords(self) -> set[str]:
        """Keywords in use in the view (for the FLAGS response of SELECT).
        Flag sets are interned by the store, so each distinct one is looked at once."""
        out: set[str] = set()
        for fl in {id(f): f for f in self.messages.flag_sets()}.values():
            out.update(f for f in fl if not f.startswith("\\"))
        return out

    def flags_lines(self) -> list[bytes]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS ...]`` for the system flags
        and every keyword announced or in use (RFC 3501 §7.2.6, §7.1); the
        keywords in use count as announced from now on.  A read-only view
        permits nothing (§6.3.2: ``PERMANENTFLAGS ()``)."""
        self.announced = self.announced | self.keywords()
        flags = list(SYSTEM_FLAGS) + sorted(self.announced)
        if self.readonly:
            perm = b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n"
        else:
            perm = b"* OK [PERMANENTFLAGS " + flag_list(flags + ["\\*"]) + b"] Flags permitted\r\n"
        return [b"* FLAGS " + flag_list(flags) + b"\r\n", perm]

    def announce(self, flag_sets: Iterable[frozenset[str]]) -> list[bytes]:
        """The ``* FLAGS`` / ``PERMANENTFLAGS`` responses to send before a
        FETCH shows these flag sets, when one holds a keyword the client has
        not been told of (RFC 3501 §7.2.6); else nothing.  Cheap for sets
        seen before."""
        known = self._announced_sets
        new: set[str] = set()
        for fl in flag_sets:
            if fl in known:
                continue
            new.update(f for f in fl if not f.startswith("\\") and f not in self.announced)
            if len(known) < 4096:
                known.add(fl)
        if not new:
            return []
        self.announced = self.announced | new
        flags = list(SYSTEM_FLAGS) + sorted(self.announced)
        lines = [b"* FLAGS " + flag_list(flags) + b"\r\n"]
        if not self.readonly:
            lines.append(b"* OK [PERMANENTFLAGS " + flag_list(flags + ["\\*"]) +
                         b"] Flags permitted\r\n")
        return lines

    def first_unseen(self) -> int | None:
        for i, fl in enumerate(self.messages.flag_sets()):
            if "\\Seen" not in fl:
                return i + 1
        return None

    # -------------------------------------------------------------------- sync

    def note_flags(self, uid: int, flags: frozenset[str], seq: int | None = None) -> None:
        """Record that the client has been told (or knows) these flags; ``seq``
        is the message's sequence number when the caller knows it (a hint)."""
        self.messages.set(uid, flags, seq)

    def took_own_flags(self, span: WriteSpan, updated: Iterable[MessageRecord]) -> None:
        """Note the records this session's own STORE changed (ascending UID,
        as ``Store.store_flags`` returns them); when the view was
        current just before it (``span.before``) it is current after it, as
        the ``sync`` that would read them back would only find them noted."""
        self.messages.set_ascending((rec.uid, rec.flags) for rec in updated)
        if span.mailbox_id == self.mailbox_id and self.modseq == span.before:
            self.modseq = span.after

    def sync(self, *, allow_expunge: bool, uid_fetch: bool = True) -> list[bytes]:
        """Fold in the store's changes since ``modseq``; return untagged responses.

        Order (RFC 3501 §7.4.1, §7.3.1): ``EXPUNGE`` (only when
        ``allow_expunge``; otherwise the messages are held, keeping their
        numbers), ``FLAGS``/``PERMANENTFLAGS`` when a new keyword appears
        (§7.2.6), then ``EXISTS`` if new messages arrived (``grew``), then
        ``FETCH (UID n FLAGS (...))`` for flags that differ from the cache.
        Raises MailboxNotFound when the mailbox was deleted meanwhile.
        """
        out: list[bytes] = []
        self.grew = False
        if not self.pending:
            self.pending_floor = self.modseq
        if self._unchanged():
            if allow_expunge and self.pending:
                out.extend(self._report_expunges())
            return out
        changes = self.store.changes_since(self.mailbox_id, self.modseq)
        messages = self.messages
        for uid in changes.expunged:
            if uid in messages:
                self.pending.add(uid)
        if allow_expunge and self.pending:
            out.extend(self._report_expunges())
        largest = self.largest_uid
        arrived = sorted(
            (r for r in changes.updated if r.uid > largest), key=lambda r: r.uid
        )
        flag_changes: list[MessageRecord] = [
            r for r in changes.updated
            if r.uid <= largest and r.uid not in self.pending
            and _differs(messages.get(r.uid), r.flags)
        ]
        out.extend(self.announce(r.flags for r in arrived))
        out.extend(self.announce(r.flags for r in flag_changes))
        if arrived:
            self.grew = True
            for rec in arrived:
                if rec.uid <= messages.largest:  # duplicate in one Changes: be tolerant
                    continue
                messages.append(rec.uid, rec.flags)
            out.append(b"* %d EXISTS\r\n" % len(messages))
        for rec in sorted(flag_changes, key=lambda r: r.uid):
            seq = messages.seq_of(rec.uid)
            if seq is None:
                continue
            messages.set(rec.uid, rec.flags, seq)
            out.append(self.flags_response(seq, rec.uid, rec.flags, with_uid=uid_fetch,
                                           modseq=rec.modseq))
        self.modseq = max(self.modseq, changes.mailbox.highestmodseq)
        return out

    def unreported(self) -> tuple[dict[int, frozenset[str]], set[int]]:
        """How the store differs now from the view, for the view's messages:
        ``(changed, gone)``.  ``changed`` maps a UID of the view whose record
        was written since ``modseq`` to its flags now; ``gone`` holds the
        view's UIDs without a record any more (``pending`` ones included).
        Every other message of the view has the flags the view holds (the
        ``messages`` invariant: a record not written since ``modseq`` is what
        the view was last told).  Messages that arrived since are not the
        view's and are left out.  Nothing is changed here: the ``sync``
        after the command reports all of it.

        Cost: one field read when nothing was committed since ``modseq``,
        else proportional to what was (``changes_since``).  Raises
        MailboxNotFound when the mailbox was deleted meanwhile."""
        gone = set(self.pending)
        if self._unchanged():
            return {}, gone
        changes = self.store.changes_since(self.mailbox_id, self.modseq)
        messages = self.messages
        largest = messages.largest
        changed = {r.uid: r.flags for r in changes.updated
                   if r.uid <= largest and r.uid not in gone and r.uid in messages}
        gone.update(u for u in changes.expunged if u in messages)
        return changed, gone

    def _unchanged(self) -> bool:
        """Nothing was committed to the mailbox since ``modseq`` (every write
        bumps HIGHESTMODSEQ): the sync after most commands reads one field
        instead of walking the change log.  A vanished mailbox is left to
        ``changes_since`` to report."""
        with self.store.snapshot() as snap:
            now = snap.mailbox_modseq(self.mailbox_id)
        return now is not None and now <= self.modseq

    def _report_expunges(self) -> list[bytes]:
        """Report every pending message: ``* n EXPUNGE`` highest number first,
        so that each number is still valid when the client reads it (§7.4.1),
        or one ``* VANISHED uid-set`` once QRESYNC is enabled (RFC 7162 §3.2.10).
        The view is rebuilt once, not shifted per message."""
        gone = sorted(u for u in self.pending if u in self.messages)
        self.pending.clear()
        if not gone:
            return []
        # RFC 5267 §4.3.4: REMOVEFROM before the EXPUNGE, while numbers hold.
        out = self.contexts.expunged(set(gone), self.seq_of) if self.contexts else []
        if self.qresync:
            out += [b"* VANISHED " + compact_uids(gone).encode() + b"\r\n"]
        else:
            seqs = [self.seq_of(u) for u in reversed(gone)]
            out += [b"* %d EXPUNGE\r\n" % seq for seq in seqs if seq is not None]
        self.messages.remove(set(gone))
        self.recent.difference_update(gone)
        return out

    async def claim_recent(self) -> None:
        """Judge the messages that joined the view since the last call for
        ``\\Recent`` (RFC 3501 §2.3.2): a read-write view claims them in the
        store (the first session to see a message gets it); a read-only one
        (EXAMINE, §6.3.2) takes those above the boundary without moving it.
        Messages the session's own write already claimed (``note_claim``) cost
        no second trip to the writer."""
        top = self.largest_uid
        if self._owned:
            for low, high in self._owned:
                self._mark_recent(low, min(high, top))
            self._owned.clear()
        if top <= self._claimed:
            return
        if self.readonly:
            old = self.store.recent_boundary(self.mailbox_id)
        else:
            old = await self.store.claim_recent(self.mailbox_id, top)
        low = max(old, self._claimed)
        self._claimed = top
        self._mark_recent(low, top)

    def note_claim(self, claim: RecentClaim | None) -> None:
        """Take the ``\\Recent`` claim a write of this session made in its own
        transaction (``Store.append``, ``Store.transfer``).  UIDs up
        to ``claim.old`` were claimed by others; ``old+1..upto`` are ours."""
        if claim is None or claim.mailbox_id != self.mailbox_id or self.readonly:
            return
        low = max(claim.old, self._claimed)
        if claim.upto <= low:
            return
        self._owned.append((low, claim.upto))
        self._claimed = claim.upto

    def _mark_recent(self, low: int, high: int) -> None:
        """Mark the view's UIDs ``low+1..high`` as recent."""
        if low >= high:
            return
        self.recent.update(self.messages.between(low, high))

    def shown_flags(self, uid: int, flags: frozenset[str]) -> frozenset[str]:
        """The flags as the client sees them: ``\\Recent`` added when it is."""
        return flags | {"\\Recent"} if uid in self.recent else flags

    def flags_response(self, seq: int, uid: int, flags: frozenset[str], *, with_uid: bool,
                       modseq: int | None = None) -> bytes:
        """``* seq FETCH (UID uid FLAGS (...) MODSEQ (m))`` (RFC 3501 §7.4.2).

        UID is included when asked or once CONDSTORE is enabled, MODSEQ (when
        known) once CONDSTORE is enabled (RFC 7162 §3.1: "both UID and
        mod-sequence data in all subsequent untagged FETCH responses").
        """
        uid_part = b"UID %d " % uid if with_uid or self.condstore else b""
        mod_part = b" MODSEQ (%d)" % modseq if self.condstore and modseq is not None else b""
        return b"* %d FETCH (%sFLAGS %s%s)\r\n" % (
            seq, uid_part, flag_list(self.shown_flags(uid, flags)), mod_part)


def _differs(known: frozenset[str] | None, now: frozenset[str]) -> bool:
    """A flag change to report: the UID is in the view and its flags moved."""
    return known is not None and known != now


def compact_uids(uids: Iterable[int]) -> str:
    """A UID list as a ``sequence-set`` string, ranges merged: 1,2,3,7 -> ``1:3,7``
    (RFC 4315 §3 ``uid-set``, keeping the order given)."""
    return compact(uids)
