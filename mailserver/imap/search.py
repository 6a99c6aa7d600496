"""SEARCH evaluation (RFC 3501 §6.4.4; RFC 7162 §3.1.5 for MODSEQ).

``search`` walks the selected mailbox's messages in sequence order and keeps
those the key matches.  The key tree comes from the parser
(``mailserver.protocol.imap.types``); before the walk it is re-planned so that
cheap tests run first: in an AND the keys are sorted by cost, in an OR the
cheaper side is tried first, so a message's bytes are only read when the
flag, size, date and number tests have not already decided.

Costs, lowest first:

0. the record alone: ALL, sequence and UID sets, flags, sizes, INTERNALDATE
   (BEFORE/ON/SINCE and WITHIN's OLDER/YOUNGER, RFC 5032), MODSEQ;
1. the MIME facts: SENTBEFORE/SENTON/SENTSINCE (the Date: header's day);
2. the header: FROM, TO, CC, BCC, SUBJECT, HEADER;
3. the decoded body: BODY, TEXT.

``needs_content`` tells the server whether a key reaches cost 1 or more, so
that it can run the search in a worker thread.

Matching rules, where RFC 3501 leaves room:

* Strings match as case-insensitive substrings (Unicode ``casefold``) of the
  RFC 2047-decoded values, with runs of white space compared as one space
  (folding and encoded-word boundaries must not hide a match).
* ``HEADER name ""`` matches every message that has the field (§6.4.4).
* BEFORE/ON/SINCE compare the INTERNALDATE's day in the zone it was received
  in; SENT* compare the day written in the Date: header, i.e. in the sender's
  zone ("disregarding time and timezone", §6.4.4).  A message without a
  usable Date: header matches no SENT* key (so ``NOT SENTON`` matches it).
* ``\\Recent`` is judged from the ``recent`` UIDs the session passes (recent
  is session state, RFC 3501 §2.3.2), or from the stored flags when it passes none.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import time
from collections.abc import Collection, Sequence
from dataclasses import replace

from mailserver.errors import NotFound
from mailserver.imap.message import MessageAccess
from mailserver.protocol.imap.types import (
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModseq,
    SearchNot,
    SearchOr,
    SearchSeq,
    SearchSize,
    SearchText,
    SearchUid,
    SearchWithin,
)
from mailserver.protocol.mime import header_values, search_text
from mailserver.store.model import MessageRecord
from mailserver.store.store import Store

_WS = re.compile(r"\s+")
#: A header field's name at the start of an unfolded line (RFC 5322 §2.2).
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


def _norm(text: str) -> str:
    """The form both sides of a string match are compared in."""
    return _WS.sub(" ", text).casefold()


# ------------------------------------------------------------------- planning


def _cost(key: SearchKey) -> int:
    """How much of the message ``key`` needs: 0 record .. 3 decoded body."""
    match key:
        case SearchDate(sent=True):
            return 1
        case SearchHeader():
            return 2
        case SearchText():
            return 3
        case SearchNot(key=inner):
            return _cost(inner)
        case SearchOr(left=left, right=right):
            return max(_cost(left), _cost(right))
        case SearchAnd(keys=keys):
            return max((_cost(k) for k in keys), default=0)
        case _:
            return 0


def needs_content(key: SearchKey) -> bool:
    """True when evaluating ``key`` reads message bytes or facts (anything
    beyond the record): the server then runs ``search`` in a thread."""
    return _cost(key) > 0


def _plan(key: SearchKey) -> SearchKey:
    """The same key with cheap tests first (AND sorted by cost, OR cheap side left)."""
    match key:
        case SearchNot(key=inner):
            return SearchNot(_plan(inner))
        case SearchOr(left=left, right=right):
            a, b = _plan(left), _plan(right)
            return SearchOr(b, a) if _cost(b) < _cost(a) else SearchOr(a, b)
        case SearchAnd(keys=keys):
            return replace(key, keys=tuple(sorted((_plan(k) for k in keys), key=_cost)))
        case _:
            return key


# ----------------------------------------------------------------- evaluation


class _Candidate:
    """One message under test, with whatever of it was already loaded."""

    __slots__ = ("seq", "record", "access", "_header_fields", "_body_text", "_sent_day")

    def __init__(self, seq: int, record: MessageRecord, store: Store) -> None:
        self.seq = seq
        self.record = record
        self.access = MessageAccess(store, record)
        self._header_fields: dict[str, list[str]] = {}
        self._body_text: str | None = None
        self._sent_day: dt.date | None | bool = False  # False: not computed yet

    def field_values(self, name: str) -> list[str]:
        """Decoded, normalised values of header field ``name`` (case-insensitive)."""
        name = name.casefold()
        got = self._header_fields.get(name)
        if got is None:
            got = [_norm(v) for v in header_values(self.access.header, name)]
            self._header_fields[name] = got
        return got

    def header_text(self) -> str:
        """Every header field as ``name: value`` lines, decoded and normalised."""
        names = dict.fromkeys(
            m.group(1).decode("ascii").casefold() for m in _FIELD_NAME.finditer(self.access.header)
        )
        return "\n".join(f"{n}: {v}" for n in names for v in self.field_values(n))

    def body_text(self) -> str:
        if self._body_text is None:
            self._body_text = _norm(search_text(self.access.data, self.access.facts))
        return self._body_text

    def sent_day(self) -> dt.date | None:
        """The day written in the Date: header, ``None`` when there is none."""
        if self._sent_day is False:
            self._sent_day = _sent_day(self)
        assert self._sent_day is not True
        return self._sent_day


def _sent_day(cand: _Candidate) -> dt.date | None:
    ts = cand.access.facts.sent_date
    if ts is None:
        return None
    # The facts keep the instant only; the sender's own day needs the zone
    # written in the header (Dovecot does the same shift).
    for raw in header_values(cand.access.header, "date"):
        try:
            parsed = email.utils.parsedate_tz(raw)
            if parsed is not None:
                return dt.date(parsed[0], parsed[1], parsed[2])
        except (ValueError, TypeError, IndexError, OverflowError):
            pass  # junk dates have made parsedate_tz raise; the facts' instant decides
        break  # only the first Date: field counts, as in the facts
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).date()
    except (OverflowError, OSError, ValueError):
        return None


def _internal_day(record: MessageRecord) -> dt.date:
    """INTERNALDATE's day in the zone it was received in (RFC 3501 §6.4.4)."""
    return dt.datetime.fromtimestamp(record.internal_date + 60 * record.tz_offset, dt.UTC).date()


def _compare_day(op: str, day: dt.date, wanted: dt.date) -> bool:
    if op == "BEFORE":
        return day < wanted
    if op == "ON":
        return day == wanted
    return day >= wanted  # SINCE


class _Evaluator:
    """Matches keys against candidates for one SEARCH command."""

    def __init__(self, count: int, largest_uid: int, recent: Collection[int] | None,
                 saved: Collection[int]) -> None:
        self.now = int(time.time())
        self.count = count
        self.largest_uid = largest_uid
        self.recent = recent
        self.saved = saved

    def match(self, key: SearchKey, c: _Candidate) -> bool:
        match key:
            case SearchAll():
                return True
            case SearchSeq(seqset=s) | SearchUid(seqset=s) if s.saved:
                return c.record.uid in self.saved  # "$", RFC 5182 §2.1
            case SearchSeq(seqset=s):
                return s.contains(c.seq, self.count)
            case SearchUid(seqset=s):
                return s.contains(c.record.uid, self.largest_uid)
            case SearchFlag(flag=flag, present=present):
                return self._has_flag(c.record, flag) == present
            case SearchSize(size=size, larger=larger):
                return c.record.size > size if larger else c.record.size < size
            case SearchWithin(seconds=seconds, older=older):
                # RFC 5032 §3: OLDER is strictly before now - n, YOUNGER the rest.
                limit = self.now - seconds
                return c.record.internal_date < limit if older else (
                    c.record.internal_date >= limit)
            case SearchModseq(modseq=modseq):
                return c.record.modseq >= modseq  # RFC 7162 §3.1.5: "equal or greater"
            case SearchDate(op=op, date=day, sent=False):
                return _compare_day(op, _internal_day(c.record), day)
            case SearchDate(op=op, date=day, sent=True):
                sent = c.sent_day()
                return sent is not None and _compare_day(op, sent, day)
            case SearchHeader(field=name, value=value):
                values = c.field_values(name)
                needle = _norm(value)
                return any(needle in v for v in values) if needle else bool(values)
            case SearchText(value=value, header=header):
                needle = _norm(value)
                if header and needle in c.header_text():
                    return True
                return needle in c.body_text()
            case SearchNot(key=inner):
                return not self.match(inner, c)
            case SearchOr(left=left, right=right):
                return self.match(left, c) or self.match(right, c)
            case SearchAnd(keys=keys):
                return all(self.match(k, c) for k in keys)
        raise TypeError(f"not a search key: {key!r}")

    def _has_flag(self, record: MessageRecord, flag: str) -> bool:
        if flag == "\\Recent" and self.recent is not None:
            return record.uid in self.recent
        if flag.startswith("\\"):
            return flag in record.flags
        # Keywords are case-insensitive atoms (RFC 3501 §2.3.2).
        folded = flag.casefold()
        return any(f.casefold() == folded for f in record.flags)


def search(
    key: SearchKey,
    messages: Sequence[tuple[int, MessageRecord]],
    store: Store,
    *,
    largest_uid: int,
    recent: Collection[int] | None = None,
    saved: Collection[int] = frozenset(),
) -> list[tuple[int, int]]:
    """The messages ``key`` matches (RFC 3501 §6.4.4), as ``(seq, uid)`` pairs.

    ``messages`` is the whole selected mailbox as ``(sequence number, record)``
    in sequence order; ``*`` in a sequence-set key stands for
    ``len(messages)``, in a UID-set key for ``largest_uid``.  ``recent`` is the
    set of UIDs this session sees as ``\\Recent`` (optional); ``saved`` the
    UIDs ``$`` stands for (RFC 5182 §2.1, as a sequence set or a UID set).  The result
    keeps sequence order.  Message bytes are read lazily from ``store``
    (memory-mapped reads; call from a thread when ``needs_content(key)``).
    A message whose blob vanished meanwhile (expunged by another session)
    simply does not match.
    """
    planned = _plan(key)
    ev = _Evaluator(len(messages), largest_uid, recent, saved)
    out: list[tuple[int, int]] = []
    for seq, record in messages:
        try:
            hit = ev.match(planned, _Candidate(seq, record, store))
        except NotFound:
            hit = False
        if hit:
            out.append((seq, record.uid))
    return out
