"""The MIME part tree with byte offsets (RFC 2045, RFC 2046 §5).

The stdlib ``email`` package does not report where a part starts or ends, so
this is our own single pass over the bytes, like Dovecot's message parser:

* A stack holds the parts that are still open.  A multipart whose close
  delimiter has not been seen contributes its boundary to the *active* set.
* The scanner looks only at lines starting with ``--`` and compares them with
  every active boundary.  RFC 2046 §5.1.1: "it is sufficient that the boundary
  appear in its entirety following the CRLF", so the match is a prefix match;
  when several boundaries match (``ab`` and ``a``) the longest wins, and among
  equal ones the innermost.  A delimiter of an outer multipart therefore ends
  every part nested below it, which rescues missing close delimiters.
* "The CRLF preceding the boundary delimiter line is conceptually attached to
  the boundary" (RFC 2046 §5.1.1): a part ends before that line break.
* A header block ends at the first blank line, at a delimiter line, or at the
  end of its part (then the body is empty).
* message/rfc822 (RFC 2046 §5.2.1) is parsed into when its
  Content-Transfer-Encoding is an identity one (7bit, 8bit, binary, or none);
  a base64 or quoted-printable one is an opaque leaf, since offsets into the
  encoded text cannot name the decoded message's parts.
* Parts of a multipart/digest default to message/rfc822 (RFC 2046 §5.1.5);
  everything else defaults to text/plain; charset=us-ascii (RFC 2045 §5.2), as
  does a Content-Type without a valid type/subtype, and a multipart without the
  boundary parameter RFC 2046 §5.1.1 requires.

Limits (as Dovecot's): nesting depth 100, 10000 parts; past them the rest of
the message is body of the part being read.
"""

from __future__ import annotations

from .headers import HeaderFields, bytes_to_text, find_header_end
from .params import param, parse_content_type, parse_token

MAX_DEPTH = 100
MAX_PARTS = 10000

LEAF, MULTIPART, MESSAGE = 0, 1, 2

_IDENTITY = {"7bit", "8bit", "binary"}
_NO_FIELDS = HeaderFields([], {})


class Node:
    """A part while the tree is being built (mutable; not part of the API).

    Offsets are into the blob: ``header_start`` ≤ ``body_start`` ≤ ``end``.
    A MESSAGE node has one child: the encapsulated message, whose header starts
    at this node's ``body_start``.
    """

    __slots__ = (
        "header_start",
        "body_start",
        "end",
        "kind",
        "fields",
        "mtype",
        "subtype",
        "params",
        "cte",
        "children",
        "boundary",
        "closed",
        "depth",
    )

    def __init__(self, header_start: int, body_start: int, depth: int) -> None:
        self.header_start = header_start
        self.body_start = body_start
        self.end = body_start
        self.kind = LEAF
        self.fields = _NO_FIELDS
        self.mtype = "text"
        self.subtype = "plain"
        self.params: list[tuple[str, str]] = []
        self.cte: str | None = None
        self.children: list[Node] = []
        self.boundary = b""
        self.closed = False
        self.depth = depth

    def field(self, name: bytes) -> str | None:
        """First value of field ``name`` (lower-case), unfolded, as Latin-1 text."""
        return self.fields.text(name)


def _invalid_content_type(node: Node) -> None:
    """A multipart without a boundary parameter: RFC 2046 §5.1.1 makes the
    parameter required, so the Content-Type is invalid, and RFC 2045 §5.2 says to
    assume the default, text/plain; charset=us-ascii, for the same bytes.  (A
    leaf of type "multipart" is grammatical in RFC 3501 §9 but clients read
    that type as a nested list; Dovecot invents one empty body part instead.)"""
    node.mtype, node.subtype = "text", "plain"
    node.params = [("charset", "us-ascii")]


class _Scanner:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.stack: list[Node] = []
        self.count = 0
        self.active: list[tuple[int, bytes]] = []

    def _refresh(self) -> None:
        # innermost first, so that equal boundaries resolve to the innermost
        self.active = [
            (i, n.boundary)
            for i, n in reversed(list(enumerate(self.stack)))
            if n.kind == MULTIPART and not n.closed
        ]

    def next_delimiter(self, pos: int, stop: int) -> tuple[int, int, int, bool, int] | None:
        """The first delimiter line of an active boundary starting in [pos, stop).

        Returns ``(q, p, stack_index, is_close, line_end)``: ``q`` where the part
        before it ends (its preceding line break, if inside the part), ``p``
        the ``--``, ``line_end`` after the line's LF.
        """
        blob = self.blob
        i = pos
        at_start = blob.startswith(b"--", pos) and (pos == 0 or blob[pos - 1] == 0x0A)
        while True:
            if at_start:
                p = q = pos
                at_start = False
            else:
                k = blob.find(b"\n--", i, stop + 2)
                if k == -1:
                    return None
                p = k + 1
                q = k - 1 if k > pos and blob[k - 1] == 0x0D else k
            eol = blob.find(b"\n", p)
            line_end = len(blob) if eol == -1 else eol + 1
            best = -1
            blen = -1
            for idx, b in self.active:
                if len(b) > blen and blob.startswith(b, p + 2):
                    best, blen = idx, len(b)
            if best != -1:
                close = blob.startswith(b"--", p + 2 + blen)
                return q, p, best, close, line_end
            i = p

    def open_part(self, pos: int, default: tuple[str, str], depth: int) -> Node:
        """Read a part's header at ``pos``, push it (and, for message/rfc822, its
        encapsulated message), and return it."""
        blob = self.blob
        self.count += 1
        header_end, body_start = find_header_end(blob, pos, len(blob))
        if self.active:
            cut = self.next_delimiter(pos, header_end)
            if cut is not None and cut[1] < body_start:
                header_end = body_start = cut[0]
        node = Node(pos, body_start, depth)
        node.fields = HeaderFields.parse(blob, pos, header_end)
        ct = parse_content_type(node.field(b"content-type"))
        if ct is None:
            node.mtype, node.subtype = default
            node.params = [("charset", "us-ascii")] if default[0] == "text" else []
        else:
            node.mtype, node.subtype, node.params = ct
        node.cte = parse_token(node.field(b"content-transfer-encoding"))
        mtype, subtype = node.mtype.lower(), node.subtype.lower()
        room = depth < MAX_DEPTH and self.count < MAX_PARTS
        self.stack.append(node)
        if mtype == "multipart" and not param(node.params, "boundary"):
            _invalid_content_type(node)
        elif mtype == "multipart" and room:
            node.kind = MULTIPART
            node.boundary = (param(node.params, "boundary") or "").encode("latin-1", "replace")
            self._refresh()
        elif (
            mtype == "message"
            and subtype == "rfc822"
            and room
            and (node.cte is None or node.cte.lower() in _IDENTITY)
        ):
            node.kind = MESSAGE
            node.children.append(self.open_part(body_start, ("text", "plain"), depth + 1))
        return node

    def run(self) -> Node:
        blob = self.blob
        root = self.open_part(0, ("text", "plain"), 0)
        pos = self.stack[-1].body_start
        while self.active and self.count < MAX_PARTS:
            found = self.next_delimiter(pos, len(blob))
            if found is None:
                break
            q, _p, idx, close, line_end = found
            while len(self.stack) > idx + 1:
                self.stack.pop().end = q
            parent = self.stack[idx]
            if close:
                parent.closed = True
                self._refresh()
                pos = line_end
                continue
            self._refresh()
            digest = parent.subtype.lower() == "digest"
            default = ("message", "rfc822") if digest else ("text", "plain")
            child = self.open_part(line_end, default, parent.depth + 1)
            parent.children.append(child)
            pos = self.stack[-1].body_start
        for node in self.stack:
            node.end = len(blob)
        self.stack.clear()
        return root


def build_tree(blob: bytes) -> Node:
    """Parse ``blob`` into its part tree.  Never raises on any input."""
    return _Scanner(blob).run()


def charset_of(node: Node) -> str:
    """The part's charset parameter, lower-case, or "" (for text parts without
    one RFC 2045 §5.2 says us-ascii; callers decide)."""
    cs = param(node.params, "charset")
    return bytes_to_text(cs.encode("latin-1")).strip().lower() if cs else ""
