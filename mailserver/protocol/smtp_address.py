"""Checks on SMTP paths (RFC 5321 §4.1.2) shared by ingress and the outbound queue.

Pure code: stdlib only, no I/O.

A path may not carry control characters anywhere, not even inside a quoted
local part: RFC 5321 §4.1.2 ``qtextSMTP`` is %d32-33 / %d35-91 / %d93-126 and
``quoted-pairSMTP`` is %d92 %d32-126, so no C0 control (NUL, CR, LF, TAB...) and
no DEL; RFC 6531 §3.3 adds only UTF-8 non-ASCII characters.  Letting one
through is a header injection: the reverse-path becomes our ``Return-Path:``
field (RFC 5321 §4.4) and a bare CR or LF in it starts a header field of the
sender's choosing.
"""

from __future__ import annotations

import re

#: C0 controls (U+0000-U+001F) and DEL (U+007F).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control_characters(path: str) -> bool:
    """Whether ``path`` (a reverse- or forward-path, brackets or not) contains a C0
    control character or DEL, which RFC 5321 §4.1.2 allows nowhere in a path."""
    return _CONTROL.search(path) is not None


# -- MAIL FROM / RCPT TO paths (RFC 5321 §4.1.2, RFC 6531 §3.3) ---------------------
#
#   Reverse-path = Path / "<>"
#   Forward-path = Path
#   Path         = "<" [ A-d-l ":" ] Mailbox ">"
#   A-d-l        = At-domain *( "," At-domain )   ; source route: ignored (§C)
#   At-domain    = "@" Domain
#   Mailbox      = Local-part "@" ( Domain / address-literal )
#   Local-part   = Dot-string / Quoted-string
#   Dot-string   = Atom *("."  Atom)
#   Atom         = 1*atext                          ; RFC 6531: =/ UTF8-non-ascii
#   Quoted-string = DQUOTE *QcontentSMTP DQUOTE
#   QcontentSMTP = qtextSMTP / quoted-pairSMTP
#   qtextSMTP    = %d32-33 / %d35-91 / %d93-126     ; RFC 6531: =/ UTF8-non-ascii
#   quoted-pairSMTP = %d92 %d32-126
#   Domain       = sub-domain *("." sub-domain)
#   sub-domain   = Let-dig [Ldh-str]                ; RFC 6531: =/ U-label
#   address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
#                           General-address-literal ) "]"   ; §4.1.3

_NON_ASCII = "\x80-\U0010ffff"
_ATEXT = rf"[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~{_NON_ASCII}]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED_STRING = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_NON_ASCII}]|\\[\x20-\x7e])*"'
_LET_DIG = rf"[A-Za-z0-9{_NON_ASCII}]"
_SUB_DOMAIN = rf"{_LET_DIG}(?:[A-Za-z0-9\-{_NON_ASCII}]*{_LET_DIG})?"
_DOMAIN = rf"{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*"
#: The three §4.1.3 forms are all made of dcontent (%d33-90 / %d94-126); which
#: form it is and whether the address is sound is left to the caller.
_ADDRESS_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_MAILBOX = (rf"(?P<local>{_DOT_STRING}|(?P<quoted>{_QUOTED_STRING}))"
            rf"@(?P<domain>{_DOMAIN}|{_ADDRESS_LITERAL})")
_ANGLE_PATH = re.compile(rf"<(?:@{_DOMAIN}(?:,@{_DOMAIN})*:)?{_MAILBOX}>")
_BARE_MAILBOX = re.compile(_MAILBOX)
_QUOTED_PAIR = re.compile(r"\\(.)")
#: RFC 5322 specials and white space: a local part holding one is quoted
#: (as ``email.headerregistry`` spells addresses, hence aiosmtpd).
_NEEDS_QUOTES = frozenset('()<>@,:;\\"[] \t')
_WSP = " \t"


def parse_path(arg: str) -> tuple[str, str] | None:
    """Split the argument of MAIL FROM / RCPT TO into the path and what follows.

    Returns ``(address, rest)`` as aiosmtpd's ``SMTP._getaddr`` does for
    arguments in the RFC 5321 §4.1.2 grammar above (or a bare Mailbox, or
    ``<Postmaster>``, §4.1.1.3): ``"<>"`` for the null reverse-path, the source
    route dropped, a quoted local part unquoted when it needs no quotes,
    ``rest`` (the parameters) with its leading white space stripped, except
    after ``<>``.  ``("", "")`` for an empty argument.

    Returns ``None`` for anything outside that grammar (comments, obsolete
    RFC 822 forms, encoded words, white space inside the path, a missing
    ``>``...): the caller decides how lenient to be with those.
    """
    if not arg:
        return "", ""
    if arg[0] == "<":
        if arg.startswith("<>"):
            return "<>", arg[2:]
        m = _ANGLE_PATH.match(arg)
        if m is None:
            return _postmaster(arg)
        rest = _parameters(arg[m.end():])
    else:
        m = _BARE_MAILBOX.match(arg)
        if m is None or m.group("local") == '""':
            return None  # aiosmtpd spells a bare empty quoted local part "@domain"
        after = arg[m.end():]
        if after and after[0] not in _WSP:
            return None
        rest = _parameters(after)
        if rest is not None and rest[:1] in (".", "@"):
            return None  # RFC 822 obs-domain: "a@b .c" is a@b.c to aiosmtpd
    address = _address(m)
    if address is None or rest is None:
        return None
    return address, rest


def _parameters(after: str) -> str | None:
    """What follows a path, leading white space dropped; None if it opens a comment."""
    rest = after.lstrip(_WSP)
    return None if rest[:1] == "(" else rest


def _address(m: re.Match[str]) -> str | None:
    """The mailbox as aiosmtpd spells it, or None where its RFC 5322 parser
    would read it differently from RFC 5321."""
    local, domain = m.group("local"), m.group("domain")
    if "=?" in local or "=?" in domain:
        return None  # aiosmtpd would decode an RFC 2047 encoded word
    text = local + domain
    if not text.isascii() and any(c.isspace() for c in text if not c.isascii()):
        return None  # Unicode white space (NBSP, NEL...) is folded away by aiosmtpd
    if m.group("quoted") is not None:
        local = _requote(_QUOTED_PAIR.sub(r"\1", local[1:-1]))
    return f"{local}@{domain}"


def _requote(value: str) -> str:
    """A quoted local part's content, quoted again only if it needs it."""
    if not value:
        return '""'
    if _NEEDS_QUOTES.isdisjoint(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _postmaster(arg: str) -> tuple[str, str] | None:
    """``<Postmaster>`` without a domain, in any case (RFC 5321 §4.1.1.3)."""
    if arg[11:12] != ">" or arg[1:11].lower() != "postmaster":
        return None
    rest = _parameters(arg[12:])
    return None if rest is None else (arg[1:11], rest)
