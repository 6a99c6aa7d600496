"""BODY and BODYSTRUCTURE (RFC 3501 §7.4.2, grammar ``body`` in §9).

Following Dovecot where the RFC leaves room: type and subtype are sent as
written in the message; a text part without parameters gets
``("charset" "us-ascii")`` (RFC 2045 §5.2); Content-Transfer-Encoding defaults
to "7bit"; a multipart with no body parts is given one empty text/plain part
(``1*body`` needs one); message/rfc822 that we did not parse into (an encoded
one, or past the limits) gets an all-NIL envelope and an empty body.

Sizes and line counts are of the body as stored (RFC 3501: "the size of the
body in octets ... in its transfer encoding"); a last line without a line
break counts as a line.
"""

from __future__ import annotations

from .imap_envelope import EMPTY_IMAP_ENVELOPE, imap_envelope
from .imapstr import nstring, string
from .params import parse_disposition, parse_languages
from .structure import MESSAGE, MULTIPART, Node

EMPTY_BODY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
#: The same with the extension data every other part of a BODYSTRUCTURE has
#: (body-fld-md5, -dsp, -lang, -loc; RFC 3501 §7.4.2): optional, but index-based
#: parsers (K-9) trip over a response that mixes both forms.
EMPTY_BODY_EXT = EMPTY_BODY[:-1] + b" NIL NIL NIL NIL)"


def count_lines(blob: bytes, start: int, end: int) -> int:
    """Text lines in ``blob[start:end]`` (RFC 3501 §7.4.2 body-fld-lines):
    its line breaks.  A last line without one (a part that ends right before
    its boundary's CRLF, which belongs to the boundary, RFC 2046 §5.1.1) is
    not counted, as Dovecot and Cyrus count."""
    if end <= start:
        return 0
    return blob.count(b"\n", start, end)


def _params(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(string(n) + b" " + string(v) for n, v in params) + b")"


def _ext_common(node: Node) -> bytes:
    """body-fld-dsp SP body-fld-lang SP body-fld-loc (RFC 3501 §9; RFC 2183, 3282, 2557)."""
    dsp = parse_disposition(node.field(b"content-disposition"))
    dsp_b = b"NIL" if dsp is None else b"(" + string(dsp[0]) + b" " + _params(dsp[1]) + b")"
    langs = parse_languages(node.field(b"content-language"))
    if not langs:
        lang_b = b"NIL"
    elif len(langs) == 1:
        lang_b = string(langs[0])
    else:
        lang_b = b"(" + b" ".join(string(x) for x in langs) + b")"
    loc = node.field(b"content-location")
    loc_b = b"NIL" if loc is None else nstring("".join(loc.split()))
    return dsp_b + b" " + lang_b + b" " + loc_b


def _stripped(node: Node, name: bytes) -> bytes:
    v = node.field(name)
    return b"NIL" if v is None else nstring(v.strip(" \t"))


def render(node: Node, blob: bytes, extended: bool) -> bytes:
    """BODYSTRUCTURE (``extended``) or BODY of ``node``, ready to send."""
    return render_both(node, blob)[extended]


def render_both(node: Node, blob: bytes) -> tuple[bytes, bytes]:
    """``(BODY, BODYSTRUCTURE)`` of ``node`` in one walk: they differ only in the
    extension data, so every shared piece is computed once."""
    body: list[bytes] = []
    ext: list[bytes] = []
    _render(node, blob, body, ext)
    return b"".join(body), b"".join(ext)


def _render(node: Node, blob: bytes, body: list[bytes], ext: list[bytes]) -> None:
    if node.kind == MULTIPART:
        body.append(b"(")
        ext.append(b"(")
        if node.children:
            for child in node.children:
                _render(child, blob, body, ext)
        else:
            body.append(EMPTY_BODY)
            ext.append(EMPTY_BODY_EXT)
        sub = b" " + string(node.subtype)
        body.append(sub + b")")
        ext.append(sub + b" " + _params(node.params) + b" " + _ext_common(node) + b")")
        return
    mtype, subtype = node.mtype.lower(), node.subtype.lower()
    params = node.params
    if mtype == "text" and not params:
        params = [("charset", "us-ascii")]
    head = b"(%s %s %s %s %s %s %d" % (
        string(node.mtype),
        string(node.subtype),
        _params(params),
        _stripped(node, b"content-id"),
        _stripped(node, b"content-description"),
        string(node.cte or "7bit"),
        node.end - node.body_start,
    )
    body.append(head)
    ext.append(head)
    if mtype == "message" and subtype == "rfc822":
        if node.kind == MESSAGE:
            inner = node.children[0]
            env = b" " + imap_envelope(inner.fields) + b" "
            body.append(env)
            ext.append(env)
            _render(inner, blob, body, ext)
        else:
            body.append(b" " + EMPTY_IMAP_ENVELOPE + b" " + EMPTY_BODY)
            ext.append(b" " + EMPTY_IMAP_ENVELOPE + b" " + EMPTY_BODY_EXT)
        lines = b" %d" % count_lines(blob, node.body_start, node.end)
        body.append(lines)
        ext.append(lines)
    elif mtype == "text":
        lines = b" %d" % count_lines(blob, node.body_start, node.end)
        body.append(lines)
        ext.append(lines)
    body.append(b")")
    ext.append(b" NIL " + _ext_common(node) + b")")
