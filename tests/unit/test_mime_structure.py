"""BODY / BODYSTRUCTURE and the part tree (RFC 3501 §7.4.2, RFC 2045/2046)."""

from __future__ import annotations

from mailserver.protocol.mime import LEAF, MESSAGE, MULTIPART, MessageFacts, analyze

MIXED = (
    b"From: a@b\r\n"
    b"Content-Type: multipart/mixed; boundary=XX\r\n"
    b"\r\n"
    b"preamble\r\n"
    b"--XX\r\n"
    b"\r\n"
    b"plain part\r\n"
    b"--XX\r\n"
    b"Content-Type: text/html; charset=UTF-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"Content-ID: <id1>\r\n"
    b"Content-Description: the html\r\n"
    b"Content-Disposition: inline; filename=\"a.html\"\r\n"
    b"Content-Language: en, de\r\n"
    b"Content-Location: http://x.example/\r\n a.html\r\n"
    b"\r\n"
    b"<p>hi</p>\r\n"
    b"two\r\n"
    b"--XX--\r\n"
    b"epilogue\r\n"
)


def test_single_part_defaults() -> None:
    f = analyze(b"Subject: x\r\n\r\nline1\r\nline2\r\n")
    assert f.body == b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 2)'
    assert f.bodystructure == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 2 NIL NIL NIL NIL)'
    )
    assert (f.root.header_start, f.root.body_start, f.root.end) == (0, 14, 28)
    assert f.root.kind == LEAF and f.root.media_type == "text/plain"


def test_sizes_and_lines_are_of_stored_bytes() -> None:
    lf = analyze(b"Subject: x\n\na\nb\nc")
    # 5 octets, 2 lines: line breaks are counted, not an unterminated last line
    # (RFC 3501 §7.4.2 body-fld-lines; as Dovecot counts).
    assert lf.body.endswith(b" 5 2)")
    crlf = analyze(b"Subject: x\r\n\r\na\r\nb\r\n")
    assert crlf.body.endswith(b" 6 2)")


def test_type_case_kept_and_text_without_params_gets_charset() -> None:
    f = analyze(b"Content-Type: Text/HTML\r\n\r\n<p>\r\n")
    assert f.body.startswith(b'("Text" "HTML" ("charset" "us-ascii") NIL NIL "7bit" 5 1')


def test_non_text_has_no_lines() -> None:
    f = analyze(b"Content-Type: image/png; name=a.png\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n")
    assert f.body == b'("image" "png" ("name" "a.png") NIL NIL "base64" 6)'
    assert f.root.encoding == "base64"


def test_invalid_content_type_defaults_to_text_plain() -> None:
    for ct in (b"text plain", b"application-x-gzip", b"/", b";"):
        f = analyze(b"Content-Type: " + ct + b"\r\n\r\nx\r\n")
        assert f.body.startswith(b'("text" "plain" ("charset" "us-ascii")'), ct


def test_multipart_bodystructure_exact() -> None:
    f = analyze(MIXED)
    assert f.bodystructure == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL)'
        b'("text" "html" ("charset" "UTF-8") "<id1>" "the html" "quoted-printable" 14 1'
        b' NIL ("inline" ("filename" "a.html")) ("en" "de") "http://x.example/a.html")'
        b' "mixed" ("boundary" "XX") NIL NIL NIL)'
    )
    assert f.body == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0)'
        b'("text" "html" ("charset" "UTF-8") "<id1>" "the html" "quoted-printable" 14 1)'
        b' "mixed")'
    )
    root = f.root
    assert root.kind == MULTIPART and len(root.children) == 2
    p1, p2 = root.children
    assert MIXED[p1.header_start : p1.body_start] == b"\r\n"
    assert MIXED[p1.body_start : p1.end] == b"plain part"
    assert MIXED[p2.body_start : p2.end] == b"<p>hi</p>\r\ntwo"
    assert p2.charset == "utf-8" and p2.encoding == "quoted-printable"
    assert root.end == len(MIXED)


def test_missing_close_delimiter_and_no_parts() -> None:
    f = analyze(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n")
    assert f.root.children[0].end == len(b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n")
    zero = analyze(b"Content-Type: multipart/mixed; boundary=b\n\nnothing here\n")
    # 1*body: an empty text/plain stands in for the missing parts (as Dovecot)
    assert zero.body == b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")'
    assert zero.root.children == ()


def test_multipart_without_boundary_is_text_plain() -> None:
    # RFC 2046 §5.1.1: boundary is required; RFC 2045 §5.2: an invalid
    # Content-Type means text/plain; charset=us-ascii, over the same bytes.
    f = analyze(b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n")
    assert f.root.kind == LEAF
    assert f.root.media_type == "text/plain" and f.root.charset == "us-ascii"
    assert f.body == b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 3)'
    assert f.bodystructure == f.body[:-1] + b" NIL NIL NIL NIL)"


def test_boundary_prefix_longest_match_wins() -> None:
    # outer "ab", inner "a": "--ab" is the outer's delimiter, ending the inner
    msg = (
        b'Content-Type: multipart/mixed; boundary="ab"\n\n'
        b'--ab\nContent-Type: multipart/mixed; boundary="a"\n\n'
        b"--ab\nContent-Type: text/plain\n\n--a\n\n--ab--\n"
    )
    f = analyze(msg)
    inner, text = f.root.children
    assert inner.kind == MULTIPART and inner.children == ()
    assert text.kind == LEAF and msg[text.body_start : text.end] == b"--a\n"


def test_outer_delimiter_closes_unterminated_inner() -> None:
    msg = (
        b"Content-Type: multipart/mixed; boundary=1\n\n"
        b"--1\nContent-Type: multipart/alternative; boundary=2\n\n"
        b"--2\n\ninner\n"
        b"--1\n\nsecond\n--1--\n"
    )
    f = analyze(msg)
    alt, second = f.root.children
    assert msg[alt.children[0].body_start : alt.children[0].end] == b"inner"
    assert msg[second.body_start : second.end] == b"second"


def test_boundary_mid_line_does_not_split() -> None:
    msg = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\ntext --b more\n--b--\n"
    f = analyze(msg)
    assert len(f.root.children) == 1


def test_boundary_with_trailing_whitespace_and_folded_param() -> None:
    msg = (
        b'Content-Type: multipart/mixed;\n boundary="foo\n bar"\n\n'
        b"--foo bar  \n\none\n--foo bar--\n"
    )
    f = analyze(msg)
    assert len(f.root.children) == 1
    assert msg[f.root.children[0].body_start : f.root.children[0].end] == b"one"


def test_part_starting_with_text_has_no_header() -> None:
    msg = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nno header here\n--b--\n"
    p = analyze(msg).root.children[0]
    assert p.header_start == p.body_start
    assert msg[p.body_start : p.end] == b"no header here"


def test_header_cut_by_boundary() -> None:
    msg = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n--b--\n"
    p = analyze(msg).root.children[0]
    assert p.media_type == "text/html"
    assert p.body_start == p.end


def test_message_rfc822_is_parsed() -> None:
    inner = b"From: in@x\r\nSubject: inner\r\n\r\nhello\r\n"
    msg = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: message/rfc822\r\n\r\n" + inner + b"--b--\r\n"
    )
    f = analyze(msg)
    part = f.root.children[0]
    assert part.kind == MESSAGE
    m = part.children[0]
    assert msg[m.header_start : m.end] == inner[:-2]
    assert (
        b'("message" "rfc822" NIL NIL NIL "7bit" 35 (NIL "inner" ((NIL NIL "in" "x"))'
        in f.bodystructure
    )
    assert b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL) 3 ' in (
        f.bodystructure
    )


def test_base64_message_rfc822_is_opaque() -> None:
    msg = (
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"RnJvbTogYUBiDQoNCmhpDQo=\r\n"
    )
    f = analyze(msg)
    assert f.root.kind == LEAF and f.root.media_type == "message/rfc822"
    assert f.body == (
        b'("message" "rfc822" NIL NIL NIL "base64" 26 '
        b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) "
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) 1)'
    )


def test_digest_parts_default_to_message_rfc822() -> None:
    msg = (
        b"Content-Type: multipart/digest; boundary=d\n\n"
        b"--d\n\nSubject: one\n\nbody one\n"
        b"--d\nContent-Type: text/plain\n\nnot a message\n--d--\n"
    )
    f = analyze(msg)
    first, second = f.root.children
    assert first.kind == MESSAGE and first.media_type == "message/rfc822"
    assert b'(NIL "one" NIL NIL NIL NIL NIL NIL NIL NIL)' in f.bodystructure
    assert second.kind == LEAF and second.media_type == "text/plain"


def test_rfc2231_continuations_are_merged() -> None:
    msg = (
        b"Content-Type: application/octet-stream;\r\n"
        b" name*0*=utf-8''caf%C3%A9;\r\n name*1*=.txt; x=1\r\n\r\n"
    )
    assert analyze(msg).body.startswith(
        b"(\"application\" \"octet-stream\" (\"name*\" \"utf-8''caf%C3%A9.txt\" \"x\" \"1\")"
    )


def test_lenient_params() -> None:
    msg = b"Content-Type: multipart/mixed;; boundary = =_x==\r\n\r\n--=_x==\r\n\r\na\r\n--=_x==--\r\n"
    f = analyze(msg)
    assert f.root.kind == MULTIPART and len(f.root.children) == 1


def test_nesting_depth_is_limited() -> None:
    depth = 150
    msg = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(depth)
    ) + b"\nleaf\n"
    f = analyze(msg)
    d, p = 0, f.root
    while p.children:
        p = p.children[0]
        d += 1
    assert d == 100
    assert MessageFacts.from_bytes(f.to_bytes()) == f


def test_roundtrip_and_bad_input() -> None:
    f = analyze(MIXED)
    b = f.to_bytes()
    assert MessageFacts.from_bytes(b) == f
    for junk in (b"", b"xx", b[:-1], b + b"x", b"MF\x01" + b"\x00" * 10):
        try:
            MessageFacts.from_bytes(junk)
        except ValueError:
            pass
        else:  # pragma: no cover - the assertion explains
            raise AssertionError(f"accepted {junk[:20]!r}")


def test_facts_size_and_sent_date_roundtrip() -> None:
    f = analyze(b"Date: Thu, 1 Jan 1970 00:00:10 +0000\r\n\r\n")
    assert f.size == 40
    g = MessageFacts.from_bytes(f.to_bytes())
    assert g.sent_date == 10 and g.size == 40


def test_empty_and_degenerate_inputs() -> None:
    for blob in (b"", b"\n", b"\r\n", b"\r", b":", b"--", b"\x00", b"From x\n"):
        f = analyze(blob)
        assert f.root.end == len(blob)
        assert MessageFacts.from_bytes(f.to_bytes()) == f
