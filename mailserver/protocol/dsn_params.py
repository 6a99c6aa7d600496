"""The SMTP DSN extension's parameters (RFC 3461): xtext, RET/ENVID, NOTIFY/ORCPT.

Pure code: stdlib only, no I/O.  The adapter picks these parameters out of
MAIL FROM / RCPT TO (with their original case: xtext and addresses are
case-sensitive, and aiosmtpd upper-cases what it parses), ``parse_mail`` and
``parse_rcpt`` turn them into typed values, and the queue turns them back into
parameters for a next hop that offers DSN (RFC 3461 §5.2.1).

Every syntax error raises ``ProtocolSyntaxError`` (SMTP ``501 5.5.4``,
mapped in ``errors.smtp_reply``).

Grammar (RFC 3461 §4)::

    xtext   = *( xchar / hexchar )
    xchar   = any ASCII CHAR between "!" (33) and "~" (126) inclusive,
              except for "+" and "="
    hexchar = ASCII "+" immediately followed by two upper case
              hexadecimal digits

    notify-esmtp-value  = "NEVER" / 1#notify-list-element       (§4.1)
    notify-list-element = "SUCCESS" / "FAILURE" / "DELAY"
    orcpt-value         = addr-type ";" xtext                    (§4.2)
    ret-value           = "FULL" / "HDRS"                         (§4.3)
    envid-value         = xtext                                   (§4.4)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mailserver.errors import ProtocolSyntaxError

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
DELAY = "DELAY"
#: What an absent NOTIFY means here: failure and delay reports, as without
#: the extension (RFC 3461 §4.1 lets the MTA choose FAILURE or FAILURE,DELAY).
DEFAULT_NOTIFY = frozenset({FAILURE, DELAY})

#: RFC 3461 §4.2: "the ORCPT parameter ... MUST NOT exceed 500 characters".
MAX_ORCPT = 500
#: RFC 3461 §4.4: "the ENVID parameter ... MUST NOT exceed 100 characters".
MAX_ENVID = 100

MAIL_KEYWORDS = frozenset({"RET", "ENVID"})
RCPT_KEYWORDS = frozenset({"NOTIFY", "ORCPT"})

_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_HEXCHAR = re.compile(r"\+([0-9A-F]{2})")
#: RFC 5322 atom characters (addr-type is an atom, RFC 3461 §4.2).
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")
#: RFC 6533 §3 utf-8-addr-xtext escapes: "\x{HEXPOINT}".
_UTF8_ESCAPE = re.compile(r"\\x\{([0-9A-F]{2,6})\}")
#: RFC 6533 §3 QCHAR: printable ASCII except SP, "+", "=" and "\\".
_QCHAR = re.compile(r"[\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e]")
_XCHARS = frozenset(range(0x21, 0x7F)) - {ord("+"), ord("=")}


def xtext_decode(text: str) -> str:
    """The string ``text`` (xtext, RFC 3461 §4) stands for.

    The octets are read as UTF-8; others become U+FFFD (the value must stay
    storable as JSON text in queue records).
    Raises ``ProtocolSyntaxError`` for a character outside xtext or a "+" not
    followed by two upper-case hex digits.
    """
    if not _XTEXT.fullmatch(text):
        raise ProtocolSyntaxError("Invalid xtext in DSN parameter (RFC 3461 section 4)")
    if "+" not in text:
        return text
    raw = _HEXCHAR.sub(lambda m: chr(int(m.group(1), 16)), text)
    return raw.encode("latin-1").decode("utf-8", "replace")


def xtext_encode(text: str) -> str:
    """``text`` as xtext: "+", "=", SP, controls and non-ASCII (its UTF-8 octets) as "+HH"."""
    data = text.encode("utf-8")
    return "".join(chr(b) if b in _XCHARS else f"+{b:02X}" for b in data)


def utf8_addr_xtext(address: str) -> str:
    """RFC 6533 §3 ``utf-8-addr-xtext``: characters outside QCHAR as ``\\x{HEX}``
    (upper-case, at least two digits: "ü" -> ``\\x{FC}``, "中" -> ``\\x{4E2D}``)."""
    return "".join(c if _QCHAR.fullmatch(c) else f"\\x{{{ord(c):02X}}}" for c in address)


@dataclass(frozen=True, slots=True)
class Orcpt:
    """RFC 3461 §4.2 original recipient: address type ("rfc822", "utf-8") and the
    decoded address."""

    addr_type: str
    address: str

    def to_param(self) -> str:
        """The ``ORCPT=`` parameter (7-bit, RFC 3461 §4.2; RFC 6533 §3 for utf-8)."""
        if self.addr_type.lower() == "utf-8":
            return f"ORCPT=utf-8;{xtext_encode(utf8_addr_xtext(self.address))}"
        return f"ORCPT={self.addr_type};{xtext_encode(self.address)}"


@dataclass(frozen=True, slots=True)
class MailDsn:
    """MAIL FROM's DSN parameters: ``ret`` "FULL"/"HDRS" (§4.3), ``envid`` decoded (§4.4)."""

    ret: str | None = None
    envid: str | None = None

    def to_params(self) -> list[str]:
        """MAIL FROM parameters to pass on (RFC 3461 §4.3-4.4): ``RET=``, ``ENVID=``; [] if none."""
        params = [] if self.ret is None else [f"RET={self.ret}"]
        if self.envid is not None:
            envid = xtext_encode(self.envid)
            # An ENVID we took can grow when encoded again (an octet that was
            # not UTF-8 came back as U+FFFD, "+EF+BF+BD"); one over the limit
            # would make a strict next hop refuse the whole MAIL, so it is
            # left out (fuzzing found it: bench/fuzz.py, RESULTS.md).
            if len(envid) <= MAX_ENVID:
                params.append(f"ENVID={envid}")
        return params


@dataclass(frozen=True, slots=True)
class RcptDsn:
    """RCPT TO's DSN parameters: ``notify`` (empty = NEVER, None = not given), ``orcpt``."""

    notify: frozenset[str] | None = None
    orcpt: Orcpt | None = None

    def wants(self, kind: str) -> bool:
        """Whether a DSN of ``kind`` (SUCCESS, FAILURE, DELAY) is to be sent."""
        return kind in (DEFAULT_NOTIFY if self.notify is None else self.notify)

    def to_params(self) -> list[str]:
        """RCPT TO parameters to pass on (RFC 3461 §4.1-4.2): ``NOTIFY=`` (NEVER when empty),
        ``ORCPT=``; [] if none were given.
        """
        params = []
        if self.notify is not None:
            order = [k for k in (SUCCESS, FAILURE, DELAY) if k in self.notify]
            params.append("NOTIFY=" + (",".join(order) or "NEVER"))
        if self.orcpt is not None:
            param = self.orcpt.to_param()
            # RFC 3461 §4.2's 500 characters: a utf-8 address taken raw grows
            # up to eight times as "\\x{HEX}" escapes; over the limit the next
            # hop would refuse the recipient, so ORCPT is left out (we keep
            # it for our own DSNs).
            if len(param) - len("ORCPT=") <= MAX_ORCPT:
                params.append(param)
        return params


NO_RCPT_DSN = RcptDsn()


@dataclass(frozen=True, slots=True)
class DsnRequest:
    """One transaction's DSN parameters: MAIL's and each recipient's (by forward-path)."""

    mail: MailDsn = MailDsn()
    rcpts: Mapping[str, RcptDsn] = field(default_factory=dict)

    def rcpt(self, address: str) -> RcptDsn:
        """The DSN parameters of forward-path ``address`` (as RCPT gave it), or the defaults."""
        return self.rcpts.get(address, NO_RCPT_DSN)


def _split(tokens: Sequence[str], allowed: frozenset[str]) -> dict[str, str]:
    """keyword (upper-case) -> value; each keyword at most once (RFC 3461 §4)."""
    found: dict[str, str] = {}
    for token in tokens:
        keyword, eq, value = token.partition("=")
        keyword = keyword.upper()
        if keyword not in allowed:
            raise ValueError(f"not a DSN parameter here: {keyword}")
        if not eq or not value:
            raise ProtocolSyntaxError(f"{keyword} needs a value (RFC 3461 section 4)")
        if keyword in found:
            raise ProtocolSyntaxError(f"{keyword} given twice (RFC 3461 section 4)")
        found[keyword] = value
    return found


def parse_mail(tokens: Sequence[str]) -> MailDsn:
    """MAIL FROM's ``RET=`` and ``ENVID=`` tokens (as sent, any case) -> ``MailDsn``."""
    found = _split(tokens, MAIL_KEYWORDS)
    ret = found.get("RET")
    if ret is not None:
        ret = ret.upper()
        if ret not in ("FULL", "HDRS"):
            raise ProtocolSyntaxError("RET must be FULL or HDRS (RFC 3461 section 4.3)")
    envid = found.get("ENVID")
    if envid is not None:
        if len(envid) > MAX_ENVID:
            raise ProtocolSyntaxError("ENVID longer than 100 characters (RFC 3461 section 4.4)")
        envid = xtext_decode(envid)
    return MailDsn(ret=ret, envid=envid)


def parse_rcpt(tokens: Sequence[str]) -> RcptDsn:
    """RCPT TO's ``NOTIFY=`` and ``ORCPT=`` tokens (as sent, any case) -> ``RcptDsn``."""
    found = _split(tokens, RCPT_KEYWORDS)
    notify = found.get("NOTIFY")
    orcpt = found.get("ORCPT")
    return RcptDsn(
        notify=None if notify is None else parse_notify(notify),
        orcpt=None if orcpt is None else parse_orcpt(orcpt),
    )


def parse_notify(value: str) -> frozenset[str]:
    """RFC 3461 §4.1: "NEVER" (the empty set) or a comma list of SUCCESS/FAILURE/DELAY."""
    words = value.upper().split(",")
    if words == ["NEVER"]:
        return frozenset()
    kinds = frozenset(words)
    if len(kinds) != len(words) or not kinds <= {SUCCESS, FAILURE, DELAY}:
        raise ProtocolSyntaxError(
            "NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY (RFC 3461 section 4.1)"
        )
    return kinds


def parse_orcpt(value: str) -> Orcpt:
    """RFC 3461 §4.2 ``addr-type ";" xtext``; for "utf-8" also RFC 6533 §3's forms
    (``\\x{HEX}`` escapes, and raw UTF-8 after SMTPUTF8)."""
    if len(value) > MAX_ORCPT:
        raise ProtocolSyntaxError("ORCPT longer than 500 characters (RFC 3461 section 4.2)")
    addr_type, semi, text = value.partition(";")
    if not semi or not _ATOM.fullmatch(addr_type) or not text:
        raise ProtocolSyntaxError("ORCPT must be addr-type;xtext (RFC 3461 section 4.2)")
    if addr_type.lower() != "utf-8":
        return Orcpt(addr_type, xtext_decode(text))
    # utf-8-addr-unitext may carry non-ASCII as is; the rest is xtext.
    xtext_decode("".join(c if c.isascii() else "+00" for c in text))  # syntax check
    decoded = _HEXCHAR.sub(lambda m: chr(int(m.group(1), 16)), text)
    return Orcpt("utf-8", _UTF8_ESCAPE.sub(_unescape, decoded))


def _unescape(m: re.Match[str]) -> str:
    point = int(m.group(1), 16)
    if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
        raise ProtocolSyntaxError("ORCPT has an invalid \\x{} escape (RFC 6533 section 3)")
    return chr(point)
