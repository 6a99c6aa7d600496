"""SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO): the grammar, the base
subject of §2.1 and the per-message sort keys.  Pure code, stdlib only.

::

    sort            = ["UID" SP] "SORT" SP sort-criteria SP search-criteria
    sort-criteria   = "(" sort-criterion *(SP sort-criterion) ")"
    sort-criterion  = ["REVERSE" SP] sort-key
    sort-key        = "ARRIVAL" / "CC" / "DATE" / "FROM" / "SIZE" /
                      "SUBJECT" / "TO" / "DISPLAYFROM" / "DISPLAYTO"   ; RFC 5957 §3
    search-criteria = charset 1*(SP search-key)
    charset         = atom / quoted

Design notes
------------
* A message's header is parsed once per command (``SortHeaders.parse``) and
  only the first occurrence of each field counts, as in ENVELOPE.
* String keys follow the comparators the RFCs name: ``i;ascii-casemap`` for
  SUBJECT/FROM/TO/CC (RFC 5256 §3: only ASCII letters fold), Unicode case
  casemap for DISPLAYFROM/DISPLAYTO (RFC 5957 §4, ``i;unicode-casemap`` as
  SEARCH uses it, RFC 5051).  Python compares ``str`` by code point,
  which is the octet order of their UTF-8 form (RFC 5256 §2.1 step 1).
* The final tie-break is the sequence number, ascending, whatever REVERSE
  said (RFC 5256 §3: "REVERSE only reverses a single criterion, and does not
  affect the implicit 'sequence number' sort criterion"); ARRIVAL is the
  INTERNALDATE alone, so messages received in the same second keep their
  mailbox order under ``REVERSE ARRIVAL`` too, as Dovecot's do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailserver.protocol.imap.search_keys import return_options, search_program
from mailserver.protocol.imap.tokens import Cursor
from mailserver.protocol.imap.types import SortArgs
from mailserver.protocol.mime.facts import casemap, parse_sent_date
from mailserver.protocol.mime.headers import (
    bytes_to_text,
    decode_words,
    find_header_end,
    parse_fields,
    unfold,
)
from mailserver.protocol.mime.imap_envelope import parse_addresses

SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
_MAX_CRITERIA = 32  # a longer list is hostile, not useful


@dataclass(frozen=True, slots=True)
class SortCriterion:
    """One ``sort-criterion``: ``key`` upper-cased, ``reverse`` for ``REVERSE``."""

    key: str
    reverse: bool = False


def sort_criteria(cur: Cursor) -> tuple[SortCriterion, ...]:
    """``sort-criteria`` (see the module grammar).  Raises ``ProtocolSyntaxError``."""
    cur.open_paren()
    out: list[SortCriterion] = []
    while True:
        name = cur.keyword()
        reverse = False
        if name == "REVERSE":
            reverse = True
            cur.sp()
            name = cur.keyword()
        if name not in SORT_KEYS:
            raise cur.error(f"Unknown sort key {name[:40]}")
        out.append(SortCriterion(name, reverse))
        if len(out) > _MAX_CRITERIA:
            raise cur.error("Too many sort criteria")
        if cur.close_paren():
            return tuple(out)
        cur.sp()


# --------------------------------------------------------------- base subject

# RFC 5256 §5:
#   subj-refwd  = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
#   subj-blob   = "[" *BLOBCHAR "]" *WSP
#   subj-leader = (*subj-blob subj-refwd) / WSP
#   subj-trailer = "(fwd)" / WSP
#   subj-fwd-hdr = "[fwd:" ;  subj-fwd-trl = "]"
# After step 1 the only white space left is a single SP.
_BLOB = r"\[[^\[\]]*\] *"
_BLOBS = re.compile(r"(?:" + _BLOB + r")*")
_REFWD = re.compile(r"(?:re|fwd?) *(?:" + _BLOB + r")?:", re.IGNORECASE)
_WS = re.compile(r"[ \t\r\n]+")


def _blob_run_end(s: str, lo: int, hi: int) -> int:
    """Where the run of blobs at ``s[lo:hi]`` ends (``lo`` when there is none)."""
    m = _BLOBS.match(s, lo, hi)  # matches the empty string: never None in fact
    return lo if m is None else m.end()

_NON_SPACE = re.compile(r"[^ ]")


def normalise_subject(raw: str) -> str:
    """Step 1 of RFC 5256 §2.1 on decoded text (``decode_header_text`` does
    the RFC 2047 part): every run of white space becomes one SP."""
    return _WS.sub(" ", raw)


def base_subject(subject: str) -> tuple[str, bool]:
    """The base subject of RFC 5256 §2.1 and whether the subject marked a
    reply or forward (a ``subj-refwd``, a ``(fwd)`` trailer or a ``[fwd: ]``
    wrapper was removed; REFERENCES step 5C uses it).

    ``subject`` is the decoded header value (step 1 is applied here).  The
    result keeps its case; compare it through ``ascii_casemap``.

    The steps work on indexes, never re-slicing the text per removal, and a
    run of blobs is looked at once (step 4 removes the blobs of a run one by
    one, and none of those removals can make a leader match), so the cost is
    linear in the length of the subject even for hostile ones.
    """
    s = normalise_subject(subject)
    reply = False
    lo, hi = 0, len(s)  # the subject is s[lo:hi]
    while True:
        # (2) Remove trailers: "(fwd)" and white space, repeatedly.
        while hi > lo:
            if hi - lo >= 5 and s[hi - 5:hi].lower() == "(fwd)":
                hi -= 5
                reply = True
            elif s[hi - 1] == " ":
                hi -= 1
            else:
                break
        while True:
            # (3) Remove leaders: WSP, or blobs followed by re/fw/fwd ":".
            while True:
                if s.startswith(" ", lo, hi):
                    lo += 1
                    continue
                run = _blob_run_end(s, lo, hi)
                refwd = _REFWD.match(s, run, hi)
                if refwd is None:
                    break
                lo = refwd.end()
                reply = True
            # (4) Remove a leading blob when text remains after it; (5) repeat.
            run = _blob_run_end(s, lo, hi)
            if run == lo:
                break
            if _NON_SPACE.search(s, run, hi):
                lo = run  # every blob of the run goes, one after the other
            else:
                lo = s.rfind("[", lo, run)  # the last blob is all there is: keep it
                break
        # (6) "[fwd:" ... "]": unwrap and go back to (2).
        if hi - lo >= 6 and s[lo:lo + 5].lower() == "[fwd:" and s[hi - 1] == "]":
            lo += 5
            hi -= 1
            reply = True
            continue
        return s[lo:hi], reply


_ASCII_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}


def ascii_casemap(s: str) -> str:
    """The ``i;ascii-casemap`` comparator's form (RFC 4790 §9.2): a-z to A-Z only."""
    return s.translate(_ASCII_UPPER)


# -------------------------------------------------------------- header facts


def decode_header_text(raw: bytes) -> str:
    """A raw header value as text: unfolded, 8-bit as UTF-8 (else Latin-1),
    RFC 2047 encoded-words decoded."""
    return decode_words(bytes_to_text(unfold(raw))).strip(" \t\r\n")


_WANTED = (b"subject", b"from", b"to", b"cc", b"date", b"message-id", b"references",
           b"in-reply-to")


@dataclass(frozen=True, slots=True)
class SortHeaders:
    """The raw values (bytes, still folded) of the header fields SORT and
    THREAD look at; ``None`` when the field is absent.  First occurrence wins."""

    subject: bytes | None = None
    from_: bytes | None = None
    to: bytes | None = None
    cc: bytes | None = None
    date: bytes | None = None
    message_id: bytes | None = None
    references: bytes | None = None
    in_reply_to: bytes | None = None

    @classmethod
    def parse(cls, message: bytes) -> SortHeaders:
        """From a message (or its header block alone): one pass over the header."""
        end, _ = find_header_end(message, 0, len(message))
        first: dict[bytes, bytes] = {}
        for f in parse_fields(message[:end]):
            name = f.name.lower()
            if name in _WANTED and name not in first:
                first[name] = f.value
        return cls(
            first.get(b"subject"), first.get(b"from"), first.get(b"to"), first.get(b"cc"),
            first.get(b"date"), first.get(b"message-id"), first.get(b"references"),
            first.get(b"in-reply-to"),
        )

    def sent_date(self) -> int | None:
        """The Date: field as POSIX seconds (UTC), ``None`` when absent or unparsable."""
        if self.date is None:
            return None
        return parse_sent_date(bytes_to_text(unfold(self.date)))

    def subject_text(self) -> str:
        """The Subject: field as text (``decode_header_text``: RFC 2047 decoded); "" if absent."""
        return "" if self.subject is None else decode_header_text(self.subject)


def _first_address(raw: bytes | None) -> tuple[str | None, str, str | None] | None:
    """(display name, mailbox, host) of the first [IMAP] address structure
    (RFC 3501 §7.4.2) of a field: a group's start counts, as its structure
    (name NIL, mailbox the group name, host NIL), as RFC 5256 §3 and RFC 5957
    §3 speak of the first address structure, and as Dovecot takes it.  A
    missing local part or domain is the ``MISSING_*`` fill-in ENVELOPE sends
    (``imap_envelope``, Dovecot's too).  None without any address."""
    if raw is None:
        return None
    for name, _adl, mailbox, host in parse_addresses(bytes_to_text(unfold(raw))):
        if mailbox is None:  # a group's end: never first in practice
            continue
        if host is None:  # a group's start
            return None, mailbox, None
        return name, mailbox, host
    return None


def address_key(raw: bytes | None) -> str:
    """FROM/TO/CC: the addr-mailbox of the first address (a group's name when
    the field starts with a group), ``i;ascii-casemap`` (RFC 5256 §3); the
    empty string when there is none."""
    first = _first_address(raw)
    return "" if first is None else ascii_casemap(first[1])


def display_key(raw: bytes | None) -> str:
    """DISPLAYFROM/DISPLAYTO (RFC 5957 §3): the first address's display name,
    RFC 2047-decoded, when not empty; else ``mailbox@host``; else the
    mailbox alone (a group's name); else "".  Compared by
    ``i;unicode-casemap`` (RFC 5957 §4, RFC 5051)."""
    first = _first_address(raw)
    if first is None:
        return ""
    name, mailbox, host = first
    shown = decode_words(name).strip() if name else ""
    if not shown:
        shown = f"{mailbox}@{host}" if mailbox and host else mailbox
    return casemap(shown)


# ------------------------------------------------------------------- sorting


@dataclass(frozen=True, slots=True)
class SortItem:
    """One message to sort: ``seq`` its sequence number, ``number`` what the
    response lists (sequence number or UID), ``internal_date`` POSIX seconds,
    ``size`` RFC822.SIZE, ``headers`` its ``SortHeaders``."""

    seq: int
    number: int
    internal_date: int
    size: int
    headers: SortHeaders


def _key_of(key: str, item: SortItem) -> Any:  # compared with keys of its own kind only
    h = item.headers
    if key == "ARRIVAL":
        # The INTERNALDATE alone: equal ones fall to the sequence number, which
        # REVERSE does not turn (RFC 5256 §3).
        return item.internal_date
    if key == "DATE":
        # RFC 5256 §2.2: no usable Date: means the INTERNALDATE is the sent date.
        sent = h.sent_date()
        return item.internal_date if sent is None else sent
    if key == "SIZE":
        return item.size
    if key == "SUBJECT":
        return ascii_casemap(base_subject(h.subject_text())[0])
    if key == "FROM":
        return address_key(h.from_)
    if key == "TO":
        return address_key(h.to)
    if key == "CC":
        return address_key(h.cc)
    if key == "DISPLAYFROM":
        return display_key(h.from_)
    if key == "DISPLAYTO":
        return display_key(h.to)
    raise ValueError(f"unknown sort key {key}")


def sort_items(items: Sequence[SortItem], criteria: Sequence[SortCriterion]) -> list[int]:
    """The ``number`` of each item in SORT order (RFC 5256 §3): by the
    criteria left to right, each optionally reversed, then by sequence number.

    Each key is computed once per item.  Stable sorts from the last criterion
    to the first give the lexicographic order (Python's sort stays stable with
    ``reverse=True``).
    """
    order = sorted(items, key=lambda it: it.seq)
    for crit in reversed(criteria):
        keys = {it.seq: _key_of(crit.key, it) for it in order}
        order.sort(key=lambda it: keys[it.seq], reverse=crit.reverse)  # noqa: B023
    return [it.number for it in order]


# ------------------------------------------------------------------- grammar


def search_criteria(cur: Cursor) -> tuple[object, str, bool]:
    """``search-criteria = charset 1*(SP search-key)`` (RFC 5256 §5):
    ``(key, charset upper-cased, charset unknown)``."""
    charset = cur.astr().upper()
    cur.sp()
    key, bad = search_program(cur, charset)
    return key, charset, bad


def sort_args(cur: Cursor, uid: bool) -> SortArgs:
    """Everything after ``SORT`` (see the module grammar)."""
    cur.sp()
    return_opts: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None
    if cur.take(b"RETURN "):  # ESORT, RFC 5267 §3.2
        return_opts, partial = return_options(cur)
        if "SAVE" in return_opts:
            raise cur.error("SORT RETURN (SAVE) is not supported")
        cur.sp()
    criteria = sort_criteria(cur)
    cur.sp()
    key, charset, bad = search_criteria(cur)
    return SortArgs(criteria, key, charset, bad, return_opts, partial)  # type: ignore[arg-type]
