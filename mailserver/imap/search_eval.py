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

``needs_content`` tells the server whether a key reaches cost 1 or more, and
``estimate_us`` roughly how long the whole search takes, so that it can run a
big search in a worker thread and a small one on the event loop.

FROM/TO/CC/BCC/SUBJECT are answered from the values the MIME facts keep
(``SEARCH_FIELDS``, decoded and normalised once at delivery): the blob is not
read.  Other HEADER fields, facts without those values (written by an older
version) and a per-delivery prefix carrying the field fall back to parsing
the header.

Matching rules, where RFC 3501 leaves room:

* Strings match as case-insensitive substrings of the RFC 2047-decoded
  values, compared in the i;unicode-casemap canonical form (RFC 5051 §2:
  simple titlecase, then NFKD; RFC 9051 §6.4.4), so "ß" does not find "ss";
  runs of white space compare as one space (folding and encoded-word
  boundaries must not hide a match).  The facts keep their values in that
  form (facts version 3); older facts are answered from the header.
* BODY matches the decoded content of the text and message leaf parts, not
  MIME part headers or boundary lines ("in the body of the message",
  §6.4.4); TEXT matches the top-level header, that content, and the headers
  of encapsulated messages (``mime.text``).
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
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from mailserver.errors import NotFound
from mailserver.imap.message import MessageAccess, Source, search_values_cached
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
    search_leaves,
)
from mailserver.protocol.mime import (
    SEARCH_FIELDS,
    HeaderFields,
    field_search_values,
    header_values,
    search_norm,
    search_text,
)
from mailserver.store.model import MessageRecord

#: A header field's name at the start of an unfolded line (RFC 5322 §2.2).
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)
_FACT_FIELD = {name: i for i, name in enumerate(SEARCH_FIELDS)}
_norm = search_norm


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


#: Rough cost per message of each level, in microseconds (measured on the
#: corpus: a record test; a facts read; a header read from the facts or, for
#: other fields, from the blob).  Body search is priced by size instead.
_COST_US = (1, 10, 12)
_HEADER_FROM_BLOB_US = 50
#: A header test of a message whose search values are cached (no facts read).
_CACHED_HEADER_US = 4
_BODY_US_PER_KB = 10


def _other_header(key: SearchKey) -> bool:
    """Whether ``key`` has a HEADER field the facts do not keep (the blob is read)."""
    return any(isinstance(k, SearchHeader) and k.field.casefold() not in _FACT_FIELD
               for k in search_leaves(key))


def estimate_us(key: SearchKey, messages: Sequence[tuple[int, MessageRecord]]) -> int:
    """A rough upper bound of ``search``'s run time, in microseconds (measured
    on the corpus; good to a factor of a few, which is all the choice of
    thread or loop needs)."""
    cost = _cost(key)
    if cost == 2 and _other_header(key):
        return _HEADER_FROM_BLOB_US * len(messages)
    if cost == 2:
        # A header test whose values are cached (``search_values_cached``)
        # costs about a record test: SUBJECT over a mailbox searched before
        # stays on the loop instead of paying the hop to a thread.
        cold = sum(1 for _, r in messages if not search_values_cached(r.blob_id))
        return _COST_US[2] * cold + _CACHED_HEADER_US * (len(messages) - cold)
    if cost < 3:
        return _COST_US[cost] * len(messages)
    octets = sum(r.size for _, r in messages)
    return octets * _BODY_US_PER_KB // 1024 + _HEADER_FROM_BLOB_US * len(messages)


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

    __slots__ = ("seq", "record", "_store", "_access", "_header_fields", "_body_text",
                 "_full_text", "_sent_day", "_fields")

    def __init__(self, seq: int, record: MessageRecord, store: Source) -> None:
        self.seq = seq
        self.record = record
        self._store = store
        # Built on first use: flag, size and date tests (most SEARCHes) need none.
        self._access: MessageAccess | None = None
        self._header_fields: dict[str, list[str]] | None = None
        self._body_text: str | None = None
        self._full_text: str | None = None
        self._sent_day: dt.date | None | bool = False  # False: not computed yet
        self._fields: HeaderFields | None = None

    @property
    def access(self) -> MessageAccess:
        if self._access is None:
            self._access = MessageAccess(self._store, self.record)
        return self._access

    def field_values(self, name: str) -> list[str]:
        """Decoded, normalised values of header field ``name`` (case-insensitive)."""
        name = name.casefold()
        if self._header_fields is None:
            self._header_fields = {}
        got = self._header_fields.get(name)
        if got is None:
            got = self._from_facts(name)
            if got is None:
                got = self._from_header(name)
            self._header_fields[name] = got
        return got

    def _from_header(self, name: str) -> list[str]:
        """The values of field ``name`` parsed from the header itself, as the
        facts would keep them (addresses included, ``field_search_values``)."""
        if self._fields is None:
            self._fields = HeaderFields.parse(self.access.header)
        try:
            key = name.encode("ascii")
        except UnicodeEncodeError:
            return []
        return list(field_search_values(self._fields, key))

    def _from_facts(self, name: str) -> list[str] | None:
        """The facts' values of a ``SEARCH_FIELDS`` field, or None when they
        cannot answer: another field, old facts, or the field also in the
        per-delivery prefix (which the facts never saw)."""
        index = _FACT_FIELD.get(name)
        if index is None:
            return None
        prefix = self.record.prefix
        if prefix and name.encode("ascii", "replace") in prefix.lower():
            return None
        values = self.access.search_values()
        if not values:
            return None
        return list(values[index])

    def header_text(self) -> str:
        """Every header field as ``name: value`` lines, decoded and normalised."""
        names = dict.fromkeys(
            m.group(1).decode("ascii").casefold() for m in _FIELD_NAME.finditer(self.access.header)
        )
        # The name is compared too ("TEXT Return-Path"), so in the same form.
        return "\n".join(f"{_norm(n)}: {v}" for n in names for v in self.field_values(n))

    def body_text(self) -> str:
        """What BODY searches: the decoded content of the leaf parts."""
        if self._body_text is None:
            self._body_text = _norm(search_text(self.access.data, self.access.facts))
        return self._body_text

    def full_text(self) -> str:
        """What TEXT searches besides the top-level header: the body text plus
        the headers of encapsulated messages."""
        if self._full_text is None:
            self._full_text = _norm(
                search_text(self.access.data, self.access.facts, with_headers=True)
            )
        return self._full_text

    def sent_day(self) -> dt.date | None:
        """The day written in the Date: header, ``None`` when there is none."""
        if self._sent_day is False:
            self._sent_day = _sent_day(self)
        assert self._sent_day is not True
        return self._sent_day


def _sent_day(cand: _Candidate) -> dt.date | None:
    ts = cand.access.sent_date
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
        """Whether ``key`` matches the candidate (compiles ``key`` each call:
        ``search`` compiles once per command instead)."""
        return self.compile(key)(c)

    def compile(self, key: SearchKey) -> Callable[[_Candidate], bool]:
        """``key`` as a predicate over candidates.  Built once per SEARCH: the
        key tree is dispatched here, not once per message, and needles are
        normalised once."""
        match key:
            case SearchAll():
                return lambda c: True
            case SearchSeq(seqset=s) | SearchUid(seqset=s) if s.saved:
                saved = self.saved
                return lambda c: c.record.uid in saved  # "$", RFC 5182 §2.1
            case SearchSeq(seqset=s):
                count = self.count
                return lambda c: s.contains(c.seq, count)
            case SearchUid(seqset=s):
                largest = self.largest_uid
                return lambda c: s.contains(c.record.uid, largest)
            case SearchFlag(flag=flag, present=present):
                return self._flag_test(flag, present)
            case SearchSize(size=size, larger=larger):
                if larger:
                    return lambda c: c.record.size > size
                return lambda c: c.record.size < size
            case SearchWithin(seconds=seconds, older=older):
                # RFC 5032 §3: OLDER is strictly before now - n, YOUNGER the rest.
                limit = self.now - seconds
                if older:
                    return lambda c: c.record.internal_date < limit
                return lambda c: c.record.internal_date >= limit
            case SearchModseq(modseq=modseq):
                return lambda c: c.record.modseq >= modseq  # RFC 7162 §3.1.5: "equal or greater"
            case SearchDate(op=op, date=day, sent=False):
                # The day of INTERNALDATE in the zone it was received in (RFC
                # 3501 §6.4.4), compared as seconds against the wanted day's
                # bounds, worked out once (a date per message was most of it).
                start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
                end = start + 86400
                if op == "BEFORE":
                    return lambda c: c.record.internal_date + 60 * c.record.tz_offset < start
                if op == "ON":
                    return lambda c: start <= c.record.internal_date + 60 * c.record.tz_offset < end
                return lambda c: c.record.internal_date + 60 * c.record.tz_offset >= start
            case SearchDate(op=op, date=day, sent=True):
                def sent_test(c: _Candidate) -> bool:
                    sent = c.sent_day()
                    return sent is not None and _compare_day(op, sent, day)
                return sent_test
            case SearchHeader(field=name, value=value):
                needle = _norm(value)
                field = name.casefold()
                if needle:
                    return lambda c: any(needle in v for v in c.field_values(field))
                return lambda c: bool(c.field_values(field))
            case SearchText(value=value, header=header):
                needle = _norm(value)
                if header:
                    return lambda c: needle in c.header_text() or needle in c.full_text()
                return lambda c: needle in c.body_text()
            case SearchNot(key=inner):
                test = self.compile(inner)
                return lambda c: not test(c)
            case SearchOr(left=left, right=right):
                first, second = self.compile(left), self.compile(right)
                return lambda c: first(c) or second(c)
            case SearchAnd(keys=keys):
                tests = tuple(self.compile(k) for k in keys)
                if len(tests) == 1:
                    return tests[0]
                if len(tests) == 2:  # the commonest (SINCE d BEFORE d, UNSEEN FROM x)
                    a, b = tests
                    return lambda c: a(c) and b(c)
                return lambda c: all(t(c) for t in tests)
        raise TypeError(f"not a search key: {key!r}")

    def _flag_test(self, flag: str, present: bool) -> Callable[[_Candidate], bool]:
        if flag == "\\Recent" and self.recent is not None:
            recent = self.recent
            return lambda c: (c.record.uid in recent) == present
        if flag.startswith("\\"):
            if present:
                return lambda c: flag in c.record.flags
            return lambda c: flag not in c.record.flags
        # Keywords are case-insensitive atoms (RFC 3501 §2.3.2).
        folded = flag.casefold()
        return lambda c: any(f.casefold() == folded for f in c.record.flags) == present


def search(
    key: SearchKey,
    messages: Sequence[tuple[int, MessageRecord]],
    store: Source,
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
    keeps sequence order.  Message bytes are read lazily from ``store`` (a
    ``Store`` or one ``Snapshot``; memory-mapped reads: call from a thread
    when ``estimate_us`` says the search is long).
    A message whose blob vanished meanwhile (expunged by another session)
    simply does not match.
    """
    return [(seq, rec.uid) for seq, rec in search_records(
        key, messages, store, largest_uid=largest_uid, recent=recent, saved=saved)]


def search_records(
    key: SearchKey,
    messages: Sequence[tuple[int, MessageRecord]],
    store: Source,
    *,
    largest_uid: int,
    recent: Collection[int] | None = None,
    saved: Collection[int] = frozenset(),
) -> list[tuple[int, MessageRecord]]:
    """``search``, answering with the matching items of ``messages``
    themselves (the same ``(seq, record)`` tuples, in order): the IMAP
    commands need the records of the hits, and finding them again by
    sequence number cost a dict over the whole mailbox."""
    if isinstance(key, SearchFlag) and key.flag.startswith("\\") and key.flag != "\\Recent":
        return _system_flag_hits(key.flag, key.present, messages)
    test = _Evaluator(len(messages), largest_uid, recent, saved).compile(_plan(key))
    out: list[tuple[int, MessageRecord]] = []
    for item in messages:
        try:
            hit = test(_Candidate(item[0], item[1], store))
        except NotFound:
            hit = False
        if hit:
            out.append(item)
    return out


def _system_flag_hits(flag: str, present: bool, messages: Sequence[tuple[int, MessageRecord]],
                      ) -> list[tuple[int, MessageRecord]]:
    """A program that is one system-flag key (SEEN, UNSEEN, FLAGGED, DELETED...,
    RFC 3501 §6.4.4), the commonest SEARCH: answered from the records alone,
    without a candidate and a predicate call per message.  Mailboxes share
    few distinct flag sets (interned), so each set is tested once."""
    verdict: dict[frozenset[str], bool] = {}
    out = []
    for item in messages:
        flags = item[1].flags
        hit = verdict.get(flags)
        if hit is None:
            hit = verdict[flags] = (flag in flags) == present
        if hit:
            out.append(item)
    return out
