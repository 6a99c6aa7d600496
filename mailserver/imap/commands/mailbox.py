"""Authenticated-state commands on mailboxes: CREATE (with CREATE-SPECIAL-USE,
RFC 6154 §3), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, APPEND, NAMESPACE
(RFC 3501 §6.3; RFC 4315 APPENDUID; RFC 2342 NAMESPACE).  SELECT/EXAMINE live
in ``select.py``, LIST/LSUB/STATUS in ``listing.py``.

Mailbox names arrive decoded (the parser undoes modified UTF-7, or takes
UTF-8 after ENABLE UTF8=ACCEPT / IMAP4rev2) and leave through
``response.mailbox_name``, which encodes them again (§5.1.3, RFC 6855 §3).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import TYPE_CHECKING

from mailserver.errors import MailboxNotFound, NotFound, ProtocolSyntaxError, UserError
from mailserver.imap.message import MessageAccess
from mailserver.imap.selected import compact_uids
from mailserver.imap.state import TaggedOk
from mailserver.protocol.imap.response import mailbox_name
from mailserver.protocol.imap.types import (
    Append,
    Command,
    MailboxArg,
    Rename,
)
from mailserver.protocol.imap.url import parse_message_url
from mailserver.protocol.line_endings import to_crlf
from mailserver.protocol.mime.cost import cheap_to_analyze, message_facts
from mailserver.store.model import DELIMITER

if TYPE_CHECKING:
    from mailserver.imap.session import ImapSession

_DELIM = mailbox_name(DELIMITER)


async def namespace(session: ImapSession, cmd: Command) -> TaggedOk:
    """NAMESPACE (RFC 2342 §5): one personal namespace, no prefix, "/"."""
    session.write(b'* NAMESPACE (("" ' + _DELIM + b")) NIL NIL\r\n")
    return TaggedOk("NAMESPACE completed")


# ------------------------------------------------------- CREATE and friends


#: RFC 6154 §2 special uses we can store on a real mailbox; \\All and
#: \\Flagged describe virtual mailboxes, which we do not have.
_USES = {u.casefold(): u for u in ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")}


def _special_use(params: tuple) -> str | None:
    """The special use asked by ``CREATE name (USE (...))`` (RFC 6154 §3, §6):
    None for none; ``NO [USEATTR]`` for one we cannot give, or more than one
    (a mailbox has one use here); BAD for any other parameter."""
    if not params:
        return None
    if len(params) != 2 or params[0] != "USE" or not isinstance(params[1], tuple):
        raise ProtocolSyntaxError("Unknown CREATE parameter")
    uses = params[1]
    if not all(isinstance(u, str) and u.startswith("\\") for u in uses):
        raise ProtocolSyntaxError("Invalid special-use attribute")
    if not uses:
        return None
    if len(uses) > 1:
        raise UserError("Only one special use per mailbox", imap_code="USEATTR")
    use = _USES.get(str(uses[0]).casefold())
    if use is None:
        raise UserError(f"Special use {str(uses[0])[:30]} not supported", imap_code="USEATTR")
    return use


async def create(session: ImapSession, cmd: Command) -> TaggedOk:
    """CREATE (§6.3.3), with ``(USE (\\Sent))`` (RFC 6154 §3).  A trailing
    delimiter only declares intent to create children (§6.3.3), so it is
    dropped; creating INBOX is an error."""
    args = cmd.args
    assert isinstance(args, MailboxArg) and session.user is not None
    use = _special_use(args.params)
    name = args.mailbox
    if name.endswith(DELIMITER) and name.strip(DELIMITER):
        name = name.rstrip(DELIMITER)
    if name.upper() == "INBOX":
        raise UserError("INBOX always exists", imap_code="ALREADYEXISTS")
    await session.mailboxes.create_mailbox(session.user, name, special_use=use)
    return TaggedOk("CREATE completed")


async def delete(session: ImapSession, cmd: Command) -> TaggedOk:
    """DELETE (§6.3.4).  Deleting the selected mailbox is refused: the session
    would be left selecting nothing (Dovecot and Cyrus refuse it too).  A
    ``\\Noselect`` name that still has children cannot go: ``NO
    [HASCHILDREN]`` (RFC 9051 §6.3.5, §7.1); a selectable one with children
    loses its messages and stays as a ``\\Noselect`` level (§6.3.4)."""
    args = cmd.args
    assert isinstance(args, MailboxArg) and session.user is not None
    mailboxes = session.mailboxes
    info = await mailboxes.get_mailbox(session.user, args.mailbox)
    if session.selected is not None and info.id == session.selected.mailbox_id:
        raise UserError("Cannot delete the selected mailbox", imap_code="CANNOT")
    if info.noselect:
        prefix = info.name + DELIMITER
        if any(b.name.startswith(prefix) for b in await mailboxes.list_mailboxes(session.user)):
            raise UserError("Mailbox has inferior hierarchical names", imap_code="HASCHILDREN")
    await mailboxes.delete_mailbox(session.user, args.mailbox)
    return TaggedOk("DELETE completed")


async def rename(session: ImapSession, cmd: Command) -> TaggedOk:
    """RENAME (§6.3.5); renaming INBOX moves its messages (the store does it)."""
    args = cmd.args
    assert isinstance(args, Rename) and session.user is not None
    await session.mailboxes.rename_mailbox(session.user, args.old, args.new)
    view = session.selected
    if view is not None:
        # The selected mailbox may have been renamed itself, or as a child
        # of ``old``; RENAME INBOX keeps INBOX's id.  The store knows its name.
        try:
            view.name = (await session.mailboxes.get_mailbox_by_id(view.mailbox_id)).name
        except MailboxNotFound:
            pass  # reported by the sync after this command
    return TaggedOk("RENAME completed")


async def subscribe(session: ImapSession, cmd: Command) -> TaggedOk:
    """SUBSCRIBE (§6.3.6)."""
    args = cmd.args
    assert isinstance(args, MailboxArg) and session.user is not None
    await session.mailboxes.set_subscribed(session.user, args.mailbox, True)
    return TaggedOk("SUBSCRIBE completed")


async def unsubscribe(session: ImapSession, cmd: Command) -> TaggedOk:
    """UNSUBSCRIBE (§6.3.7)."""
    args = cmd.args
    assert isinstance(args, MailboxArg) and session.user is not None
    await session.mailboxes.set_subscribed(session.user, args.mailbox, False)
    return TaggedOk("UNSUBSCRIBE completed")


# ------------------------------------------------------------------ APPEND


async def append(session: ImapSession, cmd: Command) -> TaggedOk:
    """APPEND (§6.3.11) with APPENDUID (RFC 4315 §3) and MULTIAPPEND (RFC 3502).

    The literal's size limit is enforced by the receiver (``NO [TOOBIG]``).
    MIME facts are computed off the event loop unless the message is small
    and single-part (``cheap_to_analyze``); the reply is sent only after
    the store has synced the message.  A missing mailbox answers
    ``NO [TRYCREATE]`` (§6.3.11).  ``\\Recent`` cannot be set by a client;
    an APPEND to the mailbox the session has selected claims the message as
    ``\\Recent`` for the session in the same commit (RFC 3501 §2.3.2), so the
    sync that reports ``EXISTS`` needs no second write.  A MULTIAPPEND is one
    synced commit: every message is stored or none (RFC 3502 §6.3.11), and
    APPENDUID gives their UIDs as a set in the client's order (RFC 4315 §3).
    """
    args = cmd.args
    assert isinstance(args, Append) and session.user is not None
    try:
        info = session.store.get_mailbox(session.user, args.mailbox)
    except MailboxNotFound:
        raise MailboxNotFound("Mailbox does not exist", imap_code="TRYCREATE") from None
    if info.noselect:
        raise UserError("Mailbox is not selectable (\\Noselect)", imap_code="CANNOT")
    prepared = [await _prepare(session, one) for one in args.messages()]
    view = session.selected
    try:
        if len(prepared) == 1:
            message, facts, flags, internal_date, tz_offset = prepared[0]
            record, claim = await session.store.append(
                session.user, info.name, message, facts,
                flags=flags, internal_date=internal_date, tz_offset=tz_offset,
                claim_for=session.claims_recent_in(info.id),
            )
            records = [record]
        else:
            records, claim = await session.store.append_many(
                session.user, info.name, prepared, claim_for=session.claims_recent_in(info.id))
    except MailboxNotFound:
        raise MailboxNotFound("Mailbox does not exist", imap_code="TRYCREATE") from None
    if view is not None and view is session.selected:
        view.note_claim(claim)
    uidvalidity = info.uidvalidity
    if records[0].mailbox_id != info.id:  # deleted and re-created meanwhile
        uidvalidity = session.store.get_mailbox(session.user, args.mailbox).uidvalidity
    uids = compact_uids([r.uid for r in records])
    return TaggedOk("APPEND completed", code=f"APPENDUID {uidvalidity} {uids}")


def _catenate(session: ImapSession, parts: tuple[tuple[str, bytes | str], ...]) -> bytes:
    """The message CATENATE (RFC 4469 §5) builds: its TEXT parts as given and
    its URL parts (RFC 5092, ``protocol.imap.url``) read from this account's
    mailboxes, in order.  A URL that does not parse, names another account's
    or a missing mailbox, a changed UIDVALIDITY, a missing message or part,
    is ``NO [BADURL url]`` (§5); nothing is appended then.  The joined size
    is bounded as a literal's (the caller checks TOOBIG; a URL part is read
    only while the total is under the limit)."""
    limit = min(session.limits.imap_max_literal_size, session.limits.max_message_size)
    out: list[bytes] = []
    size = 0
    assert session.user is not None
    for kind, value in parts:
        if kind == "TEXT":
            assert isinstance(value, bytes)
            data = value
        else:
            assert isinstance(value, str)
            data = _url_part(session, session.user, value)
        size += len(data)
        if size > limit:
            raise UserError("Message too big", imap_code="TOOBIG")
        out.append(data)
    return b"".join(out)


def _url_part(session: ImapSession, user: str, url: str) -> bytes:
    bad = UserError("Bad URL in CATENATE", imap_code="BADURL " + url[:1000])
    try:
        where = parse_message_url(url)
        info = session.store.get_mailbox(user, where.mailbox)
    except (ValueError, MailboxNotFound, UserError):
        raise bad from None
    if where.uidvalidity is not None and where.uidvalidity != info.uidvalidity:
        raise bad
    records = session.store.get_messages(info.id, [where.uid])
    if not records:
        raise bad
    with session.store.snapshot() as snap:
        try:
            data = MessageAccess(snap, records[0]).section(where.section)
        except NotFound:
            data = None
        data = None if data is None else bytes(data)
    if data is None:
        raise bad
    return data


async def _prepare(session: ImapSession, one: Append,
                   ) -> tuple[bytes, bytes, frozenset[str], int, int]:
    """One message of an APPEND as the store takes it: ``(message, facts,
    flags, internal date, tz offset in minutes)``.  Raises ``NO [TOOBIG]``."""
    raw = _catenate(session, one.catenate) if one.catenate else one.message
    # max_message_size caps stored messages whichever way they come (SMTP SIZE too).
    if len(raw) > min(session.limits.imap_max_literal_size,
                      session.limits.max_message_size):
        raise UserError("Message too big", imap_code="TOOBIG")
    # Stored with CRLF line ends (RFC 5322 §2.3; ``protocol.line_endings``):
    # sizes and offsets then count CRLF; CRLF input is kept octet for octet.
    message = to_crlf(raw)
    if one.date is not None:
        offset = one.date.utcoffset() or dt.timedelta(0)
        internal_date = int(one.date.timestamp())
        tz_offset = int(offset.total_seconds() // 60)
    else:
        internal_date = int(time.time())
        tz_offset = 0
    # As SMTP delivery does: a small single-part message is analysed on the
    # loop, where it costs less than the hop to a thread and back.
    if cheap_to_analyze(message):
        facts = message_facts(message)
    else:
        facts = await asyncio.to_thread(message_facts, message)
    flags = frozenset(f for f in one.flags if f.lower() != "\\recent")
    return message, facts, flags, internal_date, tz_offset
