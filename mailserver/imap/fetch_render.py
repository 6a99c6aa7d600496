"""FETCH response rendering (RFC 3501 §6.4.5, §7.4.2; RFC 7162 §3.1.4).

``render_fetch`` turns one message and the parsed fetch attributes into the
complete untagged ``* n FETCH (...)`` response, literals included.  It is pure
apart from the lazy store reads behind ``MessageAccess``: the flags, UID and
dates come from the record; only items that need the bytes or the MIME facts
load them.

Choices where the RFC leaves room, each written down once here:

* Section data (``BODY[...]``, ``RFC822*``) is always sent as a literal, so
  8-bit and CR/LF octets pass untouched; an empty result is ``""``.  NUL is
  not a CHAR8 (RFC 3501 §9, RFC 9051 §9): outside BINARY it goes out as 0x80,
  same length, so sizes and partial offsets still hold (``_section_data``).
* A section naming a part that does not exist answers ``NIL``: the response
  grammar makes it an ``nstring`` (RFC 3501 §9 ``msg-att-body``), and NIL tells
  the client "no such part" where ``""`` would claim an empty one (UW-IMAP and
  Gmail answer the same way; Dovecot sends ``""``).
* A partial ``<origin.count>`` is echoed as ``<origin>`` and returns at most
  ``count`` octets from ``origin``; an origin beyond the end gives ``""``
  (RFC 3501 §6.4.5).
* ``BODY.PEEK[...]`` is answered as ``BODY[...]`` (§7.4.2: PEEK is never echoed).
* With ``uid_always`` (``UID FETCH``, §6.4.8) the UID comes first when the
  client did not ask for it.
* An attribute asked twice is answered once.
* ``BINARY[part]`` (RFC 3516) decodes base64 and quoted-printable leaf parts
  leniently (junk characters are skipped, as clients expect from a server
  that stored the message unchecked) and passes 7bit/8bit/binary through; any
  other transfer encoding answers ``NO [UNKNOWN-CTE]`` (§4.3).  ``BINARY[]``
  and multipart or message parts are sent as stored: they have no transfer
  encoding of their own to undo.  Decoded data holding a NUL goes as a
  ``literal8`` (``~{n}``, §4.2), anything else as a plain literal.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Collection, Sequence

from mailserver.errors import UserError
from mailserver.imap.message import MessageAccess
from mailserver.protocol.imap.response import flag_list, internal_date, literal, literal8
from mailserver.protocol.imap.types import FetchAtt, Section
from mailserver.protocol.mime import LEAF, resolve
from mailserver.store.model import MessageRecord

_TEXT = Section(text="TEXT")


def sets_seen(atts: Sequence[FetchAtt]) -> bool:
    """True when fetching ``atts`` sets ``\\Seen`` implicitly (RFC 3501 §6.4.5).

    That is ``BODY[...]`` without ``.PEEK``, ``RFC822`` and ``RFC822.TEXT``
    (``RFC822.HEADER`` is a peek by definition), and ``BINARY[...]`` without
    ``.PEEK`` (RFC 3516 §4.1).
    """
    for att in atts:
        if att.name in ("BODY", "BINARY") and att.section is not None and not att.peek:
            return True
        if att.name in ("RFC822", "RFC822.TEXT"):
            return True
    return False


def _section_data(data: bytes | None) -> bytes:
    """An ``nstring`` for section octets: NIL, ``""`` or a literal (§4.3).

    RFC 3501 §9 / RFC 9051 §9: ``literal = "{" number "}" CRLF *CHAR8`` and
    CHAR8 is %x01-ff; only a ``literal8`` (RFC 3516 §4.2) may carry NUL.  So each
    NUL goes out as 0x80, as Dovecot does: the stored octets stay as they are,
    and the length does not change, so RFC822.SIZE, body-fld-octets and
    ``<partial>`` offsets still hold.  ``in`` is one memchr: data without NUL
    (nearly all of it) is not copied."""
    if data is None:
        return b"NIL"
    if not data:
        return b'""'
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return literal(data)


def _partial(data: bytes | None, partial: tuple[int, int] | None) -> bytes | None:
    """Cut ``<origin.count>`` out of ``data`` (RFC 3501 §6.4.5)."""
    if data is None or partial is None:
        return data
    origin, count = partial
    return data[origin : origin + count]


def _body_section(access: MessageAccess, att: FetchAtt) -> bytes:
    assert att.section is not None
    return _section_data(_partial(access.section(att.section), att.partial))


_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_IDENTITY_CTE = ("", "7bit", "8bit", "binary")


def _decode_base64(data: bytes) -> bytes:
    """Base64 (RFC 2045 §6.8) that skips junk and stops at the first pad."""
    alphabet = _NOT_BASE64.sub(b"", data.split(b"=", 1)[0])
    if len(alphabet) % 4 == 1:
        alphabet = alphabet[:-1]  # a lone sextet carries no whole octet
    alphabet += b"=" * (-len(alphabet) % 4)
    return binascii.a2b_base64(alphabet)


def _binary_data(access: MessageAccess, section: Section) -> bytes | None:
    """The decoded octets of ``BINARY[section]`` (RFC 3516 §4.1), None if absent.

    Raises ``UserError`` with ``UNKNOWN-CTE`` for a transfer encoding we cannot undo.
    """
    raw = access.section(section)
    if raw is None or not section.part:
        return raw
    part = resolve(access.facts.root, section.part)
    if part is None or part.kind != LEAF or part.encoding in _IDENTITY_CTE:
        return raw
    if part.encoding == "base64":
        return _decode_base64(raw)
    if part.encoding == "quoted-printable":
        return binascii.a2b_qp(raw)
    raise UserError(
        f"Cannot decode Content-Transfer-Encoding {part.encoding[:40]!r}",
        imap_code="UNKNOWN-CTE",
    )


def _binary(access: MessageAccess, att: FetchAtt) -> bytes:
    assert att.section is not None
    data = _partial(_binary_data(access, att.section), att.partial)
    if data and b"\0" in data:
        return literal8(data)
    return _section_data(data)


def _binary_size(access: MessageAccess, att: FetchAtt) -> bytes:
    assert att.section is not None
    data = _binary_data(access, att.section)
    # RFC 3516 §4.2: "BINARY.SIZE" section-binary SP number; an absent part has
    # no size, and 0 is what Dovecot answers for it.
    return str(len(data or b"")).encode()


def _att_value(access: MessageAccess, att: FetchAtt, flags: frozenset[str]) -> bytes:
    """The value of one attribute (RFC 3501 §7.4.2 ``msg-att``)."""
    value: bytes
    if att.name == "BODY" and att.section is not None:
        value = _body_section(access, att)
    elif att.name == "BINARY":
        value = _binary(access, att)
    elif att.name == "BINARY.SIZE":
        value = _binary_size(access, att)
    else:
        render = _SIMPLE.get(att.name)
        if render is None:
            # The parser only produces names it knows; one we do not serve
            # is a server fault, not the client's.
            raise ValueError(f"unsupported fetch attribute {att.name}")
        value = render(access, flags)
    return value


def _flags(access: MessageAccess, flags: frozenset[str]) -> bytes:
    return flag_list(flags)


def _uid(access: MessageAccess, flags: frozenset[str]) -> bytes:
    return str(access.record.uid).encode()


def _internaldate(access: MessageAccess, flags: frozenset[str]) -> bytes:
    return internal_date(access.record.internal_date, access.record.tz_offset)


def _size(access: MessageAccess, flags: frozenset[str]) -> bytes:
    return str(access.record.size).encode()


def _rfc822(access: MessageAccess, flags: frozenset[str]) -> bytes:
    return _section_data(access.data)


def _rfc822_header(access: MessageAccess, flags: frozenset[str]) -> bytes:
    return _section_data(access.header)


def _rfc822_text(access: MessageAccess, flags: frozenset[str]) -> bytes:
    # RFC822.TEXT is BODY[TEXT] (§6.4.5); an absent body is an empty one.
    return _section_data(access.section(_TEXT) or b"")


def _envelope(access: MessageAccess, flags: frozenset[str]) -> bytes:
    return access.envelope


def _bodystructure(access: MessageAccess, flags: frozenset[str]) -> bytes:
    return access.bodystructure


def _body(access: MessageAccess, flags: frozenset[str]) -> bytes:
    return access.body


def _modseq(access: MessageAccess, flags: frozenset[str]) -> bytes:
    # RFC 7162 §3.1.4: "MODSEQ" SP "(" permsg-modsequence ")"
    return b"(" + str(access.record.modseq).encode() + b")"


#: Attributes whose value does not depend on the FetchAtt beyond its name.
_SIMPLE: dict[str, Callable[[MessageAccess, frozenset[str]], bytes]] = {
    "FLAGS": _flags,
    "UID": _uid,
    "INTERNALDATE": _internaldate,
    "RFC822.SIZE": _size,
    "RFC822": _rfc822,
    "RFC822.HEADER": _rfc822_header,
    "RFC822.TEXT": _rfc822_text,
    "ENVELOPE": _envelope,
    "BODYSTRUCTURE": _bodystructure,
    "BODY": _body,
    "MODSEQ": _modseq,
}


def plan_fetch(atts: Sequence[FetchAtt], *, uid_always: bool = False) -> tuple[
        tuple[bytes, FetchAtt], ...]:
    """The attributes to render, once per command: ``(response name, att)`` in
    the client's order, duplicates dropped, ``UID`` first when ``uid_always``
    and not asked (§6.4.8).  ``render_planned`` uses it for each message."""
    ordered: list[FetchAtt] = list(atts)
    if uid_always and not any(a.name == "UID" for a in ordered):
        ordered.insert(0, FetchAtt("UID"))
    out: list[tuple[bytes, FetchAtt]] = []
    seen: set[bytes] = set()
    for att in ordered:
        key = att.response_name()
        if key not in seen:
            seen.add(key)
            out.append((key, att))
    return tuple(out)


#: Items ``render_records`` answers from the record alone, as ``%`` formats.
_RECORD_FORMATS = {"FLAGS": b"FLAGS %s", "UID": b"UID %d", "MODSEQ": b"MODSEQ (%d)",
                   "RFC822.SIZE": b"RFC822.SIZE %d"}
_RECENT_FLAG = frozenset({"\\Recent"})


def record_only(plan: tuple[tuple[bytes, FetchAtt], ...]) -> bool:
    """Whether ``render_records`` can answer ``plan``: only FLAGS, UID, MODSEQ
    and RFC822.SIZE (what clients fetch for every message to sync: ``FETCH
    1:* (FLAGS)``, ``UID FETCH 1:* (UID FLAGS)``)."""
    return bool(plan) and all(att.name in _RECORD_FORMATS for _, att in plan)


def render_records(messages: Sequence[tuple[int, MessageRecord]],
                   plan: tuple[tuple[bytes, FetchAtt], ...],
                   recent: Collection[int]) -> list[bytes]:
    """The FETCH responses of a ``record_only`` plan, one format per command
    instead of a plan walk per message.  ``recent``: the UIDs to show with
    ``\\Recent``.  Same output as ``render_planned`` (RFC 3501 §7.4.2;
    MODSEQ: RFC 7162 §3.1.4.1)."""
    names = [att.name for _, att in plan]
    fmt = b"* %d FETCH (" + b" ".join(_RECORD_FORMATS[n] for n in names) + b")\r\n"
    fl = flag_list
    if names == ["FLAGS"]:
        if not recent:
            return [fmt % (seq, fl(rec.flags)) for seq, rec in messages]
        return [fmt % (seq, fl(rec.flags | _RECENT_FLAG if rec.uid in recent else rec.flags))
                for seq, rec in messages]
    out = []
    for seq, rec in messages:
        values: list[int | bytes] = [seq]
        for n in names:
            if n == "FLAGS":
                values.append(fl(rec.flags | _RECENT_FLAG if rec.uid in recent else rec.flags))
            elif n == "UID":
                values.append(rec.uid)
            elif n == "MODSEQ":
                values.append(rec.modseq)
            else:
                values.append(rec.size)
        out.append(fmt % tuple(values))
    return out


def render_planned(seq: int, access: MessageAccess,
                   plan: tuple[tuple[bytes, FetchAtt], ...],
                   flags: frozenset[str] | None = None) -> bytes:
    """``render_fetch`` with the attributes already planned (``plan_fetch``)."""
    use_flags = access.record.flags if flags is None else flags
    items = []
    for key, att in plan:
        if att.name == "FLAGS":  # the commonest item: no dispatch
            items.append(b"FLAGS " + flag_list(use_flags))
        else:
            items.append(key + b" " + _att_value(access, att, use_flags))
    return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items))


def render_fetch(
    seq: int,
    access: MessageAccess,
    atts: Sequence[FetchAtt],
    *,
    flags: frozenset[str] | None = None,
    uid_always: bool = False,
) -> bytes:
    """The untagged FETCH response for one message (RFC 3501 §7.4.2).

    ``seq`` is the message sequence number; ``atts`` the attributes in the
    client's order (macros already expanded).  ``flags`` replaces
    ``access.record.flags`` in a FLAGS item (the session passes the flags after
    an implicit ``\\Seen``, and may add ``\\Recent``).  ``uid_always`` adds
    ``UID`` for ``UID FETCH`` (§6.4.8).

    Returns ``b"* seq FETCH (...)\\r\\n"`` with section data as literals.
    Raises ``ValueError`` for an attribute name this module does not serve.
    """
    return render_planned(seq, access, plan_fetch(atts, uid_always=uid_always), flags)
