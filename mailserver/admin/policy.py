"""The admin rules on names and secrets (pure, no I/O): what a domain, an
account address, an alias, a password and a public host name must look like.

Every front end (the command line today, the HTTP API later) gets the same
answer because only ``AdminService`` calls these; each raises a ``UserError``
(or ``ConfigError`` for the host name) whose text names the real problem.
"""

from __future__ import annotations

import ipaddress
import re

from mailserver.errors import ConfigError, InvalidName, InvalidPassword
from mailserver.store.names import normalize_address, normalize_domain

#: Shortest password accepted, in characters (NIST SP 800-63B §5.1.1.1: at least 8).
MIN_PASSWORD_LENGTH = 8
#: Longest password accepted, in characters: argon2 takes any length, but a
#: bound keeps one request from making the hash expensive (NIST: at least 64).
MAX_PASSWORD_LENGTH = 1024

#: Names that never resolve on the public Internet (RFC 6761 §6.3-§6.4,
#: RFC 6762 §3: mDNS), so no other server can reach a host called that.
_PRIVATE_SUFFIXES = ("localhost", "local", "invalid", "home.arpa")


def domain_name(name: str) -> str:
    """A domain as the store keys it: lower case, no final dot, IDNA A-labels
    (RFC 5890 §2.3.2.1; what SMTP's RCPT and the DNS use).

    Raises InvalidName naming the input.
    """
    text = name.strip().rstrip(".").lower()
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidName(f"invalid domain name {name!r}") from None
    return normalize_domain(ascii_name)


def account_address(address: str) -> str:
    """``local@domain`` normalised (domain in A-labels).

    Raises InvalidName when it is not ``local@domain``: "no-at-sign" is an
    invalid address, not an unknown domain.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise InvalidName(f"invalid address {address!r}: an address is local@domain")
    return normalize_address(f"{local}@{domain_name(domain)}")


def alias_address(address: str) -> str:
    """``local@domain``, or ``@domain`` for a catch-all, normalised.  Raises InvalidName."""
    text = address.strip()
    if text.startswith("@"):
        return "@" + domain_name(text[1:])
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise InvalidName(
            f"invalid alias {address!r}: an alias is local@domain, or @domain for a catch-all"
        )
    return account_address(text)


#: RFC 6376 §3.1: a selector is dot-separated sub-domain labels (RFC 5321 §4.1.2).
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_SELECTOR = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def new_domain_name(name: str) -> str:
    """``domain_name(name)`` for a domain being added: also a host name that
    mail can reach, dot-separated labels of letters, digits and inner hyphens
    (RFC 5321 §4.1.2 ``Domain``, after IDNA).  Lookups take any stored name
    (``domain_name``); only new ones must be valid.  Raises InvalidName."""
    domain = domain_name(name)
    if not _SELECTOR.match(domain):
        raise InvalidName(f"invalid domain name {name!r}: use labels of letters, digits "
                          "and inner hyphens, separated by dots (RFC 5321 §4.1.2)")
    return domain


def dkim_selector(selector: str) -> str:
    """``selector`` if it is a valid DKIM selector (RFC 6376 §3.1:
    dot-separated labels of letters, digits and inner hyphens, at most 253
    characters); raises InvalidName."""
    if len(selector) > 253 or not _SELECTOR.match(selector):
        raise InvalidName(f"invalid DKIM selector {selector!r}: use labels of letters, "
                          "digits and inner hyphens, separated by dots")
    return selector


def check_password(password: str) -> None:
    """Raise InvalidPassword unless ``password`` meets the policy.

    ``MIN_PASSWORD_LENGTH`` to ``MAX_PASSWORD_LENGTH`` characters, and no NUL,
    CR or LF (they cannot be typed at an IMAP LOGIN or in SASL PLAIN, RFC 4616 §2).
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidPassword(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidPassword(
            f"the password must have at most {MAX_PASSWORD_LENGTH} characters"
        )
    if any(c in password for c in "\0\r\n"):
        raise InvalidPassword("the password must not contain NUL, CR or LF")


def public_hostname_problem(hostname: str) -> str | None:
    """Why ``hostname`` cannot be named in public DNS records (MX, SRV), or None.

    MX and SRV targets must be host names, never IP literals (RFC 5321 §5.1,
    RFC 2782), and fully qualified names other servers can resolve.
    """
    name = hostname.strip().rstrip(".").lower()
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        return "it is an IP address; MX and SRV records need a host name"
    if "." not in name:
        return "it is not a fully qualified domain name"
    if any(name == s or name.endswith("." + s) for s in _PRIVATE_SUFFIXES):
        return "it is a name the public DNS never resolves"
    return None


def check_public_hostname(hostname: str, source: object) -> str:
    """``hostname`` without a final dot, or ConfigError naming the problem and
    where to fix it (``source``: the configuration file, None for the built-in one)."""
    problem = public_hostname_problem(hostname)
    if problem is not None:
        where = source if source is not None else "the built-in configuration"
        raise ConfigError(
            f"hostname {hostname!r} ({where}) cannot be published in DNS: {problem}; "
            "set hostname to this server's public fully qualified name"
        )
    return hostname.strip().rstrip(".")
