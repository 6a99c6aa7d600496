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
    assert codec.restamped_record(7, 42, raw, 100, flags) == want
    assert codec.message_modseq(patched) == 100


def test_account_round_trip_and_the_disabled_mark() -> None:
    from mailserver.store.model import Account

    phc = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$dGFn"
    for acc in (Account("a@example.test", phc, 10, 3),
                Account("a@example.test", phc, 0, 0, disabled=True)):
        assert codec.decode_account(acc.address, codec.encode_account(acc)) == acc
    # A record written before the flag existed: quota, used, the bare hash.
    old = codec._ACCOUNT.pack(5, 1) + phc.encode()
    assert codec.decode_account("a@example.test", old) == Account("a@example.test", phc, 5, 1)
    with pytest.raises(ValueError):
        codec.encode_account(Account("a@example.test", "!" + phc, 0, 0))
