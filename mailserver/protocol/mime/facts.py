"""``analyze``: the per-message facts IMAP needs, computed once at delivery.

The facts are stored beside the blob as opaque bytes (``to_bytes``) and read
back for every FETCH/SEARCH (``from_bytes``), so the format is a compact
binary one, versioned by its first bytes.  All offsets are into the blob as
analyzed; the per-recipient prefix (Return-Path, Delivered-To) is not in them
(see ``sections.section_bytes``).
"""

from __future__ import annotations

import email.utils
import re
import struct
from dataclasses import dataclass

from .bodystructure import count_lines, render
from .envelope import EMPTY_ENVELOPE, envelope
from .structure import LEAF, Node, build_tree, charset_of

_COMMENT = re.compile(r"\([^()]*\)")
_COLON_WSP = re.compile(r"\s*:\s*")
_MAGIC = b"MF\x01"
_HEAD = struct.Struct("<BqIII")  # has_date, sent_date, len(envelope), len(body), len(bodystructure)
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
    """

    size: int
    envelope: bytes
    body: bytes
    bodystructure: bytes
    sent_date: int | None
    root: Part

    def to_bytes(self) -> bytes:
        """Serialize; ``MessageFacts.from_bytes(f.to_bytes()) == f``."""
        out = [
            _MAGIC,
            struct.pack("<Q", self.size),
            _HEAD.pack(
                self.sent_date is not None,
                self.sent_date or 0,
                len(self.envelope),
                len(self.body),
                len(self.bodystructure),
            ),
            self.envelope,
            self.body,
            self.bodystructure,
        ]
        stack = [self.root]
        while stack:
            p = stack.pop()
            strs = [s.encode("utf-8")[:255] for s in (p.media_type, p.encoding, p.charset)]
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
    def from_bytes(cls, b: bytes) -> MessageFacts:
        """Inverse of ``to_bytes``.  Raises ValueError on bytes it did not write."""
        try:
            if not b.startswith(_MAGIC):
                raise ValueError("not serialized MessageFacts")
            pos = len(_MAGIC)
            (size,) = struct.unpack_from("<Q", b, pos)
            pos += 8
            has_date, date, le, lb, lbs = _HEAD.unpack_from(b, pos)
            pos += _HEAD.size
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
        return cls(size, env, body, bs, date if has_date else None, root)


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
        return int(email.utils.mktime_tz(t))
    except Exception:  # parsedate_tz has raised odd errors on junk in the past
        return None


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
    return MessageFacts(
        size=len(blob),
        envelope=envelope(tree.fields),
        body=render(tree, blob, extended=False),
        bodystructure=render(tree, blob, extended=True),
        sent_date=parse_sent_date(tree.field(b"date")),
        root=_freeze(tree),
    )


def _fallback(blob: bytes) -> MessageFacts:
    lines = count_lines(blob, 0, len(blob))
    body = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" %d %d)' % (len(blob), lines)
    return MessageFacts(
        size=len(blob),
        envelope=EMPTY_ENVELOPE,
        body=body,
        bodystructure=body,
        sent_date=None,
        root=Part(0, 0, len(blob), LEAF, "text/plain", "", "us-ascii"),
    )
