"""Listing commands: LIST (RFC 3501 §6.3.8 with LIST-EXTENDED, RFC 5258, and
LIST-STATUS, RFC 5819), LSUB (§6.3.9) and STATUS (§6.3.10 with STATUS=SIZE,
RFC 8438; HIGHESTMODSEQ, RFC 7162 §3.1.9; APPENDLIMIT, RFC 7889 §5; DELETED,
RFC 9051 §6.3.11).

Choices where the RFCs leave room:

* ``\\HasChildren``/``\\HasNoChildren`` (RFC 3348) and special-use attributes
  (RFC 6154 §2) are always sent, asked for or not (RFC 5258 §4 and RFC 6154
  §2 allow it); ``\\Subscribed`` only when SUBSCRIBED is selected or returned.
* A subscription outlives its mailbox (RFC 3501 §6.3.6): ``LIST
  (SUBSCRIBED)`` shows such a name ``\\NonExistent \\Subscribed`` (RFC 5258
  §3.1), and LSUB shows it too.
* Names go out in modified UTF-7, or in UTF-8 once the client enabled
  UTF8=ACCEPT or IMAP4rev2 (RFC 6855 §3, RFC 9051 §5.1): ``session.utf8``.
* RECURSIVEMATCH (RFC 5258 §3.5, example 9 of §5): a mailbox matching the
  pattern gets ``("CHILDINFO" ("SUBSCRIBED"))`` (or ``"SPECIAL-USE"``) when
  a descendant passes the selection but matches no pattern, so is not
  listed itself; it is listed for that even when it fails the selection
  (``\\NonExistent`` when no mailbox has the name).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mailserver.errors import ProtocolSyntaxError, UserError
from mailserver.imap.state import TaggedOk
from mailserver.protocol.imap.response import mailbox_name
from mailserver.protocol.imap.types import Command, InvalidMailboxName, ListArgs, StatusArgs
from mailserver.store.model import DELIMITER, MailboxInfo

if TYPE_CHECKING:
    from mailserver.imap.session import ImapSession

_DELIM = mailbox_name(DELIMITER)


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


def _parents(boxes: Iterable[MailboxInfo]) -> set[str]:
    """Every name that has at least one child among ``boxes``."""
    out: set[str] = set()
    for box in boxes:
        levels = box.name.split(DELIMITER)
        for i in range(1, len(levels)):
            out.add(DELIMITER.join(levels[:i]))
    return out


def _attributes(info: MailboxInfo, has_children: bool, *, lsub_noselect: bool = False,
                subscribed: bool = False) -> bytes:
    attrs: list[str] = []
    if info.noselect or lsub_noselect:
        attrs.append("\\Noselect")
    attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")  # RFC 3348 §4
    if subscribed:
        attrs.append("\\Subscribed")  # RFC 5258 §3.1
    if info.special_use:
        attrs.append(info.special_use)  # RFC 6154 §2
    return ("(" + " ".join(attrs) + ")").encode()


async def list_(session: ImapSession, cmd: Command) -> TaggedOk:
    """LIST (§6.3.8), extended (RFC 5258 §3): several patterns, selection
    options SUBSCRIBED, REMOTE (no remote mailboxes here), RECURSIVEMATCH,
    SPECIAL-USE (RFC 6154 §5.1), return options SUBSCRIBED, CHILDREN,
    SPECIAL-USE and STATUS (RFC 5819: a ``* STATUS`` after the LIST line of
    each selectable mailbox).  ``LIST "" ""`` gives the delimiter and root."""
    args = cmd.args
    assert isinstance(args, ListArgs) and session.user is not None
    select_opts = set(args.select_opts)
    if "RECURSIVEMATCH" in select_opts and not select_opts & {"SUBSCRIBED", "SPECIAL-USE"}:
        # RFC 5258 §3.1: RECURSIVEMATCH alone is a syntax error.
        raise ProtocolSyntaxError("RECURSIVEMATCH needs another selection option")
    patterns = args.patterns or (args.pattern,)
    if patterns == ("",) and not select_opts:
        session.write(b"* LIST (\\Noselect) " + _DELIM + b' ""\r\n')
        return TaggedOk("LIST completed")
    if "STATUS" in args.return_opts and "HIGHESTMODSEQ" in args.status_items:
        session.enable("CONDSTORE")  # RFC 7162 §3.1: STATUS (HIGHESTMODSEQ) enables it
    boxes = await session.mailboxes.list_mailboxes(session.user)
    parents = _parents(boxes)
    # A pattern (or reference) that is not modified UTF-7 names no mailbox.
    regexes = [pattern_regex(args.reference, p) for p in patterns
               if p and not isinstance(p, InvalidMailboxName)
               and not isinstance(args.reference, InvalidMailboxName)]
    by_subscription = "SUBSCRIBED" in select_opts
    by_use = "SPECIAL-USE" in select_opts
    show_subscribed = by_subscription or "SUBSCRIBED" in args.return_opts

    def matches(name: str) -> bool:
        return any(r.fullmatch(name) for r in regexes)

    def passes(box: MailboxInfo) -> bool:
        if by_subscription and not box.subscribed:
            return False
        return not (by_use and not box.special_use)

    # RFC 5258 §3.1: with SUBSCRIBED, subscribed names whose mailbox is gone
    # are listed too, ``\NonExistent``; they pass the selection as well.
    gone = (await session.mailboxes.gone_subscriptions(session.user)
            if by_subscription and not by_use else [])
    passing = [b.name for b in boxes if passes(b)] + gone
    recursive = "RECURSIVEMATCH" in select_opts and (by_subscription or by_use)
    childinfo: set[str] = set()
    if recursive:
        # RFC 5258 §3.5 and the example 9 of §5: CHILDINFO marks a matching
        # mailbox with a descendant that passes the selection but is not
        # returned itself, as it matches no pattern ("foo2" and "eps2" for
        # "*2", not "baz2", whose passing children all match and are listed).
        for name in passing:
            if matches(name):
                continue
            levels = name.split(DELIMITER)
            childinfo.update(DELIMITER.join(levels[:i]) for i in range(1, len(levels)))
    info_items = " ".join(f'"{o}"' for o in ("SUBSCRIBED", "SPECIAL-USE")
                          if o in select_opts)
    by_name = {b.name: b for b in boxes}
    gone_set = set(gone)
    # Names in LIST order: the mailboxes, the gone subscriptions, and parent
    # levels that exist only as the ancestors of passing names (RFC 5258 §3.5:
    # listed ``\NonExistent`` with their CHILDINFO).
    names = sorted(set(by_name) | gone_set | (childinfo - set(by_name)))
    for name in names:
        if not matches(name):
            continue
        box = by_name.get(name)
        if box is None:
            hit = name in gone_set
            if not hit and name not in childinfo:
                continue
            attrs = ["\\NonExistent",
                     "\\HasChildren" if name in parents else "\\HasNoChildren"]
            if hit:
                attrs.append("\\Subscribed")
            line = (b"* LIST (" + " ".join(attrs).encode() + b") " + _DELIM + b" " +
                    mailbox_name(name, session.utf8))
        else:
            hit = passes(box)
            if not hit and name not in childinfo:
                continue
            line = (b"* LIST " + _attributes(box, name in parents,
                                             subscribed=show_subscribed and box.subscribed) +
                    b" " + _DELIM + b" " + mailbox_name(name, session.utf8))
        if name in childinfo:
            line += b' ("CHILDINFO" (' + info_items.encode() + b"))"
        session.write(line + b"\r\n")
        if hit and box is not None and "STATUS" in args.return_opts and not box.noselect:
            session.write(await status_response(session, box, args.status_items))
    return TaggedOk("LIST completed")


async def lsub(session: ImapSession, cmd: Command) -> TaggedOk:
    """LSUB (§6.3.9): subscribed names; with ``%``, an unsubscribed parent of a
    subscribed child is listed ``\\Noselect`` (§6.3.9)."""
    args = cmd.args
    assert isinstance(args, ListArgs) and session.user is not None
    if args.pattern == "":
        session.write(b"* LSUB (\\Noselect) " + _DELIM + b' ""\r\n')
        return TaggedOk("LSUB completed")
    if isinstance(args.pattern, InvalidMailboxName) or isinstance(args.reference,
                                                                  InvalidMailboxName):
        return TaggedOk("LSUB completed")  # not modified UTF-7: names no mailbox
    boxes = await session.mailboxes.list_mailboxes(session.user)
    parents = _parents(boxes)
    regex = pattern_regex(args.reference, args.pattern)
    subscribed = [b for b in boxes if b.subscribed]
    sub_names = {b.name for b in subscribed}
    shown: set[str] = set()
    for box in boxes:
        if regex.fullmatch(box.name) and box.name in sub_names:
            session.write(b"* LSUB " + _attributes(box, box.name in parents) + b" " +
                          _DELIM + b" " + mailbox_name(box.name, session.utf8) + b"\r\n")
            shown.add(box.name)
    for name in await session.mailboxes.gone_subscriptions(session.user):
        if regex.fullmatch(name):  # still subscribed, mailbox gone (RFC 3501 §6.3.6)
            session.write(b"* LSUB () " + _DELIM + b" " + mailbox_name(name, session.utf8) +
                          b"\r\n")
            shown.add(name)
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
                              _DELIM + b" " + mailbox_name(parent, session.utf8) + b"\r\n")
    return TaggedOk("LSUB completed")


# ------------------------------------------------------------------ STATUS


async def status(session: ImapSession, cmd: Command) -> TaggedOk:
    """STATUS (§6.3.10).  RECENT counts messages no read-write SELECT has
    seen yet (RFC 3501 §2.3.2); UNSEEN counts messages without ``\\Seen``;
    HIGHESTMODSEQ (RFC 7162 §3.1.9; it enables CONDSTORE, §3.1), SIZE
    (RFC 8438 §3), DELETED (RFC 9051 §6.3.11), APPENDLIMIT (RFC 7889 §5),
    DELETED-STORAGE (RFC 9208 §4.4, required with QUOTA=RES-STORAGE)."""
    args = cmd.args
    assert isinstance(args, StatusArgs) and session.user is not None
    info = await session.mailboxes.get_mailbox(session.user, args.mailbox)
    if info.noselect:
        raise UserError("Mailbox is not selectable (\\Noselect)", imap_code="CANNOT")
    if "HIGHESTMODSEQ" in args.items:
        session.enable("CONDSTORE")
    session.write(await status_response(session, info, args.items))
    return TaggedOk("STATUS completed")


async def status_response(session: ImapSession, info: MailboxInfo,
                          items: Iterable[str]) -> bytes:
    """``* STATUS name (item value ...)`` for a selectable mailbox (§7.2.4).

    Counting items (UNSEEN, DELETED, DELETED-STORAGE, RECENT) come from one
    walk over the fixed part of the message records (``Mailboxes.mailbox_counts``).
    Items we do not keep (MAILBOXID) are left out.
    """
    counts = None
    values: list[str] = []
    for item in items:
        if item in ("UNSEEN", "DELETED", "DELETED-STORAGE", "RECENT") and counts is None:
            counts = await session.mailboxes.mailbox_counts(info.id)
        if item == "MESSAGES":
            value = info.messages
        elif item == "RECENT":
            assert counts is not None
            value = counts.recent
        elif item == "UIDNEXT":
            value = info.uidnext
        elif item == "UIDVALIDITY":
            value = info.uidvalidity
        elif item == "UNSEEN":
            assert counts is not None
            value = counts.unseen
        elif item == "DELETED":
            assert counts is not None
            value = counts.deleted
        elif item == "DELETED-STORAGE":
            # RFC 9208 §4.4: what EXPUNGE would reclaim, in units of 1024 octets.
            assert counts is not None
            value = -(-counts.deleted_size // 1024)
        elif item == "HIGHESTMODSEQ":
            value = info.highestmodseq
        elif item == "SIZE":
            value = info.size
        elif item == "APPENDLIMIT":
            value = session.append_limit()
        else:  # the parser only lets known items through
            continue
        values.append(f"{item} {value}")
    return (b"* STATUS " + mailbox_name(info.name, session.utf8) + b" (" +
            " ".join(values).encode() + b")\r\n")
