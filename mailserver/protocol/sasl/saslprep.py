"""SASLprep (RFC 4013): the stringprep profile (RFC 3454) for user names and
passwords, with the stdlib's ``stringprep`` tables (Unicode 3.2, as RFC 3454).

Steps, in the order of RFC 3454 §3:

1. map (RFC 4013 §2.1): non-ASCII spaces (C.1.2) to U+0020, the "commonly
   mapped to nothing" characters (B.1) to nothing.  U+200B is in both
   tables; C.1.2 is applied first, as libidn and PostgreSQL do;
2. normalize with NFKC (§2.2), Unicode 3.2's (``unicodedata.ucd_3_2_0``);
3. refuse the prohibited characters (§2.3): C.1.2, C.2.1, C.2.2, C.3 to C.9;
4. bidi (§2.4, RFC 3454 §6): a string with a RandALCat character has no
   LCat character and begins and ends with a RandALCat character;
5. unassigned code points (A.1, §2.5): refused for a stored string, allowed
   in a query (``allow_unassigned``).  SCRAM prepares both the user name and
   the password as query strings (RFC 5802 §2.2, §5.1).

Failures raise ``SaslprepError`` (a ``ValueError``).
"""

from __future__ import annotations

import stringprep
import unicodedata

_UCD = unicodedata.ucd_3_2_0

#: RFC 4013 §2.3 prohibited output, besides C.1.2 (mapped to a space before).
_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


class SaslprepError(ValueError):
    """The string cannot be prepared (RFC 4013 §2.3-§2.5); the message says why."""


def saslprep(text: str, *, allow_unassigned: bool = True) -> str:
    """``text`` prepared by SASLprep (RFC 4013), see the module docstring.

    ``allow_unassigned``: True for a query string (the default, what SCRAM
    uses), False for a stored string.  Raises SaslprepError.  May return ""
    (a caller that needs a non-empty name checks).
    """
    if text.isascii() and text.isprintable():
        return text  # printable ASCII maps to itself at every step
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c
        for c in text
        if stringprep.in_table_c12(c) or not stringprep.in_table_b1(c)
    )
    out = _UCD.normalize("NFKC", mapped)
    for c in out:
        if any(table(c) for table in _PROHIBITED):
            raise SaslprepError(f"prohibited character U+{ord(c):04X}")
        if not allow_unassigned and stringprep.in_table_a1(c):
            raise SaslprepError(f"unassigned code point U+{ord(c):04X}")
    if any(stringprep.in_table_d1(c) for c in out):
        if any(stringprep.in_table_d2(c) for c in out):
            raise SaslprepError("both right-to-left and left-to-right characters")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise SaslprepError("right-to-left text must begin and end with such a character")
    return out
