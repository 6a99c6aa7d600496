"""Sequence sets (RFC 3501 §9), parsed into ``types.SequenceSet`` and formatted back.

::

    seq-number   = nz-number / "*"
    seq-range    = seq-number ":" seq-number
    sequence-set = (seq-number / seq-range) *("," sequence-set)
    nz-number    = digit-nz *DIGIT      ; Non-zero unsigned 32-bit integer

    sequence-set =/ seq-last-command     ; RFC 5182 §3
    seq-last-command = "$"

``*`` is stored as ``None``.  A range keeps the client's order (``5:1``).
``$`` (the saved SEARCH result, RFC 5182) is accepted only as the whole set,
as Dovecot does: ``SequenceSet((), saved=True)``; what it names is session
state, resolved by the server.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.imap.types import SequenceSet

MAX_SEQ = 2**32 - 1
_SEQ_CHARS = frozenset(b"0123456789*:,$")


def _seq_number(text: str) -> int | None:
    if text == "*":
        return None
    if not text.isdigit() or not text.isascii() or text[0] == "0" or len(text) > 10:
        raise ProtocolSyntaxError("Invalid sequence set")
    value = int(text)
    if value > MAX_SEQ:
        raise ProtocolSyntaxError("Invalid sequence set")
    return value


def parse_sequence_set(text: str) -> SequenceSet:
    """Parse ``sequence-set`` from ``text`` (the whole string must match).

    Raises ``ProtocolSyntaxError`` for 0, numbers above 2**32-1, empty
    elements, a ``$`` that is not the whole set, or any other character.
    """
    if not text:
        raise ProtocolSyntaxError("Invalid sequence set")
    if text == "$":
        return SequenceSet((), saved=True)
    ranges: list[tuple[int | None, int | None]] = []
    for element in text.split(","):
        lo, colon, hi = element.partition(":")
        a = _seq_number(lo)
        b = _seq_number(hi) if colon else a
        ranges.append((a, b))
    return SequenceSet(tuple(ranges))


def sequence_set_chars() -> frozenset[int]:
    """Octets that may occur in a sequence set (for the tokenizer)."""
    return _SEQ_CHARS


def format_sequence_set(seqset: SequenceSet) -> str:
    """The wire form of ``seqset``: ``parse_sequence_set(format_sequence_set(s)) == s``."""

    def num(x: int | None) -> str:
        return "*" if x is None else str(x)

    if seqset.saved:
        return "$"
    return ",".join(num(a) if a == b else f"{num(a)}:{num(b)}" for a, b in seqset.ranges)


def compact(numbers: Iterable[int]) -> str:
    """A sequence set naming ``numbers`` in the order given, consecutive runs
    merged: ``[1, 2, 3, 7]`` -> ``"1:3,7"``; empty input gives ``""``.  The
    order matters for COPYUID, whose two sets correspond element by element
    (RFC 4315 §3 ``uid-set``)."""
    out: list[str] = []
    start = prev = None
    for n in numbers:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = n
    if start is not None:
        out.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(out)



def compress(numbers: Iterable[int]) -> str:
    """A compact sequence set naming exactly ``numbers`` in ascending ranges,
    e.g. ``[3, 1, 2, 7]`` -> ``"1:3,7"`` (ESEARCH ALL, RFC 4731 §3.1)."""
    return compact(sorted(set(numbers)))
