"""``smtp.data.DataDecoder``: the chunked DATA reader (RFC 5321 §4.1.1.4, §4.5.2).

Pure code, tested as h11 tests its parser: every input is fed whole, one byte
at a time, and in chunks, with trailing data after the end marker; and it is
checked against a line-by-line model of aiosmtpd's reader (the one it replaced).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.protocol.smtp.data import DataDecoder, DataError

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"


def run(data: bytes, step: int | None, *, max_size: int = 0, max_line: int = 1000
        ) -> tuple[DataDecoder, bytes]:
    dec = DataDecoder(max_size=max_size, max_line=max_line)
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        rest = dec.feed(data[i:i + step])
        if rest is not None:
            return dec, rest + data[i + step:]
    raise AssertionError("no end marker seen")


def model(data: bytes, *, max_size: int, max_line: int) -> tuple[object, bytes]:
    """aiosmtpd's rules, one CRLF line at a time: (content or error, rest)."""
    lines, pos, size, error = [], 0, 0, None
    while True:
        i = data.index(b"\r\n", pos)
        line = data[pos:i + 2]
        pos = i + 2
        if line == b".\r\n":
            break
        size += len(line)
        if error is None and max_size and size > max_size:
            error = DataError.TOO_MUCH
        if error is None and len(line) > max_line:
            error = DataError.LINE_TOO_LONG
        lines.append(line[1:] if line.startswith(b".") else line)
    return (error if error is not None else b"".join(lines)), data[pos:]


CASES = [
    b".\r\n",
    b"Subject: x\r\n\r\nhello\r\n.\r\n",
    b"..\r\n...x\r\n.y\r\n.\r\n",
    b"bare lf\n.\nMAIL FROM:<evil@x>\r\nbare cr\r.\rz\r\n.\r\n",
    b"a\r\n\r\n.\r\n",
    b"\r\n.\r\n",
]


@pytest.mark.parametrize("body", CASES)
@pytest.mark.parametrize("step", [None, 1, 2, 3, 7])
def test_matches_the_line_model_fed_any_way(body: bytes, step: int | None) -> None:
    trailing = b"MAIL FROM:<next@x>\r\nQUIT\r\n"
    dec, rest = run(body + trailing, step)
    expected, expected_rest = model(body + trailing, max_size=0, max_line=1000)
    assert dec.error is None and dec.content == expected
    assert rest == expected_rest == trailing


def test_smuggled_lf_dot_lf_is_content() -> None:
    dec, rest = run(b"one\n.\nMAIL FROM:<evil@x>\r\n.\r\n", 1)
    assert dec.content == b"one\n.\nMAIL FROM:<evil@x>\r\n" and rest == b""


@pytest.mark.parametrize("step", [None, 1, 5, 64])
def test_line_limit_counts_crlf(step: int | None) -> None:
    ok, _ = run(b"x" * 8 + b"\r\n.\r\n", step, max_line=10)
    assert ok.error is None and ok.content == b"x" * 8 + b"\r\n"
    bad, rest = run(b"x" * 9 + b"\r\nmore\r\n.\r\nNOOP\r\n", step, max_line=10)
    assert bad.error is DataError.LINE_TOO_LONG and rest == b"NOOP\r\n"
    # A line with no end yet, already past the limit, is refused while it streams.
    long, _ = run(b"y" * 1000 + b"\r\n.\r\n", step, max_line=10)
    assert long.error is DataError.LINE_TOO_LONG


@pytest.mark.parametrize("step", [None, 1, 100])
def test_size_limit_and_memory_stays_bounded(step: int | None) -> None:
    ok, _ = run(b"a" * 98 + b"\r\n.\r\n", step, max_size=100)
    assert ok.error is None
    dec = DataDecoder(max_size=100, max_line=1000)
    for _ in range(1000):
        assert dec.feed(b"z" * 50 + b"\r\n") is None
        assert len(dec._buf) < 200  # dropped as it comes
    assert dec.feed(b".\r\nQUIT\r\n") == b"QUIT\r\n"
    assert dec.error is DataError.TOO_MUCH
    with pytest.raises(RuntimeError):
        _ = dec.content


def test_corpus_round_trips_through_dot_stuffing() -> None:
    messages = sorted((CORPUS / "messages").glob("*.eml"))
    assert len(messages) > 100, "corpus missing"
    for path in messages:
        raw = path.read_bytes()
        if b"\r\n" not in raw:
            raw = raw.replace(b"\n", b"\r\n")
        if not raw.endswith(b"\r\n"):
            raw += b"\r\n"
        stuffed = (b"\r\n" + raw).replace(b"\r\n.", b"\r\n..")[2:]
        for step in (None, 4096, 1):
            if step == 1 and len(raw) > 20_000:
                continue
            dec, rest = run(stuffed + b".\r\n", step, max_line=1 << 20)
            assert dec.error is None and dec.content == raw and rest == b"", path.name


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"a", b"..", b"\r\n.\r\n"]),
             max_size=40),
    st.integers(min_value=1, max_value=9),
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=3, max_value=20),
)
def test_fuzz_against_the_line_model(parts: list[bytes], step: int, max_size: int,
                                     max_line: int) -> None:
    data = b"".join(parts) + b"\r\n.\r\nTAIL"
    dec, rest = run(data, step, max_size=max_size, max_line=max_line)
    expected, expected_rest = model(data, max_size=max_size, max_line=max_line)
    assert rest == expected_rest
    if isinstance(expected, DataError):
        # When both limits are crossed, which one is seen first may differ.
        assert dec.error is not None
    else:
        assert dec.error is None and dec.content == expected


@pytest.mark.parametrize("step", [None, 1, 3])
@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (b"a\r\nb\r\n", False),
        (b"a\nb\r\n", True),  # bare LF
        (b"a\rb\r\n", True),  # bare CR
        (b"a\r\nb\n.\nc\r\n", True),  # the smuggling attempt "LF . LF"
        (b"", False),
    ],
)
def test_bare_line_endings_refused_when_asked(body: bytes, refused: bool, step: int | None) -> None:
    data = body + b".\r\nQUIT\r\n"
    for strict in (False, True):
        decoder = DataDecoder(max_size=0, max_line=1000, reject_bare_line_endings=strict)
        chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
        rest = b""
        for i, chunk in enumerate(chunks):
            got = decoder.feed(chunk)
            if got is not None:
                rest = got + b"".join(chunks[i + 1 :])
                break
        assert decoder.done and rest == b"QUIT\r\n"
        if strict and refused:
            assert decoder.error is DataError.BARE_LINE_ENDING
        else:
            assert decoder.error is None and decoder.content == body
