"""Hypothesis pieces shared by the wire fuzzers (tests/fuzz/test_*_fuzz.py).

A fuzzed command line is either random bytes or a valid seed line mutated a
few times; neither ever holds CR or LF, so each example stays one line and
the fuzzer, not the data, decides where commands end (RFC 5321 §2.3.8,
RFC 3501 §2.2).
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Wire fuzzers share one server per module, hence a function-scoped fixture
#: under @given is deliberate.
WIRE_FUZZ = settings(max_examples=100, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])

#: Printable and control bytes, but never CR or LF: one line per example.
LINE_BYTES = st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], *, max_repeat: int,
            tokens: Sequence[bytes] = ()) -> bytes:
    """A seed line with up to four bytes inserted, deleted, replaced or a run
    of it repeated up to ``max_repeat`` times; the fifth kind of edit inserts
    one of ``tokens`` when given, else swaps the case of the whole line."""
    fifth = "tok" if tokens else "case"
    line = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["ins", "del", "rep", "dup", fifth]))
        pos = draw(st.integers(0, len(line)))
        byte = draw(st.integers(0, 255).filter(lambda b: b not in (10, 13)))
        if op == "ins":
            line.insert(pos, byte)
        elif op == "del" and line:
            del line[min(pos, len(line) - 1)]
        elif op == "rep" and line:
            line[min(pos, len(line) - 1)] = byte
        elif op == "dup":
            run = line[pos : pos + draw(st.integers(1, 20))]
            line[pos:pos] = run * draw(st.integers(1, max_repeat))
        elif op == "tok":
            line[pos:pos] = draw(st.sampled_from(tokens))
        elif op == "case":
            line = bytearray(bytes(line).swapcase())
    return bytes(line)
