"""Modified UTF-7 for IMAP mailbox names (RFC 3501 §5.1.3).

The rules, quoted from §5.1.3:

* "characters with octet values 0x20-0x25 and 0x27-0x7e MUST represent
  themselves"; "&" is written "&-".
* everything else is UTF-16 in a base64 variant ("," instead of "/", no "=")
  between "&" and "-"; "the modified BASE64 MUST NOT be used to represent any
  printing US-ASCII character which can represent itself".
* "Modified UTF-7 [...] MUST be used instead of shift sequences that would
  null-shift" — adjacent encoded runs are one run.

Decoding is strict on purpose: every name has exactly one encoding, so a name
decoded here re-encodes to the same bytes, and two spellings can never map to
one mailbox.  Anything else raises ``ProtocolSyntaxError`` (BAD).
"""

from __future__ import annotations

import binascii

from mailserver.errors import ProtocolSyntaxError

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_B64_SET = frozenset(_B64)


def _direct(ch: str) -> bool:
    """True for characters that represent themselves (0x20-0x7e except "&")."""
    return " " <= ch <= "~" and ch != "&"


def _b64_encode(run: str) -> str:
    raw = run.encode("utf-16-be", "surrogatepass")
    # Standard base64 minus padding, "/" replaced by "," (RFC 3501 §5.1.3).
    return binascii.b2a_base64(raw, newline=False).decode("ascii").rstrip("=").replace("/", ",")


def encode(name: str) -> str:
    """Encode a mailbox name (any ``str``) to modified UTF-7 (RFC 3501 §5.1.3).

    The result is printable US-ASCII.  Never raises, except for lone surrogates
    in ``name`` (``UnicodeEncodeError``), which no decoded name contains.
    """
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if _direct(ch):
            if run:
                out.append("&" + _b64_encode("".join(run)) + "-")
                run.clear()
            out.append(ch)
        elif ch == "&":
            if run:
                out.append("&" + _b64_encode("".join(run)) + "-")
                run.clear()
            out.append("&-")
        else:
            run.append(ch)
    if run:
        out.append("&" + _b64_encode("".join(run)) + "-")
    return "".join(out)


def _b64_decode(chunk: str) -> str:
    """Decode one shifted run (the text between "&" and "-")."""
    if not chunk or any(c not in _B64_SET for c in chunk):
        raise ProtocolSyntaxError("Invalid modified UTF-7 mailbox name")
    # A run of k UTF-16 units is ceil(16k/6) characters: length mod 8 is 0, 3 or 6.
    if len(chunk) % 8 not in (0, 3, 6):
        raise ProtocolSyntaxError("Invalid modified UTF-7 mailbox name")
    padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
    try:
        raw = binascii.a2b_base64(padded.encode("ascii"), strict_mode=True)
    except binascii.Error:
        raise ProtocolSyntaxError("Invalid modified UTF-7 mailbox name") from None
    if len(raw) % 2:
        raise ProtocolSyntaxError("Invalid modified UTF-7 mailbox name")
    # Left-over bits after the last whole unit must be zero, else the
    # encoding is not canonical: re-encode and compare.
    try:
        text = raw.decode("utf-16-be")  # rejects unpaired surrogates
    except UnicodeDecodeError:
        raise ProtocolSyntaxError("Invalid modified UTF-7 mailbox name") from None
    if _b64_encode(text) != chunk or any(_direct(c) or c == "&" for c in text):
        raise ProtocolSyntaxError("Invalid modified UTF-7 mailbox name")
    return text


def decode(name: str) -> str:
    """Decode a modified UTF-7 mailbox name (RFC 3501 §5.1.3).

    Raises ``ProtocolSyntaxError`` for anything that is not the one canonical
    encoding of some name: 8-bit or control characters, an unterminated or
    empty shift, bad base64, non-zero padding bits, encoded printable ASCII,
    adjacent shifted runs ("&AOk-&AOk-"), unpaired surrogates.
    """
    out: list[str] = []
    i = 0
    n = len(name)
    prev_shift_end = -1
    while i < n:
        ch = name[i]
        if ch == "&":
            end = name.find("-", i + 1)
            if end < 0:
                raise ProtocolSyntaxError("Invalid modified UTF-7 mailbox name")
            if end == i + 1:
                out.append("&")
            else:
                if prev_shift_end == i:
                    # "&AOk-&AOk-" is a null shift in disguise (§5.1.3).
                    raise ProtocolSyntaxError("Invalid modified UTF-7 mailbox name")
                out.append(_b64_decode(name[i + 1 : end]))
                prev_shift_end = end + 1
            i = end + 1
        elif _direct(ch):
            out.append(ch)
            i += 1
        else:
            raise ProtocolSyntaxError("Invalid modified UTF-7 mailbox name")
    return "".join(out)
