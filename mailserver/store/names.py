"""Normalising and validating addresses and mailbox names (pure, no I/O)."""

from __future__ import annotations

from mailserver.errors import InvalidName
from mailserver.store.model import DELIMITER

#: Longest mailbox name we accept, in UTF-8 octets: the mbnames key is
#: ``address NUL name`` and LMDB keys are at most 511 octets (254 + 1 + 250 fits).
MAX_MAILBOX_NAME = 250
#: Longest address, RFC 5321 §4.5.3.1.3 path limit minus the angle brackets.
MAX_ADDRESS = 254
MAX_DOMAIN = 253


def normalize_domain(name: str) -> str:
    """Lower-cased domain; InvalidName when empty, too long or containing odd characters."""
    d = name.strip().lower().rstrip(".")
    if not d or len(d) > MAX_DOMAIN or any(c in d for c in "@\0\r\n\t /\\") :
        raise InvalidName(f"invalid domain name {name!r}")
    return d


def normalize_address(address: str) -> str:
    """``local@domain`` lower-cased as a whole (accounts are keyed this way).

    Raises InvalidName unless there is exactly one non-empty local part and domain.
    """
    a = address.strip().lower()
    local, sep, domain = a.rpartition("@")
    if (
        not sep
        or not local
        or len(a) > MAX_ADDRESS
        or any(c in a for c in "\0\r\n\t ")
    ):
        raise InvalidName(f"invalid address {address!r}")
    return f"{local}@{normalize_domain(domain)}"


def normalize_alias(address: str) -> str:
    """Like ``normalize_address`` but also accepts the catch-all form ``@domain``."""
    a = address.strip()
    if a.startswith("@"):
        return "@" + normalize_domain(a[1:])
    return normalize_address(a)


def domain_of(address: str) -> str:
    """What follows the last ``@`` (the whole string when there is none); no normalising."""
    return address.rpartition("@")[2]


def normalize_mailbox(name: str) -> str:
    """Validate a mailbox name and spell INBOX canonically.

    ``INBOX`` is case-insensitive (RFC 3501 §5.1), also as the first level of a
    child name.  Raises InvalidName for an empty name, empty levels (which
    includes a leading or trailing delimiter), NUL/CR/LF or other control
    characters, or more than ``MAX_MAILBOX_NAME`` octets.
    """
    if not name:
        raise InvalidName("empty mailbox name")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise InvalidName("control character in mailbox name")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_MAILBOX_NAME:
        raise InvalidName("mailbox name too long")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise InvalidName("mailbox name is not valid Unicode") from None
    levels = name.split(DELIMITER)
    if any(not level for level in levels):
        raise InvalidName("empty level in mailbox name")
    if levels[0].upper() == "INBOX":
        levels[0] = "INBOX"
    return DELIMITER.join(levels)


def parents(name: str) -> list[str]:
    """The superior names of ``name``, outermost first: ``a/b/c`` → ``[a, a/b]``."""
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:i]) for i in range(1, len(levels))]
