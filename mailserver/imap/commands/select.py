"""SELECT and EXAMINE (RFC 3501 §6.3.1-2) with the CONDSTORE and QRESYNC
parameters (RFC 7162 §3.1.8, §3.2.5) and the ``[CLOSED]`` response code
(§3.2.11).

::

    select-param =/ "CONDSTORE" / "QRESYNC" SP "(" uidvalidity SP
                    mod-sequence-value [SP known-uids]
                    [SP seq-match-data] ")"            ; RFC 7162 §7
    known-uids = sequence-set                          ; UIDs only, no "*" meaning
    seq-match-data = "(" known-sequence-set SP known-uid-set ")"

Design notes
------------
* The store keeps every expunged UID with its MODSEQ forever, so
  ``* VANISHED (EARLIER)`` is always exact: seq-match-data (meant for servers
  that forget) is checked for syntax and otherwise not needed.
* known-uids narrows both the VANISHED set and the FETCH responses (as
  Dovecot does): the client says which messages it wants to hear about.
* ``\\Recent`` (RFC 3501 §2.3.2): a read-write SELECT claims the messages no
  session has seen yet (``SelectedMailbox.claim_recent``) before ``* n
  RECENT`` is written; EXAMINE looks without claiming.
* After ENABLE IMAP4rev2 the responses are those of RFC 9051 §6.3.2: no
  RECENT (nothing is claimed, so rev1 sessions keep their ``\\Recent``), no
  ``[UNSEEN n]`` (Appendix E), and a ``* LIST`` line giving the mailbox's
  name as the server spells it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mailserver.errors import MailboxNotFound, ProtocolSyntaxError, UserError
from mailserver.imap.selected import SelectedMailbox, compact_uids
from mailserver.imap.state import TaggedOk
from mailserver.protocol.imap.response import mailbox_name
from mailserver.protocol.imap.seqset import parse_sequence_set
from mailserver.protocol.imap.types import Command, InvalidMailboxName, MailboxArg, SequenceSet
from mailserver.store.model import DELIMITER

if TYPE_CHECKING:
    from mailserver.imap.session import ImapSession

_MAX_MODSEQ = (1 << 63) - 1
_MAX_UID = 0xFFFFFFFF


async def select(session: ImapSession, cmd: Command) -> TaggedOk:
    """SELECT (RFC 3501 §6.3.1)."""
    return await _open(session, cmd, readonly=False)


async def examine(session: ImapSession, cmd: Command) -> TaggedOk:
    """EXAMINE (§6.3.2): SELECT, read-only."""
    return await _open(session, cmd, readonly=True)


class QresyncArgs:
    """The parsed ``QRESYNC (...)`` select parameter (RFC 7162 §3.2.5)."""

    __slots__ = ("uidvalidity", "modseq", "known")

    def __init__(self, uidvalidity: int, modseq: int, known: SequenceSet | None) -> None:
        self.uidvalidity = uidvalidity
        self.modseq = modseq
        self.known = known


#: Messages from which SELECT reads the mailbox's flags in a thread (see ``select``).
SELECT_IN_THREAD = 20_000

def _seqset(value: object) -> SequenceSet:
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise ProtocolSyntaxError("Invalid sequence set in QRESYNC")
    return parse_sequence_set(value)


def parse_select_params(params: tuple) -> tuple[bool, QresyncArgs | None]:
    """``(condstore, qresync)`` from the generic select parameters
    (``MailboxArg.params``).  Raises ``ProtocolSyntaxError`` (BAD) for anything
    else, a repeated parameter, or a malformed QRESYNC list (RFC 7162 §7)."""
    condstore = False
    qresync: QresyncArgs | None = None
    i = 0
    while i < len(params):
        name = params[i]
        if name == "CONDSTORE" and not condstore:
            condstore = True
            i += 1
            continue
        if name == "QRESYNC" and qresync is None and i + 1 < len(params):
            value = params[i + 1]
            i += 2
            if not isinstance(value, tuple) or not 2 <= len(value) <= 4:
                raise ProtocolSyntaxError("Invalid QRESYNC parameter")
            uidvalidity, modseq = value[0], value[1]
            if not (isinstance(uidvalidity, int) and 1 <= uidvalidity <= _MAX_UID
                    and isinstance(modseq, int) and 1 <= modseq <= _MAX_MODSEQ):
                raise ProtocolSyntaxError("Invalid QRESYNC uidvalidity or mod-sequence")
            rest = list(value[2:])
            known = None
            if rest and not isinstance(rest[0], tuple):
                known = _seqset(rest.pop(0))
            if rest:
                match = rest.pop(0)
                if not isinstance(match, tuple) or len(match) != 2:
                    raise ProtocolSyntaxError("Invalid QRESYNC seq-match-data")
                _seqset(match[0])
                _seqset(match[1])
            if rest:
                raise ProtocolSyntaxError("Invalid QRESYNC parameter")
            qresync = QresyncArgs(uidvalidity, modseq, known)
            continue
        raise ProtocolSyntaxError(f"Unknown SELECT parameter {str(name)[:40]}")
    return condstore, qresync


async def _open(session: ImapSession, cmd: Command, *, readonly: bool) -> TaggedOk:
    """The SELECT/EXAMINE responses (§6.3.1, §7.3.1, RFC 7162 §3.1.2.1, §3.2.5).

    A SELECT while a mailbox is selected closes it first, without expunging,
    and says so with ``* OK [CLOSED]`` (RFC 7162 §3.2.11); if the new one
    cannot be selected the session is left unselected (§6.3.1).
    """
    args = cmd.args
    assert isinstance(args, MailboxArg) and session.user is not None
    condstore, qresync = parse_select_params(args.params)
    if qresync is not None and "QRESYNC" not in session.enabled:
        # RFC 7162 §3.2.5: BAD unless ENABLE QRESYNC came first.
        raise ProtocolSyntaxError("QRESYNC parameter requires ENABLE QRESYNC")
    if session.selected is not None:
        session.select(None)
        session.write(b"* OK [CLOSED] Previous mailbox closed\r\n")
    if condstore:
        session.enable("CONDSTORE")  # RFC 7162 §3.1: a CONDSTORE enabling command
    if isinstance(args.mailbox, InvalidMailboxName):  # not modified UTF-7: no such mailbox
        raise MailboxNotFound("Mailbox does not exist")
    info = session.store.get_mailbox(session.user, args.mailbox)
    if info.noselect:
        raise UserError("Mailbox is not selectable (\\Noselect)", imap_code="CANNOT")
    # Info (hence modseq) before the list: see SelectedMailbox.open.
    if info.messages < SELECT_IN_THREAD:
        view = SelectedMailbox(session.store, info, session.store.list_flags(info.id),
                               readonly=readonly)
    else:
        # A big mailbox's flags are read and interned off the event loop: at
        # 1,000,000 messages that is ~0.6 s other sessions would wait through.
        store = session.store
        view = await asyncio.to_thread(
            lambda: SelectedMailbox(store, info, store.list_flags(info.id), readonly=readonly))
    session.apply_enabled(view)
    rev2 = session.rev2
    if not rev2:
        await view.claim_recent()
    for line in view.flags_lines():
        session.write(line)
    if rev2:
        session.write(b"* %d EXISTS\r\n" % view.exists)
        # RFC 9051 §6.3.2: the LIST response for the mailbox, canonical name.
        session.write(b"* LIST () " + mailbox_name(DELIMITER) + b" " +
                      mailbox_name(info.name, True) + b"\r\n")
    else:
        session.write(b"* %d EXISTS\r\n* %d RECENT\r\n" % (view.exists, len(view.recent)))
        unseen = view.first_unseen()
        if unseen is not None:
            session.write(b"* OK [UNSEEN %d] First unseen\r\n" % unseen)
    session.write(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % view.uidvalidity)
    session.write(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % max(info.uidnext,
                                                                     view.largest_uid + 1))
    session.write(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % view.modseq)
    if qresync is not None and qresync.uidvalidity == view.uidvalidity:
        _resync(session, view, qresync, info.uidnext)
    session.select(view)
    name = "EXAMINE" if readonly else "SELECT"
    return TaggedOk(f"{name} completed", code="READ-ONLY" if readonly else "READ-WRITE")


def _resync(session: ImapSession, view: SelectedMailbox, q: QresyncArgs, uidnext: int) -> None:
    """``* VANISHED (EARLIER)`` and ``FETCH (UID FLAGS MODSEQ)`` for what
    changed after the client's mod-sequence (RFC 7162 §3.2.5.2).

    A change committed after the view was read may show up here with a
    MODSEQ above the HIGHESTMODSEQ just sent; the client keeps the larger one.
    """
    changes = session.store.changes_since(view.mailbox_id, q.modseq)
    largest = max(uidnext - 1, view.largest_uid)
    known = q.known

    def wanted(uid: int) -> bool:
        return known is None or known.contains(uid, largest)

    gone = [u for u in changes.expunged if wanted(u) and u not in view.messages]
    if gone:
        session.write(b"* VANISHED (EARLIER) " + compact_uids(gone).encode() + b"\r\n")
    for line in view.announce(r.flags for r in changes.updated):
        session.write(line)  # RFC 3501 §7.2.6: keywords told before they are shown
    for rec in changes.updated:
        if not wanted(rec.uid):
            continue
        seq = view.seq_of(rec.uid)
        if seq is None:
            continue
        view.note_flags(rec.uid, rec.flags, seq)
        session.write(view.flags_response(seq, rec.uid, rec.flags, with_uid=True,
                                          modseq=rec.modseq))
