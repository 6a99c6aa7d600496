"""``codec.restamp_message``: STORE's in-place patch of a record equals a
decode, a change of flags and MODSEQ, and an encode (RFC 7162 §3.1)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mailserver.store import codec
from mailserver.store.model import MessageRecord

BASE = MessageRecord(7, 42, frozenset({"\\Seen", "$Junk"}), 1_700_000_000, -300, 1234, 99,
                     bytes(range(32)), b"Return-Path: <a@example.org>\r\n")

CASES = [
    frozenset(),
    frozenset({"\\Deleted"}),
    frozenset({"\\Seen", "\\Flagged", "$Label1", "$Junk", "NonJunk"}),
    frozenset({"$Only"}),
]


@pytest.mark.parametrize("prefix", [b"", BASE.prefix])
@pytest.mark.parametrize("flags", CASES)
def test_restamp_equals_decode_change_encode(flags: frozenset[str], prefix: bytes) -> None:
    rec = replace(BASE, prefix=prefix)
    raw = codec.encode_message(rec)
    assert codec.message_modseq(raw) == 99
    patched = codec.restamp_message(raw, 100, flags)
    want = replace(rec, flags=flags, modseq=100)
    assert patched == codec.encode_message(want)
    assert codec.decode_message(7, 42, patched) == want
    assert codec.message_modseq(patched) == 100
