"""Authenticated-state commands on mailboxes: SELECT, EXAMINE, CREATE, DELETE,
RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS, APPEND, NAMESPACE
(RFC 3501 §6.3; RFC 3348 CHILDREN; RFC 6154 SPECIAL-USE; RFC 4315 APPENDUID;
RFC 2342 NAMESPACE).

Mailbox names arrive decoded (the parser undoes modified UTF-7) and leave
through ``response.mailbox_name``, which encodes them again (§5.1.3).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from typing import TYPE_CHECKING

from mailserver.errors import MailboxNotFound, UserError
from mailserver.imap.selected import SYSTEM_FLAGS, SelectedMailbox
from mailserver.imap.state import Reply
from mailserver.protocol.imap.response import flag_list, mailbox_name
from mailserver.protocol.imap.types import (
    Append,
    Command,
    ListArgs,
    MailboxArg,
    Rename,
    StatusArgs,
)
from mailserver.protocol.mime import analyze
from mailserver.store.model import DELIMITER, MailboxInfo

if TYPE_CHECKING:
    from mailserver.imap.session import Session

_DELIM = mailbox_name(DELIMITER)


async def namespace(session: Session, cmd: Command) -> Reply:
    """NAMESPACE (RFC 2342 §5): one personal namespace, no prefix, "/"."""
    session.write(b'* NAMESPACE (("" ' + _DELIM + b")) NIL NIL\r\n")
    return Reply("NAMESPACE completed")


# ------------------------------------------------------------------ SELECT


async def select(session: Session, cmd: Command) -> Reply:
    """SELECT (§6.3.1)."""
    return _open(session, cmd, readonly=False)


async def examine(session: Session, cmd: Command) -> Reply:
    """EXAMINE (§6.3.2): SELECT, read-only."""
    return _open(session, cmd, readonly=True)


def _open(session: Session, cmd: Command, *, readonly: bool) -> Reply:
    """The SELECT/EXAMINE responses (§6.3.1, §7.3.1, RFC 7162 §3.1.2.1).

    A SELECT while a mailbox is selected closes it first, without expunging;
    if the new one cannot be selected the session is left unselected (§6.3.1).
    ``* 0 RECENT``: \\Recent is not tracked (see ``selected.SYSTEM_FLAGS``).
    """
    args = cmd.args
    assert isinstance(args, MailboxArg)
    session.select(None)
    assert session.user is not None
    info = session.store.get_mailbox(session.user, args.mailbox)
    if info.noselect:
        raise UserError("Mailbox is not selectable (\\Noselect)", imap_code="CANNOT")
    # Info (hence modseq) before the list: see SelectedMailbox.open.
    view = SelectedMailbox(session.store, info, session.store.list_messages(info.id),
                           readonly=readonly)
    flags = list(SYSTEM_FLAGS) + sorted(view.keywords())
    session.write(b"* FLAGS " + flag_list(flags) + b"\r\n")
    if readonly:
        session.write(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n")
    else:
        session.write(b"* OK [PERMANENTFLAGS " + flag_list(flags + ["\\*"]) +
                      b"] Flags permitted\r\n")
    session.write(b"* %d EXISTS\r\n* 0 RECENT\r\n" % view.exists)
    unseen = view.first_unseen()
    if unseen is not None:
        session.write(b"* OK [UNSEEN %d] First unseen\r\n" % unseen)
    session.write(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % view.uidvalidity)
    session.write(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % max(info.uidnext,
                                                                     view.largest_uid + 1))
    session.write(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % view.modseq)
    session.select(view)
    name = "EXAMINE" if readonly else "SELECT"
    return Reply(f"{name} completed", code="READ-ONLY" if readonly else "READ-WRITE")


# ------------------------------------------------------- CREATE and friends


async def create(session: Session, cmd: Command) -> Reply:
    """CREATE (§6.3.3).  A trailing delimiter only declares intent to create
    children (§6.3.3), so it is dropped; creating INBOX is an error."""
    args = cmd.args
    assert isinstance(args, MailboxArg) and session.user is not None
    name = args.mailbox
    if name.endswith(DELIMITER) and name.strip(DELIMITER):
        name = name.rstrip(DELIMITER)
    if name.upper() == "INBOX":
        raise UserError("INBOX always exists", imap_code="ALREADYEXISTS")
    await session.store.create_mailbox(session.user, name)
    return Reply("CREATE completed")


async def delete(session: Session, cmd: Command) -> Reply:
    """DELETE (§6.3.4).  Deleting the selected mailbox is refused: the session
    would be left selecting nothing (Dovecot and Cyrus refuse it too)."""
    args = cmd.args
    assert isinstance(args, MailboxArg) and session.user is not None
    if session.selected is not None:
        info = session.store.get_mailbox(session.user, args.mailbox)
        if info.id == session.selected.mailbox_id:
            raise UserError("Cannot delete the selected mailbox", imap_code="CANNOT")
    await session.store.delete_mailbox(session.user, args.mailbox)
    return Reply("DELETE completed")


async def rename(session: Session, cmd: Command) -> Reply:
    """RENAME (§6.3.5); renaming INBOX moves its messages (the store does it)."""
    args = cmd.args
    assert isinstance(args, Rename) and session.user is not None
    await session.store.rename_mailbox(session.user, args.old, args.new)
    if session.selected is not None and session.selected.name == args.old:
        session.selected.name = args.new
    return Reply("RENAME completed")


async def subscribe(session: Session, cmd: Command) -> Reply:
    """SUBSCRIBE (§6.3.6)."""
    args = cmd.args
    assert isinstance(args, MailboxArg) and session.user is not None
    await session.store.set_subscribed(session.user, args.mailbox, True)
    return Reply("SUBSCRIBE completed")


async def unsubscribe(session: Session, cmd: Command) -> Reply:
    """UNSUBSCRIBE (§6.3.7)."""
    args = cmd.args
    assert isinstance(args, MailboxArg) and session.user is not None
    await session.store.set_subscribed(session.user, args.mailbox, False)
    return Reply("UNSUBSCRIBE completed")


# -------------------------------------------------------------------- LIST


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """The regex for ``reference`` + ``pattern`` (§6.3.8): ``*`` matches anything,
    ``%`` anything but the delimiter.  The reference is a plain prefix; an
    ``INBOX`` first level matches case-insensitively (§5.1)."""
    full = reference + pattern
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] in (DELIMITER, "*", "%")):
        full = "INBOX" + full[5:]
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^" + re.escape(DELIMITER) + "]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _attributes(info: MailboxInfo, has_children: bool, *, lsub_noselect: bool = False) -> bytes:
    attrs: list[str] = []
    if info.noselect or lsub_noselect:
        attrs.append("\\Noselect")
    attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")  # RFC 3348 §4
    if info.special_use:
        attrs.append(info.special_use)  # RFC 6154 §2
    return ("(" + " ".join(attrs) + ")").encode()


async def list_(session: Session, cmd: Command) -> Reply:
    """LIST (§6.3.8).  ``LIST "" ""`` gives the delimiter and root.  Of the
    RFC 5258 extended forms (not advertised) SUBSCRIBED and SPECIAL-USE
    selection are honoured; the rest is answered like a plain LIST."""
    args = cmd.args
    assert isinstance(args, ListArgs) and session.user is not None
    patterns = args.patterns or (args.pattern,)
    if patterns == ("",):
        session.write(b"* LIST (\\Noselect) " + _DELIM + b' ""\r\n')
        return Reply("LIST completed")
    boxes = session.store.list_mailboxes(session.user)
    names = {b.name for b in boxes}
    regexes = [pattern_regex(args.reference, p) for p in patterns if p]
    only_subscribed = "SUBSCRIBED" in args.select_opts
    only_special = "SPECIAL-USE" in args.select_opts
    for box in boxes:
        if not any(r.fullmatch(box.name) for r in regexes):
            continue
        if only_subscribed and not box.subscribed:
            continue
        if only_special and not box.special_use:
            continue
        session.write(b"* LIST " + _attributes(box, _has_children(box.name, names)) + b" " +
                      _DELIM + b" " + mailbox_name(box.name) + b"\r\n")
    return Reply("LIST completed")


def _has_children(name: str, names: set[str]) -> bool:
    prefix = name + DELIMITER
    return any(n.startswith(prefix) for n in names)


async def lsub(session: Session, cmd: Command) -> Reply:
    """LSUB (§6.3.9): subscribed names; with ``%``, an unsubscribed parent of a
    subscribed child is listed ``\\Noselect`` (§6.3.9)."""
    args = cmd.args
    assert isinstance(args, ListArgs) and session.user is not None
    if args.pattern == "":
        session.write(b"* LSUB (\\Noselect) " + _DELIM + b' ""\r\n')
        return Reply("LSUB completed")
    boxes = session.store.list_mailboxes(session.user)
    names = {b.name for b in boxes}
    regex = pattern_regex(args.reference, args.pattern)
    subscribed = [b for b in boxes if b.subscribed]
    sub_names = {b.name for b in subscribed}
    shown: set[str] = set()
    for box in boxes:
        if regex.fullmatch(box.name) and box.name in sub_names:
            session.write(b"* LSUB " + _attributes(box, _has_children(box.name, names)) + b" " +
                          _DELIM + b" " + mailbox_name(box.name) + b"\r\n")
            shown.add(box.name)
    if "%" in args.pattern:
        by_name = {b.name: b for b in boxes}
        for name in sorted(sub_names):
            levels = name.split(DELIMITER)
            for i in range(1, len(levels)):
                parent = DELIMITER.join(levels[:i])
                if parent in shown or parent not in by_name or not regex.fullmatch(parent):
                    continue
                shown.add(parent)
                session.write(b"* LSUB " + _attributes(by_name[parent], True,
                                                      lsub_noselect=True) + b" " +
                              _DELIM + b" " + mailbox_name(parent) + b"\r\n")
    return Reply("LSUB completed")


# ------------------------------------------------------------------ STATUS


async def status(session: Session, cmd: Command) -> Reply:
    """STATUS (§6.3.10).  RECENT is always 0 (\\Recent is not tracked); UNSEEN
    counts messages without ``\\Seen``; HIGHESTMODSEQ per RFC 7162 §3.1.9."""
    args = cmd.args
    assert isinstance(args, StatusArgs) and session.user is not None
    info = session.store.get_mailbox(session.user, args.mailbox)
    if info.noselect:
        raise UserError("Mailbox is not selectable (\\Noselect)", imap_code="CANNOT")
    values: list[str] = []
    for item in args.items:
        if item == "MESSAGES":
            value = info.messages
        elif item == "RECENT":
            value = 0
        elif item == "UIDNEXT":
            value = info.uidnext
        elif item == "UIDVALIDITY":
            value = info.uidvalidity
        elif item == "UNSEEN":
            value = sum(1 for r in session.store.list_messages(info.id)
                        if "\\Seen" not in r.flags)
        elif item == "HIGHESTMODSEQ":
            value = info.highestmodseq
        elif item == "SIZE":  # RFC 8438
            value = info.size
        else:  # the parser only lets known items through
            continue
        values.append(f"{item} {value}")
    session.write(b"* STATUS " + mailbox_name(info.name) + b" (" +
                  " ".join(values).encode() + b")\r\n")
    return Reply("STATUS completed")


# ------------------------------------------------------------------ APPEND


async def append(session: Session, cmd: Command) -> Reply:
    """APPEND (§6.3.11) with APPENDUID (RFC 4315 §3).

    The literal's size limit is enforced by the receiver (``NO [TOOBIG]``).
    MIME facts are computed off the event loop; the reply is sent only after
    the store has synced the message.  A missing mailbox answers
    ``NO [TRYCREATE]`` (§6.3.11).  ``\\Recent`` cannot be set by a client.
    """
    args = cmd.args
    assert isinstance(args, Append) and session.user is not None
    try:
        info = session.store.get_mailbox(session.user, args.mailbox)
    except MailboxNotFound:
        raise MailboxNotFound("Mailbox does not exist", imap_code="TRYCREATE") from None
    if info.noselect:
        raise UserError("Mailbox is not selectable (\\Noselect)", imap_code="CANNOT")
    # max_message_size caps stored messages whichever way they come (SMTP SIZE too).
    if len(args.message) > min(session.limits.imap_max_literal_size,
                               session.limits.max_message_size):
        raise UserError("Message too big", imap_code="TOOBIG")
    if args.date is not None:
        offset = args.date.utcoffset() or dt.timedelta(0)
        internal_date = int(args.date.timestamp())
        tz_offset = int(offset.total_seconds() // 60)
    else:
        internal_date = int(time.time())
        tz_offset = 0
    facts = await asyncio.to_thread(lambda: analyze(args.message).to_bytes())
    flags = frozenset(f for f in args.flags if f.lower() != "\\recent")
    try:
        record = await session.store.append(
            session.user, info.name, args.message, facts,
            flags=flags, internal_date=internal_date, tz_offset=tz_offset,
        )
    except MailboxNotFound:
        raise MailboxNotFound("Mailbox does not exist", imap_code="TRYCREATE") from None
    uidvalidity = info.uidvalidity
    if record.mailbox_id != info.id:  # deleted and re-created meanwhile
        uidvalidity = session.store.get_mailbox(session.user, args.mailbox).uidvalidity
    return Reply("APPEND completed", code=f"APPENDUID {uidvalidity} {record.uid}")
