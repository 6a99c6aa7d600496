"""Typed IMAP requests: what the sans-IO receiver (``receiver.py``) produces and
the IMAP server (``mailserver/imap/``) consumes.

Grammar references are to RFC 3501 §9 unless
noted.  Strings are ``str``: mailbox names already decoded from modified
UTF-7 (RFC 3501 §5.1.3); message literals are ``bytes``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # sortkeys imports this module
    from mailserver.protocol.imap.sortkeys import SortCriterion

# ------------------------------------------------------------------ mailbox names


class InvalidMailboxName(str):
    """A mailbox name (or LIST pattern) as the client sent it, which is not the
    modified UTF-7 of any name (RFC 3501 §5.1.3), e.g. ``"&'+,-"``.

    It is a valid ``astring`` (RFC 3501 §9), so the command is not a BAD: no
    mailbox has that name, so the server answers ``NO [NONEXISTENT]`` (or
    ``NO [CANNOT]`` to CREATE and RENAME, which would have to invent one), and
    a LIST pattern of it matches nothing.  The text is the name as sent."""

    __slots__ = ()


# --------------------------------------------------------------------------- sets


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """``sequence-set`` (RFC 3501 §9): ranges of numbers, ``None`` standing for ``*``.

    ``ranges`` keep the client's order; a range may be given high:low.
    """

    ranges: tuple[tuple[int | None, int | None], ...]
    #: ``$``: the saved result of the last SEARCH RETURN (SAVE) (RFC 5182 §2);
    #: ``ranges`` is then empty and the server resolves it from session state.
    saved: bool = False

    def resolve(self, largest: int) -> list[int]:
        """The numbers it names, ascending and without duplicates, given that
        ``*`` is ``largest`` (the mailbox's message count, or its highest UID).

        Numbers above ``largest`` are kept for UID sets (a client may name UIDs
        that do not exist) — callers filter against what exists.  For an empty
        mailbox ``*`` is 0 and a range ``n:*`` names nothing below n... callers
        of message-sequence sets check validity with ``valid_for``.
        """
        out: set[int] = set()
        for lo, hi in self.ranges:
            a = largest if lo is None else lo
            b = largest if hi is None else hi
            if a > b:
                a, b = b, a
            out.update(range(max(a, 1), b + 1))
        return sorted(out)

    def contains(self, n: int, largest: int) -> bool:
        """Whether ``n`` is in the set, ``*`` being ``largest`` (ranges in either order)."""
        for lo, hi in self.ranges:
            a = largest if lo is None else lo
            b = largest if hi is None else hi
            if a > b:
                a, b = b, a
            if a <= n <= b:
                return True
        return False

    def valid_for(self, count: int) -> bool:
        """True when every explicit number is within 1..count (message sequence
        numbers, RFC 3501 §7.1: else the server answers BAD)."""
        return all(
            (x is None or 1 <= x <= count) for rng in self.ranges for x in rng
        )

    def names_all(self) -> bool:
        """True for a set that names every message whatever the mailbox holds:
        a range from 1 to ``*`` (``1:*``, ``*:1``), as a sequence set or a
        UID set (every UID is at least 1, RFC 3501 §2.3.1.1)."""
        return not self.saved and any(
            rng in ((1, None), (None, 1)) for rng in self.ranges)

    def iter_numbers(self, largest: int) -> Iterator[int]:
        """``resolve(largest)`` one number at a time (ascending, no duplicates)."""
        yield from self.resolve(largest)


# ------------------------------------------------------------------------- FETCH


@dataclass(frozen=True, slots=True)
class Section:
    """``section`` of BODY[...] (RFC 3501 §6.4.5).

    ``part`` is the part number path (``()`` for the whole message);
    ``text`` is None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT" or
    "MIME"; ``fields`` the upper-cased field names of HEADER.FIELDS(.NOT).
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One ``fetch-att``.

    ``name`` is one of FLAGS, UID, INTERNALDATE, RFC822.SIZE, RFC822,
    RFC822.HEADER, RFC822.TEXT, ENVELOPE, BODYSTRUCTURE, BODY, MODSEQ,
    BINARY, BINARY.SIZE.  For ``BODY[section]<partial>`` the name is "BODY"
    with ``section`` set (``BODY`` alone, without brackets, has ``section`` None
    and means the non-extensible BODYSTRUCTURE).  ``partial`` is
    ``(offset, length)`` in octets.
    """

    name: str
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None

    def response_name(self) -> bytes:
        """The item's name in the FETCH response: e.g. ``BODY[1.HEADER.FIELDS (FROM)]<0>``
        (RFC 3501 §7.4.2: the partial shows only its origin; PEEK is never echoed)."""
        if self.section is None:
            return self.name.encode()
        s = self.section
        spec = ".".join(str(p) for p in s.part)
        if s.text:
            spec = f"{spec}.{s.text}" if spec else s.text
            if s.text.startswith("HEADER.FIELDS"):
                spec += " (" + " ".join(s.fields) + ")"
        out = f"{self.name}[{spec}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"
        return out.encode()


# ------------------------------------------------------------------------ SEARCH


@dataclass(frozen=True, slots=True)
class SearchAll:
    """ALL: every message matches (RFC 3501 §6.4.4)."""

    pass


@dataclass(frozen=True, slots=True)
class SearchSeq:
    """A sequence set as a key (message sequence numbers)."""

    seqset: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchUid:
    """UID sequence-set as a key (RFC 3501 §6.4.4): matches the messages with those UIDs."""

    seqset: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """ANSWERED/DELETED/DRAFT/FLAGGED/SEEN/RECENT (``present``) and their UN- forms,
    KEYWORD/UNKEYWORD.  ``flag`` is spelt as stored ("\\\\Seen", or the keyword).
    NEW is And(Flag(\\Recent), Flag(\\Seen, False)); OLD is Flag(\\Recent, False)."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """FROM/TO/CC/BCC/SUBJECT (field upper-cased) and HEADER field string.

    Matches when the field's decoded value contains ``value`` case-insensitively;
    an empty ``value`` matches every message having the field (RFC 3501 §6.4.4)."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchText:
    """BODY (``header`` False) or TEXT (``header`` True: header and body)."""

    value: str
    header: bool = False


@dataclass(frozen=True, slots=True)
class SearchDate:
    """BEFORE/ON/SINCE (``sent`` False: INTERNALDATE, disregarding time and zone)
    and SENTBEFORE/SENTON/SENTSINCE (``sent`` True: the Date: header)."""

    op: str  # "BEFORE", "ON", "SINCE"
    date: dt.date
    sent: bool = False


@dataclass(frozen=True, slots=True)
class SearchSize:
    """LARGER n (``larger`` True) / SMALLER n, in octets of RFC822.SIZE."""

    size: int
    larger: bool


@dataclass(frozen=True, slots=True)
class SearchModseq:
    """MODSEQ n (RFC 7162 §3.1.5)."""

    modseq: int


@dataclass(frozen=True, slots=True)
class SearchWithin:
    """OLDER n (``older`` True) / YOUNGER n, n in seconds before now, against
    INTERNALDATE (RFC 5032 §3)."""

    seconds: int
    older: bool


@dataclass(frozen=True, slots=True)
class SearchNot:
    """NOT key: matches when ``key`` does not."""

    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    """OR key1 key2: matches when either matches."""

    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """A parenthesised list, or the top-level list of keys (all must match)."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchAll
    | SearchSeq
    | SearchUid
    | SearchFlag
    | SearchHeader
    | SearchText
    | SearchDate
    | SearchSize
    | SearchModseq
    | SearchWithin
    | SearchNot
    | SearchOr
    | SearchAnd
)


def search_leaves(key: SearchKey) -> Iterator[SearchKey]:
    """Every test of a search program (RFC 3501 §6.4.4), depth first: the keys
    under NOT, OR and parenthesised lists, never those three themselves."""
    match key:
        case SearchNot(key=inner):
            yield from search_leaves(inner)
        case SearchOr(left=left, right=right):
            yield from search_leaves(left)
            yield from search_leaves(right)
        case SearchAnd(keys=keys):
            for k in keys:
                yield from search_leaves(k)
        case _:
            yield key


# ---------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Login:
    """LOGIN (RFC 3501 §6.2.3): user name and password, as the client sent them."""

    user: str
    password: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    """AUTHENTICATE (RFC 3501 §6.2.2), with the SASL-IR initial response (RFC 4959) if any."""

    mechanism: str  # upper-cased
    initial: bytes | None = None  # SASL-IR initial response, base64-decoded; b"" for "="


@dataclass(frozen=True, slots=True)
class MailboxArg:
    """CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE, SELECT, EXAMINE (and their parameters)."""

    mailbox: str
    params: tuple[object, ...] = ()  # e.g. CONDSTORE / QRESYNC select params, CREATE (USE (...))


@dataclass(frozen=True, slots=True)
class Rename:
    """RENAME (RFC 3501 §6.3.5): existing and new mailbox names, decoded."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class ListArgs:
    """LIST and LSUB (RFC 3501 §6.3.8-9); ``pattern`` may hold ``*`` and ``%``."""

    reference: str
    pattern: str
    select_opts: tuple[str, ...] = ()  # RFC 5258
    return_opts: tuple[str, ...] = ()
    # Every pattern of RFC 5258 "LIST ref (p1 p2)"; ``pattern`` is the first.
    patterns: tuple[str, ...] = ()
    # RETURN (STATUS (...)) items, upper-cased (RFC 5819); "STATUS" is then in return_opts.
    status_items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusArgs:
    """STATUS (RFC 3501 §6.3.10): the mailbox and the items asked for."""

    mailbox: str
    items: tuple[str, ...]  # upper-cased: MESSAGES, RECENT, UIDNEXT, UIDVALIDITY, UNSEEN, ...


@dataclass(frozen=True, slots=True)
class Append:
    """APPEND (RFC 3501 §6.3.11): target mailbox, message octets, flags and INTERNALDATE.

    ``more``: the further messages of a MULTIAPPEND (RFC 3502 §6.3.11), each
    an ``Append`` of the same mailbox with an empty ``more``; ``messages()``
    lists them all in order."""

    mailbox: str
    message: bytes
    flags: frozenset[str] = frozenset()
    date: dt.datetime | None = None  # aware datetime from date-time
    binary: bool = False  # the message came as literal8 "~{n}" (RFC 3516 §4.4)
    more: tuple[Append, ...] = ()
    #: CATENATE (RFC 4469 §5): the parts, in order, ``("TEXT", octets)`` or
    #: ``("URL", url)``; ``message`` is then empty until the server joins them.
    catenate: tuple[tuple[str, bytes | str], ...] = ()

    def messages(self) -> tuple[Append, ...]:
        """This message and those of ``more``, in the client's order."""
        return (self, *self.more)


@dataclass(frozen=True, slots=True)
class Fetch:
    """FETCH / UID FETCH (RFC 3501 §6.4.5), with CHANGEDSINCE (RFC 7162 §3.1.4.1)."""

    seqset: SequenceSet
    atts: tuple[FetchAtt, ...]  # macros ALL/FAST/FULL already expanded
    changedsince: int | None = None
    vanished: bool = False  # the VANISHED modifier (RFC 7162 §3.2.6), UID FETCH only


@dataclass(frozen=True, slots=True)
class StoreArgs:
    """STORE / UID STORE (RFC 3501 §6.4.6): FLAGS (``set``), +FLAGS (``add``) or -FLAGS
    (``remove``), .SILENT, and UNCHANGEDSINCE (RFC 7162 §3.1.3).
    """

    seqset: SequenceSet
    mode: str  # "set", "add", "remove"
    silent: bool
    flags: frozenset[str]
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class CopyArgs:
    """COPY and MOVE."""

    seqset: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Search:
    """SEARCH / UID SEARCH (RFC 3501 §6.4.4), ESEARCH's RETURN options (RFC 4731)."""

    key: SearchKey
    charset: str | None = None
    return_opts: tuple[str, ...] | None = None  # ESEARCH (RFC 4731); None for plain SEARCH
    # True when CHARSET names a charset we cannot decode: answer NO [BADCHARSET]
    # (RFC 3501 §6.4.4); the strings were then decoded as latin-1 placeholders.
    bad_charset: bool = False
    # PARTIAL (RFC 9394 §3): positions (first, last) of the matches to return,
    # 1-based; negative count from the last match.  None: not asked.
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class ExpungeArgs:
    """EXPUNGE, or UID EXPUNGE with its UID set (RFC 4315 §2.1)."""

    uids: SequenceSet | None = None  # UID EXPUNGE (RFC 4315)


@dataclass(frozen=True, slots=True)
class Enable:
    """ENABLE (RFC 5161 §3.1): the capability names, upper-cased, in order."""

    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CancelUpdate:
    """CANCELUPDATE (RFC 5267 §4.3.5): the tags of the searching commands
    whose updates stop."""

    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IdArgs:
    """ID (RFC 2971 §3.1): the client's field/value pairs, or None for ``ID NIL``.

    Keys keep the client's spelling (they are compared case-insensitively);
    a value may be None (NIL)."""

    params: dict[str, str | None] | None


@dataclass(frozen=True, slots=True)
class Compress:
    """COMPRESS (RFC 4978 §3): the mechanism name, upper-cased ("DEFLATE")."""

    mechanism: str


@dataclass(frozen=True, slots=True)
class SortArgs:
    """SORT / UID SORT (RFC 5256 §3): ``criteria`` are
    ``sortkeys.SortCriterion``; the search part as in ``Search`` (the charset
    is mandatory in SORT's grammar, upper-cased)."""

    criteria: tuple[SortCriterion, ...]
    key: SearchKey
    charset: str
    bad_charset: bool = False
    # ESORT (RFC 5267 §3): RETURN options as for SEARCH; None for plain SORT.
    return_opts: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None  # RFC 9394 §3, as ``Search.partial``


@dataclass(frozen=True, slots=True)
class ThreadArgs:
    """THREAD / UID THREAD (RFC 5256 §4): ``algorithm`` upper-cased
    ("REFERENCES", "ORDEREDSUBJECT"), then the search part as in ``SortArgs``."""

    algorithm: str
    key: SearchKey
    charset: str
    bad_charset: bool = False


@dataclass(frozen=True, slots=True)
class QuotaArgs:
    """GETQUOTA (``root``), GETQUOTAROOT (``mailbox``) and SETQUOTA (``root``
    and ``limits``: (resource name upper-cased, limit) pairs), RFC 9208 §4."""

    root: str | None = None
    mailbox: str | None = None
    limits: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class NoArgs:
    """CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK, CLOSE, UNSELECT, IDLE, NAMESPACE."""


@dataclass(frozen=True, slots=True)
class Command:
    """One complete client command.

    ``name`` is upper-cased ("FETCH"); ``uid`` is True for ``UID FETCH`` etc.
    ``args`` is one of the argument classes above.
    """

    tag: str
    name: str
    args: object = field(default_factory=NoArgs)
    uid: bool = False


# ---------------------------------------------------------------- receiver events


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """A synchronizing literal ``{n}`` was announced: send ``+ ...`` (RFC 3501 §7.5)
    then keep feeding.  ``tag`` is the command's tag."""

    tag: str
    size: int


@dataclass(frozen=True, slots=True)
class Line:
    """A raw line (without CRLF), produced after ``Receiver.expect_line()``: the
    ``DONE`` that ends IDLE, or a SASL response during AUTHENTICATE."""

    data: bytes


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by ``Receiver.next_event()`` when more bytes must be fed.
NEED_DATA = _NeedData()
