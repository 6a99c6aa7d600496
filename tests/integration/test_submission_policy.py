"""Pure pieces of the submission policy: From: parsing and the AUTH failure throttle."""

from __future__ import annotations

import pytest

from mailserver.auth.throttle import FORGET_AFTER, MAX_ENTRIES, AuthThrottle
from mailserver.protocol.smtp.sender import from_addresses

FROM_CASES = [
    (b"From: Alice <alice@example.test>\r\nSubject: x\r\n\r\nFrom: evil@x.test\r\n",
     ["alice@example.test"]),
    (b"Subject: x\r\nfrom:\r\n  \"Liddell, A\" <alice@example.test>\r\n\r\n",
     ["alice@example.test"]),
    (b"From: a@example.test, b@example.test\r\n\r\n", ["a@example.test", "b@example.test"]),
    (b"From: a@example.test\r\nFrom: b@example.test\r\n\r\n",
     ["a@example.test", "b@example.test"]),
    (b"Subject: none\r\n\r\nFrom: body@example.test\r\n", []),
    (b"From: garbage\r\n\r\n", ["", ""]),
    (b'From: "alice@example.test"@evil.test\r\n\r\n', ['"alice@example.test"@evil.test']),
]


@pytest.mark.parametrize(("message", "expected"), FROM_CASES)
def test_from_addresses(message: bytes, expected: list[str]) -> None:
    assert from_addresses(message) == expected


def test_ambiguous_from_is_unparseable() -> None:
    # Two readers disagree about who the author is: refuse ("" is never owned).
    got = from_addresses(b"From: alice@example.test <bob@example.test>\r\n\r\n")
    assert "" in got and "bob@example.test" in got


def test_from_addresses_whole_bytewise_and_with_trailing_data() -> None:
    msg = b"From: Al <al@example.test>\r\n\r\n"
    assert from_addresses(msg + b"tail\r\n" * 3) == ["al@example.test"]
    for cut in range(len(msg)):
        from_addresses(msg[:cut])  # never raises on a truncated header


def test_throttle_grows_is_bounded_and_forgets() -> None:
    now = [0.0]
    t = AuthThrottle(0.5, 4.0, clock=lambda: now[0])
    delays = [t.record_failure("192.0.2.1") for _ in range(6)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert t.record_failure("192.0.2.2") == 0.0  # per address
    now[0] += FORGET_AFTER + 1
    assert t.failures("192.0.2.1") == 0
    assert t.record_failure("192.0.2.1") == 0.0


def test_throttle_table_is_bounded() -> None:
    t = AuthThrottle(1.0, 1.0)
    for i in range(MAX_ENTRIES + 10):
        t.record_failure(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(t._failures) == MAX_ENTRIES
