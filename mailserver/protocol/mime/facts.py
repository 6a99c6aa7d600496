"""``analyze``: the per-message facts IMAP needs, computed once at delivery.

The facts are stored beside the blob as opaque bytes (``to_bytes``) and read
back for every FETCH/SEARCH (``from_bytes``), so the format is a compact
binary one, versioned by its first bytes.  Version 2 adds the decoded,
normalised values of the header fields SEARCH asks for most
(``SEARCH_FIELDS``), placed right after the fixed head so that
``search_values_from_bytes`` reads them without decoding the rest: header
SEARCH then never loads the blob (version 1 facts still read; they have none).
Version 3 changed only the normalisation of those values (``search_norm``:
i;unicode-casemap instead of ``str.casefold``); version 2 facts still read, but
their search values are ignored (SEARCH then parses the header), since they
were normalised the old way.  Version 4 adds, for the address fields, the
addresses as parsed (``field_search_values``); version 3 search values are
ignored the same way.  All offsets are into the blob as analyzed; the per-recipient prefix (Return-Path, Delivered-To) is not in them
(see ``sections.section_bytes``).
"""

from __future__ import annotations

import email.utils
import functools
import re
import struct
import unicodedata
from dataclasses import dataclass

from .bodystructure import count_lines, render_both
from .headers import HeaderFields, bytes_to_text, decode_value, decode_words, unfold
from .imap_envelope import EMPTY_IMAP_ENVELOPE, imap_envelope, parse_addresses
from .structure import LEAF, Node, build_tree, charset_of

_COMMENT = re.compile(r"\([^()]*\)")
_COLON_WSP = re.compile(r"\s*:\s*")
_MAGIC_V1 = b"MF\x01"
_MAGIC_V2 = b"MF\x02"  # search values normalised with str.casefold: ignored
_MAGIC_V3 = b"MF\x03"  # search values without the address forms: ignored
_MAGIC = b"MF\x04"
_SIZE = struct.Struct("<Q")
_HEAD = struct.Struct("<BqIII")  # has_date, sent_date, len(envelope), len(body), len(bodystructure)
_SEARCH_LEN = struct.Struct("<I")  # v2: length of the search section, right after _HEAD
_COUNT = struct.Struct("<H")
_VLEN = struct.Struct("<I")
_WS = re.compile(r"\s+")

#: Header fields whose values ``analyze`` keeps, decoded and normalised, for
#: SEARCH FROM/TO/CC/BCC/SUBJECT (RFC 3501 §6.4.4); lower-case, in stored order.
SEARCH_FIELDS = ("from", "to", "cc", "bcc", "subject")
_SEARCH_KEYS = tuple(name.encode("ascii") for name in SEARCH_FIELDS)
_PART = struct.Struct("<QQQBIBBB")  # offsets, kind, n children, len of the 3 strings


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME part: offsets into the blob, ``header_start`` ≤ ``body_start`` ≤ ``end``.

    ``data[header_start:body_start]`` is the part's header including the blank
    line (if any); ``data[body_start:end]`` its body as stored (RFC 2046 §5.1.1:
    the line break before a boundary belongs to the boundary).  ``kind`` is
    ``LEAF`` (0), ``MULTIPART`` (1: ``children`` are its body parts) or
    ``MESSAGE`` (2: a message/rfc822 part; ``children`` holds the one
    encapsulated message, whose header starts at this part's ``body_start``).
    ``media_type`` ("text/plain"), ``encoding`` (Content-Transfer-Encoding, ""
    when absent) and ``charset`` ("" when absent) are lower-case.
    """

    header_start: int
    body_start: int
    end: int
    kind: int
    media_type: str
    encoding: str
    charset: str
    children: tuple[Part, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What IMAP needs to know about one stored blob.

    ``size``: length of the blob in octets.  ``envelope``/``body``/
    ``bodystructure``: the FETCH items ENVELOPE, BODY and BODYSTRUCTURE (RFC 3501
    §7.4.2), ready to send (they may contain literals).  ``sent_date``: the Date:
    header as POSIX seconds, or None when absent or unparsable (SENTBEFORE etc.,
    RFC 3501 §6.4.4).  ``root``: the part tree (the whole message).
    ``search``: for each of ``SEARCH_FIELDS`` the values of that field in the
    top-level header, as ``search_norm(header_values(...))`` gives them; ``()``
    when unknown (facts written by version 1), and then SEARCH parses the header.
    """

    size: int
    envelope: bytes
    body: bytes
    bodystructure: bytes
    sent_date: int | None
    root: Part
    search: tuple[tuple[str, ...], ...] = ()

    def to_bytes(self) -> bytes:
        """Serialize; ``MessageFacts.from_bytes(f.to_bytes()) == f``."""
        search = _encode_search(self.search)
        out = [
            _MAGIC,
            _SIZE.pack(self.size),
            _HEAD.pack(
                self.sent_date is not None,
                self.sent_date or 0,
                len(self.envelope),
                len(self.body),
                len(self.bodystructure),
            ),
            _SEARCH_LEN.pack(len(search)),
            search,
            self.envelope,
            self.body,
            self.bodystructure,
        ]
        stack = [self.root]
        while stack:
            p = stack.pop()
            strs = [_short(s) for s in (p.media_type, p.encoding, p.charset)]
            out.append(
                _PART.pack(
                    p.header_start, p.body_start, p.end, p.kind, len(p.children),
                    *(len(s) for s in strs),
                )
            )
            out.extend(strs)
            stack.extend(reversed(p.children))
        return b"".join(out)

    @classmethod
    def from_bytes(cls, b: bytes | memoryview) -> MessageFacts:
        """Inverse of ``to_bytes`` (``b`` may be any bytes-like object).
        Raises ValueError on bytes it did not write."""
        if not isinstance(b, bytes):
            b = bytes(b)
        try:
            current = b.startswith(_MAGIC)
            v2 = current or b.startswith(_MAGIC_V3) or b.startswith(_MAGIC_V2)
            if not v2 and not b.startswith(_MAGIC_V1):
                raise ValueError("not serialized MessageFacts")
            pos = len(_MAGIC)
            (size,) = _SIZE.unpack_from(b, pos)
            pos += 8
            has_date, date, le, lb, lbs = _HEAD.unpack_from(b, pos)
            pos += _HEAD.size
            search: tuple[tuple[str, ...], ...] = ()
            if v2:
                (ls,) = _SEARCH_LEN.unpack_from(b, pos)
                pos += _SEARCH_LEN.size
                search = _decode_search(b, pos, pos + ls)
                pos += ls
                if not current:
                    search = ()
            env = b[pos : pos + le]
            pos += le
            body = b[pos : pos + lb]
            pos += lb
            bs = b[pos : pos + lbs]
            pos += lbs
            root, pos = _read_part(b, pos)
            if pos != len(b):
                raise ValueError("trailing bytes after MessageFacts")
        except (struct.error, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"corrupt MessageFacts: {exc}") from None
        return cls(size, env, body, bs, date if has_date else None, root, search)


def search_values_from_bytes(b: bytes | memoryview) -> tuple[tuple[str, ...], ...]:
    """``MessageFacts.from_bytes(b).search`` without decoding the rest: the
    search section sits right after the fixed head.  ``()`` for version 1
    and 2 facts.  ``b`` may be any bytes-like object (a zero-copy view).
    Raises ValueError on bytes ``to_bytes`` did not write."""
    if b[:3] != _MAGIC:
        if b[:3] in (_MAGIC_V1, _MAGIC_V2, _MAGIC_V3):
            return ()
        raise ValueError("not serialized MessageFacts")
    try:
        pos = len(_MAGIC) + _SIZE.size + _HEAD.size
        (ls,) = _SEARCH_LEN.unpack_from(b, pos)
        pos += _SEARCH_LEN.size
        return _decode_search(b, pos, pos + ls)
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt MessageFacts: {exc}") from None


def items_from_bytes(b: bytes | memoryview) -> tuple[bytes, bytes, bytes, int | None]:
    """``(envelope, body, bodystructure, sent_date)`` of serialized facts,
    without building the part tree (which costs most of ``from_bytes``):
    FETCH ENVELOPE/BODY/BODYSTRUCTURE need only these slices.  ``b`` may be
    any bytes-like object (a zero-copy view); the results are ``bytes``.
    Raises ValueError on bytes ``to_bytes`` did not write."""
    v2 = b[:3] in (_MAGIC, _MAGIC_V3, _MAGIC_V2)
    if not v2 and b[:3] != _MAGIC_V1:
        raise ValueError("not serialized MessageFacts")
    try:
        pos = len(_MAGIC) + _SIZE.size
        has_date, date, le, lb, lbs = _HEAD.unpack_from(b, pos)
        pos += _HEAD.size
        if v2:
            pos += _SEARCH_LEN.size + _SEARCH_LEN.unpack_from(b, pos)[0]
    except struct.error as exc:
        raise ValueError(f"corrupt MessageFacts: {exc}") from None
    if pos + le + lb + lbs > len(b):
        raise ValueError("truncated MessageFacts")
    env = bytes(b[pos : pos + le])
    pos += le
    body = bytes(b[pos : pos + lb])
    pos += lb
    return env, body, bytes(b[pos : pos + lbs]), date if has_date else None


def search_norm(text: str) -> str:
    """The form both sides of a SEARCH string match are compared in: the
    i;unicode-casemap canonical form (``casemap``) with runs of white space as
    one space (folding and encoded-word boundaries must not hide a match).
    RFC 9051 §6.4.4 makes SEARCH case-insensitive per i;unicode-casemap
    (RFC 5051); RFC 3501 §6.4.4 leaves the comparison to the server, and
    Dovecot uses the same comparator there."""
    return _WS.sub(" ", casemap(text))


def casemap(text: str) -> str:
    """i;unicode-casemap's canonical form (RFC 5051 §2): each character mapped
    to its *simple* titlecase (UnicodeData.txt field 14), then NFKD.

    Simple, not full: "ß" stays "ß" (full case mapping, as ``str.casefold``
    or ``str.upper`` do, makes it "SS" so that "ß" finds "class").  ``str.upper``
    is the simple titlecase for all but the characters in ``_special``, which
    are mapped one by one; ASCII text (most of it) takes one ``upper`` call."""
    if text.isascii():
        return text.upper()  # NFKD leaves ASCII unchanged
    table, special = _special()
    if special.search(text) is None:
        mapped = text.upper()
    else:
        pieces = special.split(text)  # one capture group: odd items are special chars
        pieces[0::2] = [p.upper() for p in pieces[0::2]]
        pieces[1::2] = [table[p] for p in pieces[1::2]]
        mapped = "".join(pieces)
    return unicodedata.normalize("NFKD", mapped)


def prepare_casemap() -> None:
    """Build ``casemap``'s table of special characters now (~70-140 ms of CPU,
    once per process) rather than on the first non-ASCII text, which may be
    on the event loop in the middle of serving (the daemon calls this in a
    thread while it starts)."""
    _special()


#: Past the last cased character of Unicode 15 (Adlam, U+1E900..U+1E943).
_CASED_END = 0x20000


@functools.cache
def _special() -> tuple[dict[str, str], re.Pattern[str]]:
    """The characters whose simple titlecase is not ``str.upper``'s result, with
    that titlecase, and a pattern finding them.  Python exposes only the full
    mappings: where the full titlecase is one character it is the simple one;
    where it is several (SpecialCasing.txt: "ß", "ﬁ", "ŉ", ...) UnicodeData has
    no simple mapping for the character, so it maps to itself."""
    table: dict[str, str] = {}
    for cp in range(0x80, _CASED_END):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        title = c.title()
        simple = title if len(title) == 1 else c
        if c.upper() != simple:
            table[c] = simple
    chars = "".join(re.escape(c) for c in table)
    return table, re.compile(f"([{chars}])")


def search_values_of(header: bytes | HeaderFields) -> tuple[tuple[str, ...], ...]:
    """The ``search`` tuple for a top-level header block (raw, or already split:
    ``analyze`` passes the fields it parsed for the part tree)."""
    fields = header if isinstance(header, HeaderFields) else HeaderFields.parse(header)
    return tuple(field_search_values(fields, name) for name in _SEARCH_KEYS)


#: Address fields SEARCH FROM/TO/CC/BCC also match as parsed addresses.
_ADDRESS_KEYS = frozenset({b"from", b"to", b"cc", b"bcc"})


def field_search_values(fields: HeaderFields, name: bytes) -> tuple[str, ...]:
    """What SEARCH compares for field ``name`` (lower-case): each occurrence's
    decoded value (``HeaderFields.values``) in ``search_norm`` form.  For an
    address field, also its addresses as Dovecot searches them
    (``address_search_form``): display names decoded (RFC 2047 words in
    quoted strings too), comments and quoting gone, ``name <local@domain>``
    and ``group: ...;``, so neither an encoded word nor a comment nor a
    group hides the name or address searched for."""
    group = fields.by_name.get(name)
    if not group:
        return ()
    out: list[str] = []
    for f in group:
        plain = search_norm(decode_value(f.value))
        out.append(plain)
        if name in _ADDRESS_KEYS:
            parsed = search_norm(address_search_form(f.value))
            if parsed and parsed != plain:
                out.append(parsed)
    return tuple(out)


def address_search_form(raw: bytes) -> str:
    """An address-list field value written back from its parse (RFC 5322
    §3.4) the way Dovecot matches address SEARCH keys: ``Name <a@b>``, ``a@b``
    without a name, ``group: ...;``, joined by ", ", RFC 2047 words of names
    decoded.  Missing halves (``MISSING_MAILBOX``) are left out.  Never raises."""
    try:
        addrs = parse_addresses(bytes_to_text(unfold(raw)))
    except Exception:  # junk must not break delivery or SEARCH
        return ""
    out: list[str] = []
    for addr_name, _adl, mailbox, host in addrs:
        if mailbox is None:  # end of a group
            out.append(";")
            continue
        if host is None:  # start of a group: its display name
            out.append(decode_words(mailbox) + ":")
            continue
        local = "" if mailbox == "MISSING_MAILBOX" else mailbox
        domain = "" if host == "MISSING_DOMAIN" else host
        spec = f"{local}@{domain}" if local and domain else local or domain
        if addr_name:
            shown = decode_words(addr_name)
            out.append(f"{shown} <{spec}>," if spec else f"{shown},")
        elif spec:
            out.append(spec + ",")
    return " ".join(out).replace(", ;", ";").rstrip(",")


def _encode_search(search: tuple[tuple[str, ...], ...]) -> bytes:
    if not search:
        return b""
    out = []
    for values in search:
        out.append(_COUNT.pack(len(values)))
        for v in values:
            raw = v.encode("utf-8", "surrogatepass")
            out.append(_VLEN.pack(len(raw)))
            out.append(raw)
    return b"".join(out)


def _decode_search(b: bytes | memoryview, pos: int, end: int) -> tuple[tuple[str, ...], ...]:
    if pos == end:
        return ()
    if end > len(b):
        raise ValueError("truncated MessageFacts")
    out = []
    for _ in SEARCH_FIELDS:
        (n,) = _COUNT.unpack_from(b, pos)
        pos += 2
        values = []
        for _ in range(n):
            (ln,) = _VLEN.unpack_from(b, pos)
            pos += 4
            values.append(str(b[pos : pos + ln], "utf-8", "surrogatepass"))
            pos += ln
        out.append(tuple(values))
    if pos != end:
        raise ValueError("corrupt search section of MessageFacts")
    return tuple(out)


def _short(text: str) -> bytes:
    """``text`` as UTF-8 in at most 255 octets (a length byte), cut at a
    character boundary: a cut inside a character made the facts unreadable
    (found by bench/fuzz.py: a long non-ASCII multipart subtype).  Only a
    media type, encoding or charset no registry has can be that long."""
    raw = text.encode("utf-8")
    if len(raw) <= 255:
        return raw
    return raw[:255].decode("utf-8", "ignore").encode("utf-8")


def _read_part(b: bytes, pos: int) -> tuple[Part, int]:
    hs, bs, end, kind, n, l1, l2, l3 = _PART.unpack_from(b, pos)
    pos += _PART.size
    mt = b[pos : pos + l1].decode("utf-8")
    pos += l1
    enc = b[pos : pos + l2].decode("utf-8")
    pos += l2
    cs = b[pos : pos + l3].decode("utf-8")
    pos += l3
    children = []
    for _ in range(n):
        child, pos = _read_part(b, pos)
        children.append(child)
    if pos > len(b):
        raise ValueError("truncated MessageFacts")
    return Part(hs, bs, end, kind, mt, enc, cs, tuple(children)), pos


def _freeze(node: Node) -> Part:
    return Part(
        node.header_start,
        node.body_start,
        node.end,
        node.kind,
        f"{node.mtype}/{node.subtype}".lower(),
        (node.cte or "").lower(),
        charset_of(node),
        tuple(_freeze(c) for c in node.children),
    )


def parse_sent_date(value: str | None) -> int | None:
    """An RFC 5322 §3.3 date-time (obsolete forms too) as POSIX seconds, or None."""
    if not value:
        return None
    try:
        # RFC 5322 §4.3 allows comments and CFWS around the colons of the time
        for _ in range(3):
            value = _COMMENT.sub(" ", value)
        value = _COLON_WSP.sub(":", value)
        t = email.utils.parsedate_tz(value)
        if t is None:
            return None
        seconds = int(email.utils.mktime_tz(t))
    except Exception:  # parsedate_tz has raised odd errors on junk in the past
        return None
    # A zone offset of any size parses ("-0555555555555555200"): what the
    # stored facts cannot hold (a signed 64-bit field) is no date (found by
    # bench/fuzz.py; to_bytes failed and analyze fell back to no facts).
    return seconds if -(2**63) <= seconds < 2**63 else None


def analyze(blob: bytes) -> MessageFacts:
    """Compute the facts of a message blob (RFC 5322 / MIME bytes as stored).

    Never raises: any input yields best-effort facts, like Dovecot does.  Runs
    in time roughly linear in the size of the blob.
    """
    try:
        return compute_facts(blob)
    except Exception:  # last resort for a bug of ours: the message is still deliverable
        return _fallback(blob)


def compute_facts(blob: bytes) -> MessageFacts:
    """``analyze`` without the safety net, so that tests see our bugs."""
    tree = build_tree(blob)
    body, bodystructure = render_both(tree, blob)
    return MessageFacts(
        size=len(blob),
        envelope=imap_envelope(tree.fields),
        body=body,
        bodystructure=bodystructure,
        sent_date=parse_sent_date(tree.field(b"date")),
        root=_freeze(tree),
        search=search_values_of(tree.fields),
    )


def _fallback(blob: bytes) -> MessageFacts:
    lines = count_lines(blob, 0, len(blob))
    body = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" %d %d)' % (len(blob), lines)
    return MessageFacts(
        size=len(blob),
        envelope=EMPTY_IMAP_ENVELOPE,
        body=body,
        bodystructure=body,
        sent_date=None,
        root=Part(0, 0, len(blob), LEAF, "text/plain", "", "us-ascii"),
    )
