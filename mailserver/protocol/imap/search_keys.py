"""SEARCH arguments (RFC 3501 §6.4.4, §9; RFC 4731 ESEARCH; RFC 7162 MODSEQ).

::

    search         = "SEARCH" [search-return-opts] SP search-program     ; RFC 4731/4466
    search-return-opts = SP "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"
    search-return-opt  = "MIN" / "MAX" / "ALL" / "COUNT" / "SAVE"       ; SAVE: RFC 5182
                       / "PARTIAL" SP partial-range                     ; RFC 9394 §3
    partial-range  = partial-range-first / partial-range-last
    partial-range-first = nz-number ":" nz-number                       ; from the first
    partial-range-last  = "-" nz-number ":" "-" nz-number               ; from the last
    search-program = ["CHARSET" SP charset SP] search-key *(SP search-key)
    search-key     = "ALL" / "ANSWERED" / "BCC" SP astring /
                     "BEFORE" SP date / "BODY" SP astring /
                     "CC" SP astring / "DELETED" / "FLAGGED" /
                     "FROM" SP astring / "KEYWORD" SP flag-keyword /
                     "NEW" / "OLD" / "ON" SP date / "RECENT" / "SEEN" /
                     "SINCE" SP date / "SUBJECT" SP astring /
                     "TEXT" SP astring / "TO" SP astring /
                     "UNANSWERED" / "UNDELETED" / "UNFLAGGED" /
                     "UNKEYWORD" SP flag-keyword / "UNSEEN" /
                     "DRAFT" / "HEADER" SP header-fld-name SP astring /
                     "LARGER" SP number / "NOT" SP search-key /
                     "OR" SP search-key SP search-key /
                     "SENTBEFORE" SP date / "SENTON" SP date /
                     "SENTSINCE" SP date / "SMALLER" SP number /
                     "UID" SP sequence-set / "UNDRAFT" / sequence-set /
                     "(" search-key *(SP search-key) ")" /
                     "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer /
                     "OLDER" SP interval / "YOUNGER" SP interval   ; RFC 5032 §4
    interval       = 1*DIGIT    ; seconds
    date           = date-text / DQUOTE date-text DQUOTE
    date-text      = date-day "-" date-month "-" date-year

Result shape: the top-level program is ``SearchAnd`` of its keys, or the key
itself when there is only one; a parenthesised list is always ``SearchAnd``.

Strings are decoded with the CHARSET when Python knows it (default UTF-8,
a superset of the US-ASCII default of §6.4.4).  An unknown charset does not
fail the parse: ``Search.bad_charset`` is set and the server must answer
``NO [BADCHARSET (...)]`` (§6.4.4 says NO, not BAD).
"""

from __future__ import annotations

import codecs
import datetime as dt
import re

from mailserver.protocol.imap.flags import keyword
from mailserver.protocol.imap.seqset import parse_sequence_set, sequence_set_chars
from mailserver.protocol.imap.tokens import MAX_NUMBER64, Cursor
from mailserver.protocol.imap.types import (
    Search,
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
    SequenceSet,
)

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
#: RFC 4731 §3.1, RFC 5182 §2 (SAVE), RFC 5267 §4.2-4.3 (CONTEXT, UPDATE).
RETURN_OPTS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE"})

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "RECENT": ("\\Recent", True),
    "OLD": ("\\Recent", False),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = frozenset({"BCC", "CC", "FROM", "SUBJECT", "TO"})
_DATE_KEYS = {
    "BEFORE": ("BEFORE", False),
    "ON": ("ON", False),
    "SINCE": ("SINCE", False),
    "SENTBEFORE": ("BEFORE", True),
    "SENTON": ("ON", True),
    "SENTSINCE": ("SINCE", True),
}


def parse_date_text(cur: Cursor, text: str) -> dt.date:
    """date-text = date-day "-" date-month "-" date-year
    date-day = 1*2DIGIT; date-month = "Jan" / ... / "Dec"; date-year = 4DIGIT"""
    day, _, rest = text.partition("-")
    month, _, year = rest.partition("-")
    if not (
        day.isdigit() and day.isascii() and 1 <= len(day) <= 2
        and year.isdigit() and year.isascii() and len(year) == 4
        and month.upper() in MONTHS
    ):
        raise cur.error("Invalid date")
    try:
        return dt.date(int(year), MONTHS.index(month.upper()) + 1, int(day))
    except ValueError:
        raise cur.error("Invalid date") from None


def _date(cur: Cursor) -> dt.date:
    """date = date-text / DQUOTE date-text DQUOTE"""
    if cur.peek() == 0x22:
        raw = cur.quoted()
    else:
        raw = cur.word(frozenset(b"0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), "date")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise cur.error("Invalid date") from None
    return parse_date_text(cur, text)


class _KeyParser:
    __slots__ = ("cur", "charset")

    def __init__(self, cur: Cursor, charset: str) -> None:
        self.cur = cur
        self.charset = charset

    def string(self) -> str:
        raw = self.cur.astring()
        try:
            return raw.decode(self.charset)
        except (UnicodeError, LookupError):  # idna & co raise plain UnicodeError
            raise self.cur.error(f"Search string is not valid {self.charset}") from None

    def key(self, depth: int = 0) -> SearchKey:
        cur = self.cur
        if depth > cur.max_depth:  # nesting of NOT/OR/(): bounds recursion
            raise cur.error("Search keys nested too deeply")
        c = cur.peek()
        if c == 0x28:  # "("
            cur.pos += 1
            keys = [self.key(depth + 1)]
            while not cur.close_paren():
                cur.sp()
                keys.append(self.key(depth + 1))
            return SearchAnd(tuple(keys))
        if c is not None and (0x30 <= c <= 0x39 or c == 0x2A or c == 0x24):  # $: RFC 5182
            return SearchSeq(self.seqset())
        name = cur.keyword()
        if name == "ALL":
            return SearchAll()
        if name in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[name]
            return SearchFlag(flag, present)
        if name == "NEW":
            return SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False)))
        cur.sp()
        if name in _HEADER_KEYS:
            return SearchHeader(name, self.string())
        if name in _DATE_KEYS:
            op, sent = _DATE_KEYS[name]
            return SearchDate(op, _date(cur), sent)
        if name in ("KEYWORD", "UNKEYWORD"):
            return SearchFlag(keyword(cur, cur.atom("keyword")), name == "KEYWORD")
        if name == "BODY":
            return SearchText(self.string(), header=False)
        if name == "TEXT":
            return SearchText(self.string(), header=True)
        if name == "HEADER":
            field = cur.astr()
            if not field or any(not ("!" <= ch <= "~") or ch == ":" for ch in field):
                raise cur.error("Invalid header field name")
            cur.sp()
            return SearchHeader(field.upper(), self.string())
        if name in ("OLDER", "YOUNGER"):  # RFC 5032 §4: interval = 1*DIGIT (seconds)
            return SearchWithin(cur.number(what="interval"), name == "OLDER")
        if name in ("LARGER", "SMALLER"):
            return SearchSize(cur.number(what="size"), name == "LARGER")
        if name == "NOT":
            return SearchNot(self.key(depth + 1))
        if name == "OR":
            left = self.key(depth + 1)
            cur.sp()
            return SearchOr(left, self.key(depth + 1))
        if name == "UID":
            return SearchUid(self.seqset())
        if name == "MODSEQ":
            if cur.peek() == 0x22:
                # search-modseq-ext: entry-name SP entry-type-req; we keep one
                # modseq per message, so the entry is checked and ignored.
                entry = cur.quoted()
                if not entry.lower().startswith(b"/flags/"):
                    raise cur.error("Invalid MODSEQ entry name")
                cur.sp()
                if cur.keyword() not in ("PRIV", "SHARED", "ALL"):
                    raise cur.error("Invalid MODSEQ entry type")
                cur.sp()
            # mod-sequence-valzer = "0" / mod-sequence-value
            return SearchModseq(cur.number(MAX_NUMBER64, "mod-sequence"))
        raise cur.error(f"Unknown search key {name[:40]}")

    def seqset(self) -> SequenceSet:
        raw = self.cur.word(sequence_set_chars(), "sequence set")
        return parse_sequence_set(raw.decode("ascii"))


def return_options(cur: Cursor) -> tuple[tuple[str, ...], tuple[int, int] | None]:
    """``"(" [search-return-opt *(SP search-return-opt)] ")"`` after RETURN SP:
    the option names (each once, in order) and the PARTIAL range (RFC 9394
    §3: ``(first, last)``, 1-based, negative counting from the last match;
    None without PARTIAL).  PARTIAL with ALL, or twice, is a syntax error
    (§3.1)."""
    cur.open_paren()
    opts: list[str] = []
    partial: tuple[int, int] | None = None
    if not cur.close_paren():
        while True:
            opt = cur.keyword()
            if opt == "PARTIAL":
                if partial is not None:
                    raise cur.error("PARTIAL given twice")
                cur.sp()
                partial = _partial_range(cur)
            elif opt not in RETURN_OPTS:
                raise cur.error(f"Unknown search return option {opt[:40]}")
            if opt not in opts:
                opts.append(opt)
            if cur.close_paren():
                break
            cur.sp()
    if partial is not None and "ALL" in opts:
        raise cur.error("PARTIAL conflicts with ALL")
    return tuple(opts), partial


def _partial_range(cur: Cursor) -> tuple[int, int]:
    raw = cur.word(_PARTIAL_CHARS, "partial range").decode("ascii")
    m = _PARTIAL.fullmatch(raw)
    if m is None:
        raise cur.error("Invalid PARTIAL range")
    a, b = int(m.group(2)), int(m.group(4))
    if a == 0 or b == 0 or a > 0xFFFFFFFF or b > 0xFFFFFFFF:
        raise cur.error("Invalid PARTIAL range")
    if bool(m.group(1)) != bool(m.group(3)):
        raise cur.error("Invalid PARTIAL range")  # both from the first, or both from the last
    lo, hi = min(a, b), max(a, b)
    return (-lo, -hi) if m.group(1) else (lo, hi)


_PARTIAL = re.compile(r"(-?)([0-9]{1,10}):(-?)([0-9]{1,10})")
_PARTIAL_CHARS = frozenset(b"-0123456789:")


def search_args(cur: Cursor) -> Search:
    """Everything after ``SEARCH`` (see the module grammar)."""
    cur.sp()
    return_opts: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None
    if cur.take(b"RETURN "):
        return_opts, partial = return_options(cur)
        cur.sp()
    charset: str | None = None
    save = cur.pos
    if cur.take(b"CHARSET") and cur.take_sp():
        charset = cur.astr().upper()
        cur.sp()
    else:
        cur.pos = save
    key, bad_charset = search_program(cur, charset)
    return Search(key, charset, return_opts, bad_charset, partial)

def search_program(cur: Cursor, charset: str | None) -> tuple[SearchKey, bool]:
    """``1*(SP search-key)`` without its first SP, strings decoded with
    ``charset`` (``None``: UTF-8); also used by SORT and THREAD, whose
    ``search-criteria`` name the charset without the CHARSET keyword
    (RFC 5256 §5).  Returns the key and whether the charset is unknown
    (then the strings were decoded as Latin-1 and the server answers
    ``NO [BADCHARSET]``)."""
    bad_charset = False
    codec = "utf-8"
    if charset is not None:
        try:
            codec = codecs.lookup(charset).name
            try:
                b"a".decode(codec)  # "base64" and friends are codecs, not charsets
            except UnicodeError:
                pass
        except LookupError:
            # NO [BADCHARSET] later; latin-1 decodes any octets losslessly.
            bad_charset = True
            codec = "latin-1"
    parser = _KeyParser(cur, codec)
    keys = [parser.key()]
    while not cur.at_end():
        cur.sp()
        keys.append(parser.key())
    key = keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))
    return key, bad_charset
