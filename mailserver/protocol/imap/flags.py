"""Message flags (RFC 3501 §2.3.2, §9).

::

    flag-list      = "(" [flag *(SP flag)] ")"
    flag           = "\\Answered" / "\\Flagged" / "\\Deleted" / "\\Seen" / "\\Draft" /
                     flag-keyword / flag-extension
    flag-keyword   = atom
    flag-extension = "\\" atom

System flags are returned in their canonical spelling ("\\Seen" for
"\\SEEN"); keywords exactly as the client wrote them.  ``\\Recent`` is
server-managed (§2.3.2: "This flag can not be altered by the client"), so a
STORE or APPEND naming it is a syntax error (BAD), as is any other unknown
``\\``-flag: we define no flag extensions.
"""

from __future__ import annotations

from mailserver.protocol.imap.tokens import ATOM_CHARS, Cursor

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_CANONICAL = {f.upper(): f for f in SYSTEM_FLAGS}


def keyword(cur: Cursor, atom: str) -> str:
    """Validate a flag-keyword (already read as an atom)."""
    if atom.startswith("\\"):
        raise cur.error("Expected keyword")
    return atom


def flag(cur: Cursor) -> str:
    """One storable flag: a system flag (canonical case) or a keyword."""
    if cur.take(b"\\"):
        name = "\\" + cur.atom("flag")
        canonical = _CANONICAL.get(name.upper())
        if canonical is None:
            raise cur.error(f"Flag {name[:40]} cannot be set")
        return canonical
    raw = cur.word(ATOM_CHARS - {ord("\\")}, "flag")
    return raw.decode("ascii")


def flag_list(cur: Cursor) -> frozenset[str]:
    """flag-list = "(" [flag *(SP flag)] ")" """
    cur.open_paren()
    flags: set[str] = set()
    if cur.close_paren():
        return frozenset()
    while True:
        flags.add(flag(cur))
        if cur.close_paren():
            return frozenset(flags)
        cur.sp()


def flags_bare(cur: Cursor) -> frozenset[str]:
    """flag *(SP flag)  (STORE's unparenthesised form)"""
    flags = {flag(cur)}
    while cur.take_sp():
        flags.add(flag(cur))
    return frozenset(flags)
