"""The search values kept in the MIME facts (format version 4) and the cheap
readers of serialized facts: they must give exactly what parsing the header
gives (SEARCH FROM/TO/CC/BCC/SUBJECT, RFC 3501 §6.4.4), for every corpus
message, from bytes and from zero-copy views, and version 1 and 2 facts must
still read (version 2's search values, normalised with ``str.casefold``, are
ignored: i;unicode-casemap, RFC 5051, replaced that normalisation; version 3's
too: version 4 adds the parsed forms of the address fields)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from mailserver.protocol.mime import (
    SEARCH_FIELDS,
    HeaderFields,
    MessageFacts,
    analyze,
    field_search_values,
    header_values,
    items_from_bytes,
    search_norm,
    search_values_from_bytes,
)
from mailserver.protocol.mime.facts import address_search_form

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"


def corpus() -> list[bytes]:
    files = sorted((CORPUS / "messages").glob("*.eml"))
    assert len(files) >= 100, f"test corpus missing at {CORPUS}"  # fail, never skip
    return [p.read_bytes() for p in files]


def as_v1(raw: bytes) -> bytes:
    """The same facts as version 1 wrote them: no search section."""
    head = 3 + 8 + struct.calcsize("<BqIII")
    (ls,) = struct.unpack_from("<I", raw, head)
    return b"MF\x01" + raw[3:head] + raw[head + 4 + ls :]


def test_search_values_match_header_parse() -> None:
    for blob in corpus():
        facts = analyze(blob)
        header = blob[: facts.root.body_start]
        fields = HeaderFields.parse(header)
        expected = tuple(field_search_values(fields, name.encode()) for name in SEARCH_FIELDS)
        assert facts.search == expected
        # The decoded values come first; address fields may add parsed forms.
        for name, values in zip(SEARCH_FIELDS, facts.search, strict=True):
            plain = [search_norm(v) for v in header_values(header, name)]
            assert [v for v in values if v in plain] == plain or name != "subject"
            assert set(plain) <= set(values)


def test_roundtrip_and_cheap_readers() -> None:
    for blob in corpus():
        facts = analyze(blob)
        raw = facts.to_bytes()
        assert raw.startswith(b"MF\x04")
        for form in (raw, memoryview(raw), memoryview(b"pad" + raw)[3:]):
            assert MessageFacts.from_bytes(form) == facts
            assert search_values_from_bytes(form) == facts.search
            env, body, bs, sent = items_from_bytes(form)
            assert (env, body, bs, sent) == (
                facts.envelope, facts.body, facts.bodystructure, facts.sent_date)
            assert all(type(x) is bytes for x in (env, body, bs))


def test_version_1_facts_still_read() -> None:
    for blob in corpus()[:40]:
        facts = analyze(blob)
        old = as_v1(facts.to_bytes())
        back = MessageFacts.from_bytes(old)
        assert back.search == ()
        assert back == MessageFacts(facts.size, facts.envelope, facts.body,
                                    facts.bodystructure, facts.sent_date, facts.root)
        assert search_values_from_bytes(old) == ()
        assert items_from_bytes(old)[:3] == (facts.envelope, facts.body, facts.bodystructure)


@pytest.mark.parametrize("magic", [b"MF\x02", b"MF\x03"])
def test_version_2_and_3_facts_read_without_their_search_values(magic: bytes) -> None:
    for blob in corpus()[:40]:
        facts = analyze(blob)
        old = magic + facts.to_bytes()[3:]  # same layout, old search values
        back = MessageFacts.from_bytes(old)
        assert back == MessageFacts(facts.size, facts.envelope, facts.body,
                                    facts.bodystructure, facts.sent_date, facts.root)
        assert search_values_from_bytes(old) == ()
        assert items_from_bytes(old) == (facts.envelope, facts.body, facts.bodystructure,
                                         facts.sent_date)


def test_odd_values_survive() -> None:
    blob = (b"From: =?utf-8?q?a=00b?= <x@y>\r\nTo: \xff\xfe junk\r\nSubject: a\r\n"
            b"\tfolded   SUBJECT\r\nCc: one\r\nCc: two\r\n\r\nbody\r\n")
    facts = analyze(blob)
    assert facts.search[SEARCH_FIELDS.index("subject")] == ("A FOLDED SUBJECT",)
    # "one" parses as a local part without a domain: the parsed form adds nothing.
    assert facts.search[SEARCH_FIELDS.index("cc")] == ("ONE", "TWO")
    assert "\x00" in facts.search[0][0]
    assert MessageFacts.from_bytes(facts.to_bytes()) == facts


@pytest.mark.parametrize(
    "bad", [b"", b"XX\x02", b"MF\x04\x00", b"MF\x03\x00", b"MF\x02\x00",
            b"MF\x01\x00\x00"])
def test_garbage_raises_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        items_from_bytes(bad)
    with pytest.raises(ValueError):
        MessageFacts.from_bytes(bad)
    if bad.startswith((b"MF\x01", b"MF\x02", b"MF\x03")):
        assert search_values_from_bytes(bad) == ()  # none to use: not an error
    else:
        with pytest.raises(ValueError):
            search_values_from_bytes(bad)


def test_truncated_search_section_raises() -> None:
    raw = analyze(corpus()[0]).to_bytes()
    head = 3 + 8 + struct.calcsize("<BqIII")
    (ls,) = struct.unpack_from("<I", raw, head)
    broken = raw[: head + 4 + ls - 1]
    with pytest.raises(ValueError):
        search_values_from_bytes(broken)
    with pytest.raises(ValueError):
        MessageFacts.from_bytes(broken)


@pytest.mark.parametrize(("raw", "form"), [
    (b"=?utf-8?q?J=C3=B6rg?= <joerg@example.com>", "Jörg <joerg@example.com>"),
    (b'"=?utf-8?q?J=C3=B6rg_M?=" <j@x.org>', "Jörg M <j@x.org>"),
    (b"Team: alice@x.org, Bob (the boss) <bob@y.org>;", "Team: alice@x.org, Bob <bob@y.org>;"),
    (b"alice(comment)@example.com", "comment <alice@example.com>"),
    (b"alice@example.com (Alice Smith)", "Alice Smith <alice@example.com>"),
    (b"Alice (boss) Smith <a@x.org>", "Alice Smith <a@x.org>"),
    (b"undisclosed-recipients:;", "undisclosed-recipients: ;"),
    (b"<  spaced@x.org >", "spaced@x.org"),
    (b"=?iso-8859-1?q?Gr=FC=DF?= =?iso-8859-1?q?e?= <g@x.org>", "Grüße <g@x.org>"),
    (b"(((", ""),
])
def test_address_search_form(raw: bytes, form: str) -> None:
    """What SEARCH FROM/TO/CC/BCC match besides the decoded value: the
    addresses as parsed (Dovecot's way): names decoded, comments gone."""
    assert address_search_form(raw) == form
