"""IMAP command parser: one framed command -> ``types.Command`` (RFC 3501 §6, §9).

::

    command     = tag SP (command-any / command-auth / command-nonauth /
                  command-select) CRLF
    command-any = "CAPABILITY" / "LOGOUT" / "NOOP" / x-command / id   ; id: RFC 2971
    command-auth = append / create / delete / examine / list / lsub / rename /
                  select / status / subscribe / unsubscribe / enable / namespace / idle
    command-nonauth = login / authenticate / "STARTTLS"
    command-select = "CHECK" / "CLOSE" / "UNSELECT" / expunge / copy / move /
                  fetch / store / uid / search / cancelupdate
    cancelupdate = "CANCELUPDATE" 1*(SP quoted)                 ; RFC 5267 §5
    uid         = "UID" SP ("COPY" / "MOVE" / "FETCH" / "SEARCH" / "STORE" / "EXPUNGE")

Commands are looked up in ``COMMANDS``, one parse function each; the
connection-state check is the server's (mox-style table on its side).  The
parser knows nothing of state except ``utf8`` (mailbox names in UTF-8 after
``ENABLE UTF8=ACCEPT``).  Every failure is ``ProtocolSyntaxError`` carrying
the tag once it has been read.
"""

from __future__ import annotations

import binascii
import datetime as dt
import re
from collections.abc import Callable

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.imap import fetch_items as fetch_grammar
from mailserver.protocol.imap.flags import flag_list, flags_bare
from mailserver.protocol.imap.quota import getquota_args, getquotaroot_args, setquota_args
from mailserver.protocol.imap.search_keys import MONTHS, search_args
from mailserver.protocol.imap.seqset import parse_sequence_set, sequence_set_chars
from mailserver.protocol.imap.sortkeys import sort_args
from mailserver.protocol.imap.thread import thread_args
from mailserver.protocol.imap.tokens import DEFAULT_MAX_DEPTH, MAX_NUMBER64, Cursor
from mailserver.protocol.imap.types import (
    Append,
    Authenticate,
    CancelUpdate,
    Command,
    Compress,
    CopyArgs,
    Enable,
    ExpungeArgs,
    Fetch,
    IdArgs,
    ListArgs,
    Login,
    MailboxArg,
    NoArgs,
    Rename,
    Search,
    SequenceSet,
    StatusArgs,
    StoreArgs,
)

_TAG_CHARS = frozenset(c for c in range(0x21, 0x7F) if c not in b'(){%*"\\+')
# status-att (RFC 3501 §9; RFC 7162 HIGHESTMODSEQ; RFC 8438 SIZE;
# RFC 9051 DELETED; RFC 7889 APPENDLIMIT; RFC 8474 MAILBOXID)
STATUS_ITEMS = frozenset(
    {
        "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN",
        "HIGHESTMODSEQ", "SIZE", "DELETED", "APPENDLIMIT", "MAILBOXID",
        "DELETED-STORAGE",
    }
)
# RFC 5258 §6 list-select-base-opt / list-select-mod-opt; RFC 6154 SPECIAL-USE.
LIST_SELECT_OPTS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
# RFC 5258 return-option; RFC 5819 STATUS; RFC 6154 SPECIAL-USE.
LIST_RETURN_OPTS = frozenset({"SUBSCRIBED", "CHILDREN", "STATUS", "SPECIAL-USE"})
UID_COMMANDS = frozenset({"COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE",
                          "SORT", "THREAD"})  # RFC 5256 §5


def _seqset(cur: Cursor) -> SequenceSet:
    raw = cur.word(sequence_set_chars(), "sequence set")
    return parse_sequence_set(raw.decode("ascii"))


def _params(cur: Cursor) -> tuple[object, ...]:
    """[SP "(" param *(SP param) ")"] of SELECT/EXAMINE/CREATE (RFC 4466 §2):
    a flat tuple of generic values; top-level atoms (parameter names) upper-cased,
    e.g. ``("QRESYNC", (67890007, 90060115194045000, "41:211"))``."""
    if not cur.take_sp():
        return ()
    if cur.peek() != 0x28:
        raise cur.error('Expected "("')
    value = cur.generic()
    assert isinstance(value, tuple)
    if not value:
        raise cur.error("Empty parameter list")
    return tuple(v.upper() if isinstance(v, str) else v for v in value)


# ------------------------------------------------------------------- commands


def _no_args(cur: Cursor, uid: bool) -> NoArgs:
    return NoArgs()


def _login(cur: Cursor, uid: bool) -> Login:
    """login = "LOGIN" SP userid SP password; userid = astring; password = astring"""
    cur.sp()
    user = cur.astr()
    cur.sp()
    return Login(user, cur.astr())


_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _authenticate(cur: Cursor, uid: bool) -> Authenticate:
    """authenticate = "AUTHENTICATE" SP auth-type [SP (base64 / "=")]  ; RFC 4959
    auth-type = atom"""
    cur.sp()
    mechanism = cur.keyword()
    if not cur.take_sp():
        return Authenticate(mechanism)
    raw = cur.word(_B64_CHARS, "initial response")
    if raw == b"=":
        return Authenticate(mechanism, b"")
    return Authenticate(mechanism, decode_base64(raw))


def decode_base64(raw: bytes) -> bytes:
    """Strict base64 (RFC 4648 §4) as AUTHENTICATE uses it (RFC 3501 §6.2.2);
    raises ``ProtocolSyntaxError``."""
    if len(raw) % 4:
        raise ProtocolSyntaxError("Invalid base64")
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        raise ProtocolSyntaxError("Invalid base64") from None


def _enable(cur: Cursor, uid: bool) -> Enable:
    """enable = "ENABLE" 1*(SP capability)  (RFC 5161 §4)"""
    names = []
    cur.sp()
    names.append(cur.keyword())
    while cur.take_sp():
        names.append(cur.keyword())
    return Enable(tuple(names))


def _cancelupdate(cur: Cursor, uid: bool) -> CancelUpdate:
    """cancelupdate = "CANCELUPDATE" 1*(SP quoted)  (RFC 5267 §5); a tag is
    ASCII (RFC 3501 §9), so another octet can name no command."""
    tags = []
    cur.sp()
    tags.append(cur.quoted().decode("ascii", "replace"))
    while cur.take_sp():
        tags.append(cur.quoted().decode("ascii", "replace"))
    return CancelUpdate(tuple(tags))


def _compress(cur: Cursor, uid: bool) -> Compress:
    """compress = "COMPRESS" SP algorithm; algorithm = atom  (RFC 4978 §5)"""
    cur.sp()
    return Compress(cur.keyword())


def _id(cur: Cursor, uid: bool) -> IdArgs:
    """id = "ID" SP id-params-list  (RFC 2971 §4)
    id-params-list = "(" *(string SP nstring) ")" / nil"""
    cur.sp()
    if cur.take(b"NIL"):
        return IdArgs(None)
    cur.open_paren()
    params: dict[str, str | None] = {}
    if cur.close_paren():
        return IdArgs(params)
    while True:
        key = cur.text(cur.string())
        cur.sp()
        value = cur.nstring()
        params[key] = None if value is None else cur.text(value)
        if cur.close_paren():
            return IdArgs(params)
        cur.sp()


def _mailbox_arg(cur: Cursor, uid: bool) -> MailboxArg:
    """select = "SELECT" SP mailbox [select-params]  (RFC 4466 §2.1)
    create = "CREATE" SP mailbox [create-params]  (RFC 4466 §2.2)"""
    cur.sp()
    mailbox = cur.mailbox()
    return MailboxArg(mailbox, _params(cur))


def _mailbox_only(cur: Cursor, uid: bool) -> MailboxArg:
    """delete / subscribe / unsubscribe = name SP mailbox"""
    cur.sp()
    return MailboxArg(cur.mailbox())


def _rename(cur: Cursor, uid: bool) -> Rename:
    """rename = "RENAME" SP mailbox SP mailbox"""
    cur.sp()
    old = cur.mailbox()
    cur.sp()
    return Rename(old, cur.mailbox())


def _option_list(cur: Cursor, allowed: frozenset[str], what: str) -> list[str]:
    cur.open_paren()
    opts: list[str] = []
    if cur.close_paren():
        return opts
    while True:
        opt = cur.keyword()
        if opt not in allowed:
            raise cur.error(f"Unknown {what} {opt[:40]}")
        opts.append(opt)
        if cur.close_paren():
            return opts
        cur.sp()


def _status_items(cur: Cursor) -> tuple[str, ...]:
    """"(" status-att *(SP status-att) ")" """
    cur.open_paren()
    items = [cur.keyword()]
    while not cur.close_paren():
        cur.sp()
        items.append(cur.keyword())
    for item in items:
        if item not in STATUS_ITEMS:
            raise cur.error(f"Unknown status item {item[:40]}")
    return tuple(dict.fromkeys(items))


def _list(cur: Cursor, uid: bool) -> ListArgs:
    """list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat
              [SP list-return-opts]                               ; RFC 5258 §6
    mbox-or-pat = list-mailbox / patterns
    patterns = "(" list-mailbox *(SP list-mailbox) ")"
    list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"
    return-option =/ "STATUS" SP "(" status-att *(SP status-att) ")"  ; RFC 5819"""
    cur.sp()
    select_opts: list[str] = []
    if cur.peek() == 0x28:
        select_opts = _option_list(cur, LIST_SELECT_OPTS, "LIST selection option")
        cur.sp()
    reference = cur.decode_mailbox(cur.astring(), normalise_inbox=False)
    cur.sp()
    patterns: list[str] = []
    if cur.take(b"("):
        patterns.append(cur.list_mailbox())
        while not cur.close_paren():
            cur.sp()
            patterns.append(cur.list_mailbox())
    else:
        patterns.append(cur.list_mailbox())
    return_opts: list[str] = []
    status_items: tuple[str, ...] = ()
    if cur.take_sp():
        cur.expect(b"RETURN ", "RETURN")
        cur.open_paren()
        if not cur.close_paren():
            while True:
                opt = cur.keyword()
                if opt not in LIST_RETURN_OPTS:
                    raise cur.error(f"Unknown LIST return option {opt[:40]}")
                if opt == "STATUS":
                    cur.sp()
                    status_items = _status_items(cur)
                return_opts.append(opt)
                if cur.close_paren():
                    break
                cur.sp()
    return ListArgs(
        reference,
        patterns[0],
        tuple(dict.fromkeys(select_opts)),
        tuple(dict.fromkeys(return_opts)),
        tuple(patterns),
        status_items,
    )


def _lsub(cur: Cursor, uid: bool) -> ListArgs:
    """lsub = "LSUB" SP mailbox SP list-mailbox"""
    cur.sp()
    reference = cur.decode_mailbox(cur.astring(), normalise_inbox=False)
    cur.sp()
    pattern = cur.list_mailbox()
    return ListArgs(reference, pattern, patterns=(pattern,))


def _status(cur: Cursor, uid: bool) -> StatusArgs:
    """status = "STATUS" SP mailbox SP "(" status-att *(SP status-att) ")" """
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    return StatusArgs(mailbox, _status_items(cur))


# date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
# date-day-fixed = (SP DIGIT) / 2DIGIT; time = 2DIGIT ":" 2DIGIT ":" 2DIGIT
# zone = ("+" / "-") 4DIGIT
_DATE_TIME_RE = re.compile(
    r"( ?[0-9]|[0-9]{2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)


def parse_date_time(cur: Cursor, raw: bytes) -> dt.datetime:
    """The content of a ``date-time`` quoted string -> an aware datetime.
    A one-digit day without its leading space is accepted too."""
    m = _DATE_TIME_RE.fullmatch(raw.decode("ascii", "replace"))
    if m is None or m.group(2).upper() not in MONTHS:
        raise cur.error("Invalid date-time")
    day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
    try:
        offset = dt.timedelta(hours=int(zh), minutes=int(zm))
        if int(zm) >= 60:
            raise ValueError
        tz = dt.timezone(-offset if sign == "-" else offset)
        return dt.datetime(
            int(year), MONTHS.index(mon.upper()) + 1, int(day), int(hh), int(mm), int(ss), tzinfo=tz
        )
    except ValueError:
        raise cur.error("Invalid date-time") from None


def _append(cur: Cursor, uid: bool) -> Append:
    """append = "APPEND" SP mailbox 1*append-message       ; RFC 3502 §6.3.11
    append-message = [SP flag-list] [SP date-time] SP append-data
    append-data    = literal / literal8 (RFC 3516 §4.4) / the UTF8 form of
                     RFC 6855 §4 (once the receiver is in UTF-8 mode)
    More than one message is a MULTIAPPEND: one ``Append`` with ``more``."""
    cur.sp()
    mailbox = cur.mailbox()
    first = _append_message(cur, mailbox)
    more = []
    while cur.peek() == 0x20:  # SP: another message (MULTIAPPEND)
        more.append(_append_message(cur, mailbox))
    if not more:
        return first
    return Append(mailbox, first.message, first.flags, first.date, first.binary, tuple(more))


def _append_message(cur: Cursor, mailbox: str) -> Append:
    cur.sp()
    flags: frozenset[str] = frozenset()
    date: dt.datetime | None = None
    if cur.peek() == 0x28:
        flags = flag_list(cur)
        cur.sp()
    if cur.peek() == 0x22:
        date = parse_date_time(cur, cur.quoted())
        cur.sp()
    if cur.take(b"CATENATE ("):
        # RFC 4469 §5: append-data-ext = "CATENATE" SP "(" cat-part *(SP cat-part) ")"
        #              cat-part = "TEXT" SP literal / "URL" SP astring
        parts: list[tuple[str, bytes | str]] = []
        while True:
            if cur.take(b"TEXT "):
                parts.append(("TEXT", cur.literal(allow8=True)))
            elif cur.take(b"URL "):
                parts.append(("URL", cur.astr()))
            else:
                raise cur.error("Expected TEXT or URL in CATENATE")
            if cur.take(b")"):
                break
            cur.sp()
        return Append(mailbox, b"", flags, date, False, catenate=tuple(parts))
    if cur.utf8 and cur.take(b"UTF8 ("):
        # RFC 6855 §4: append-data =/ "UTF8" SP "(" literal8 ")"  (after UTF8=ACCEPT)
        message = cur.literal(allow8=True)
        cur.expect(b")", '")"')
        return Append(mailbox, message, flags, date, True)
    binary = cur.peek() == 0x7E
    message = cur.literal(allow8=True)
    return Append(mailbox, message, flags, date, binary)


def _check_uid_only(cur: Cursor, uid: bool, what: str) -> None:
    if not uid:
        raise cur.error(f"{what} is only valid with UID")


def _search(cur: Cursor, uid: bool) -> Search:
    return search_args(cur)


def _fetch(cur: Cursor, uid: bool) -> Fetch:
    """fetch = "FETCH" SP sequence-set SP (macro / fetch-att / "(" fetch-att ... ")")
    [fetch-modifiers]  (see fetch_items.py)"""
    cur.sp()
    seqset = _seqset(cur)
    cur.sp()
    atts = fetch_grammar.fetch_atts(cur)
    changedsince, vanished = fetch_grammar.fetch_modifiers(cur)
    if vanished:
        # RFC 7162 §3.2.6: VANISHED needs UID FETCH and CHANGEDSINCE.
        _check_uid_only(cur, uid, "VANISHED")
        if changedsince is None:
            raise cur.error("VANISHED requires CHANGEDSINCE")
    return Fetch(seqset, atts, changedsince, vanished)


def _store(cur: Cursor, uid: bool) -> StoreArgs:
    """store = "STORE" SP sequence-set [store-modifiers] SP store-att-flags
    store-modifiers = SP "(" "UNCHANGEDSINCE" SP mod-sequence-valzer ")"  ; RFC 7162
    store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag)))"""
    cur.sp()
    seqset = _seqset(cur)
    cur.sp()
    unchangedsince: int | None = None
    if cur.take(b"("):
        cur.expect(b"UNCHANGEDSINCE ", "UNCHANGEDSINCE")
        unchangedsince = cur.number(MAX_NUMBER64, "mod-sequence")
        cur.expect(b")", '")"')
        cur.sp()
    mode = "set"
    if cur.take(b"+"):
        mode = "add"
    elif cur.take(b"-"):
        mode = "remove"
    item = cur.word(
        frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz."), "FLAGS"
    ).upper()
    if item not in (b"FLAGS", b"FLAGS.SILENT"):
        raise cur.error("Expected FLAGS")
    cur.sp()
    flags = flag_list(cur) if cur.peek() == 0x28 else flags_bare(cur)
    return StoreArgs(seqset, mode, item == b"FLAGS.SILENT", flags, unchangedsince)


def _copy(cur: Cursor, uid: bool) -> CopyArgs:
    """copy = "COPY" SP sequence-set SP mailbox;  move = "MOVE" ... (RFC 6851)"""
    cur.sp()
    seqset = _seqset(cur)
    cur.sp()
    return CopyArgs(seqset, cur.mailbox())


def _expunge(cur: Cursor, uid: bool) -> ExpungeArgs:
    """expunge = "EXPUNGE";  uid-expunge = "UID" SP "EXPUNGE" SP sequence-set (RFC 4315)"""
    if not uid:
        return ExpungeArgs()
    cur.sp()
    return ExpungeArgs(_seqset(cur))


Handler = Callable[[Cursor, bool], object]

#: Command name -> parse function for the text after the name.
COMMANDS: dict[str, Handler] = {
    "CAPABILITY": _no_args,
    "NOOP": _no_args,
    "LOGOUT": _no_args,
    "STARTTLS": _no_args,
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "ENABLE": _enable,
    "COMPRESS": _compress,  # RFC 4978
    "ID": _id,
    "NAMESPACE": _no_args,
    "SELECT": _mailbox_arg,
    "EXAMINE": _mailbox_arg,
    "CREATE": _mailbox_arg,
    "DELETE": _mailbox_only,
    "RENAME": _rename,
    "SUBSCRIBE": _mailbox_only,
    "UNSUBSCRIBE": _mailbox_only,
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "CHECK": _no_args,
    "CLOSE": _no_args,
    "UNSELECT": _no_args,
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    "IDLE": _no_args,
    "SORT": sort_args,  # RFC 5256 §3
    "THREAD": thread_args,  # RFC 5256 §4
    "GETQUOTA": getquota_args,  # RFC 9208 §4.2
    "GETQUOTAROOT": getquotaroot_args,  # RFC 9208 §4.3
    "SETQUOTA": setquota_args,  # RFC 9208 §4.1
    "CANCELUPDATE": _cancelupdate,  # RFC 5267 §4.3.5
}


def parse_command(parts: list[bytes], literals: list[bytes], *, utf8: bool = False,
                  max_depth: int = DEFAULT_MAX_DEPTH) -> Command:
    """Parse one framed command (see ``tokens.Cursor``) into a ``Command``.

    ``max_depth``: deepest nesting of parenthesised lists and search keys.

    Raises ``ProtocolSyntaxError`` (with ``tag`` once it was read) for
    anything outside the grammar, including unknown commands.
    """
    cur = Cursor(parts, literals, utf8=utf8, max_depth=max_depth)
    tag_raw = cur.word(_TAG_CHARS, "tag")
    tag = tag_raw.decode("ascii")
    try:
        cur.sp()
        name = cur.keyword()
        uid = False
        if name == "UID":
            cur.sp()
            name = cur.keyword()
            uid = True
            if name not in UID_COMMANDS:
                raise cur.error(f"Unknown UID command {name[:40]}")
        handler = COMMANDS.get(name)
        if handler is None:
            raise cur.error(f"Unknown command {name[:40]}")
        args = handler(cur, uid)
        cur.end()
    except ProtocolSyntaxError as exc:
        exc.tag = tag
        raise
    return Command(tag, name, args, uid)
