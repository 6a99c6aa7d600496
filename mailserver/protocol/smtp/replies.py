"""SMTP reply texts and the RFC 3463 enhanced status codes added to them.

Pure code: no aiosmtpd, no I/O.

Many replies are written as plain text ("503 Error: need MAIL command", "552
Error: Too much mail data") without enhanced codes.  Having advertised
ENHANCEDSTATUSCODES (RFC 2034), every 2xx/4xx/5xx reply must carry one
(RFC 2034 §3), except the greeting and the EHLO/HELO replies.  The adapter
passes every reply line through ``add_enhanced_code``, which picks the code
from one table keyed by the basic reply code and the command being answered,
so the code for a reply is chosen in one place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailserver.errors import SmtpReply

#: A reply line that already carries an enhanced code: "250 2.1.0 Ok", "550-5.1.1 ...".
_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
_REPLY = re.compile(r"^(\d{3})([ -]?)(.*)$", re.DOTALL)

#: (basic code, command) -> enhanced code.  ``None`` as command: replies
#: written outside any command (line-level errors, unknown commands).
#: RFC 3463 §3 and the RFC 5248 registry give the meanings.
_BY_COMMAND: dict[tuple[int, str | None], str] = {
    (250, "MAIL"): "2.1.0",  # X.1.0 other address status (sender ok)
    (250, "RCPT"): "2.1.5",  # X.1.5 destination address valid
    (252, "VRFY"): "2.5.0",
    (500, "DATA"): "5.5.2",  # a DATA line over the limit (RFC 5321 §4.5.3.1.6)
    (501, "AUTH"): "5.5.2",
    (503, "AUTH"): "5.5.1",
    (552, "MAIL"): "5.3.4",  # SIZE= above our limit (RFC 1870 §6.1)
    (552, "DATA"): "5.3.4",  # more data than SIZE allows (RFC 1870 §6.3)
    (553, "MAIL"): "5.1.7",  # X.1.7 bad sender's mailbox address syntax
    (553, "RCPT"): "5.1.3",  # X.1.3 bad destination mailbox address syntax
    (554, None): "5.7.0",
}

#: Basic code -> enhanced code when the table above has no entry.
_BY_CODE: dict[int, str] = {
    500: "5.5.2",  # syntax error, command unrecognised (RFC 5321 §4.2.2)
    501: "5.5.4",  # X.5.4 invalid command arguments
    502: "5.5.1",  # X.5.1 invalid command
    503: "5.5.1",  # bad sequence of commands
    504: "5.5.4",
    530: "5.7.0",
    535: "5.7.8",
    538: "5.7.11",
    550: "5.0.0",
    551: "5.1.6",
    552: "5.3.4",
    553: "5.1.3",
    554: "5.0.0",
    555: "5.5.4",  # MAIL/RCPT parameters not recognised (RFC 5321 §4.2.2)
    421: "4.3.0",
    450: "4.2.0",
    451: "4.3.0",
    452: "4.3.1",
    454: "4.7.0",  # TLS not available (RFC 3207 §4)
}


def enhanced_code(code: int, command: str | None) -> str | None:
    """The RFC 3463 code to pair with basic reply ``code`` answering ``command``.

    ``command`` is the upper-case verb ("MAIL") or ``None``.  Returns ``None``
    for codes that take no enhanced code (1xx, 3xx: RFC 2034 §3 covers only
    2xx, 4xx and 5xx).
    """
    klass = code // 100
    if klass not in (2, 4, 5):
        return None
    found = _BY_COMMAND.get((code, command)) or _BY_COMMAND.get((code, None))
    if found is None:
        found = _BY_CODE.get(code, f"{klass}.0.0")
    return found


def add_enhanced_code(line: str, command: str | None) -> str:
    """Return reply ``line`` (no CRLF) with an enhanced code inserted if it lacks one.

    "503 Error: need MAIL command" -> "503 5.5.1 Error: need MAIL command".
    Lines that are not replies, already have a code, or are 1xx/3xx come back
    unchanged.  The greeting and EHLO/HELO replies must not be passed here
    (RFC 2034 §3); the caller decides that.
    """
    if _HAS_ENHANCED.match(line):
        return line
    m = _REPLY.match(line)
    if m is None:
        return line
    code = int(m.group(1))
    enhanced = enhanced_code(code, command)
    if enhanced is None:
        return line
    sep = m.group(2) or " "
    text = m.group(3)
    return f"{code}{sep}{enhanced} {text}" if text else f"{code}{sep}{enhanced}"


def format_reply(code: int, enhanced: str | None, lines: Sequence[str]) -> bytes:
    """One reply, ready to send: one line, or the multi-line form (RFC 5321 §4.2.1).

    ``250-first CRLF 250-second CRLF 250 last CRLF``: every line but the last has
    "-" after the code; the enhanced code (RFC 2034 §3), when given, starts every
    line's text.  ``lines`` must not contain CR or LF (they would end the reply
    early: reply injection); raises ``ValueError``.  An empty ``lines`` gives
    one line without text.
    """
    if not 200 <= code <= 599:
        raise ValueError(f"not a reply code: {code}")
    texts = list(lines) or [""]
    last = len(texts) - 1
    out = []
    for i, text in enumerate(texts):
        if "\r" in text or "\n" in text:
            raise ValueError("CR or LF inside a reply line")
        words = " ".join(w for w in (enhanced, text) if w)
        if i == last:
            out.append(f"{code} {words}\r\n" if words else f"{code}\r\n")
        else:
            out.append(f"{code}-{words}\r\n")
    return "".join(out).encode("utf-8", "surrogateescape")


def reply_bytes(reply: SmtpReply) -> bytes:
    """``SmtpReply`` -> its wire form (one line, CRLF; multi-line when its text has "\\n")."""
    return format_reply(reply.code, reply.enhanced or None, reply.text.split("\n"))


# Replies our own code sends.  One place, so that tests and docs agree.
GREETING_BUSY = SmtpReply(421, "4.7.0", "Too many connections, try again later")
SHUTTING_DOWN = SmtpReply(421, "4.3.2", "Service shutting down, try again later")
IDLE_TIMEOUT = SmtpReply(421, "4.4.2", "Idle timeout, closing connection")
AUTH_TOO_MANY = SmtpReply(421, "4.7.0", "Too many authentication failures, closing connection")
#: Too many failed logins from this IP or for this account (counters/logins.py).
LOGIN_BLOCKED = SmtpReply(421, "4.7.0", "Too many failed logins, try again later")
AUTH_NOT_OFFERED = SmtpReply(502, "5.5.1", "AUTH is not available on this port")
AUTH_NEEDS_TLS = SmtpReply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
AUTH_REQUIRED = SmtpReply(530, "5.7.0", "Authentication required")
AUTH_OK = SmtpReply(235, "2.7.0", "Authentication successful")
AUTH_INVALID = SmtpReply(535, "5.7.8", "Authentication credentials invalid")
SENDER_OK = SmtpReply(250, "2.1.0", "Sender ok")
SENDER_NOT_OWNED = SmtpReply(553, "5.7.1", "Sender address not owned by the authenticated user")
RCPT_OK = SmtpReply(250, "2.1.5", "Recipient ok")
RCPT_UNKNOWN = SmtpReply(550, "5.1.1", "No such user here")
# RFC 5321 §4.3.2 lists 550 (not 554) among the RCPT failure replies.
RELAY_DENIED = SmtpReply(550, "5.7.1", "Relay access denied")
#: A path with a control character (RFC 5321 §4.1.2; see protocol/smtp_address.py).
BAD_SENDER_SYNTAX = SmtpReply(501, "5.1.7", "Bad sender address syntax")
BAD_RCPT_SYNTAX = SmtpReply(501, "5.1.3", "Bad recipient address syntax")
TOO_MANY_RCPTS = SmtpReply(452, "4.5.3", "Too many recipients")
#: Rate limits (issue 11 §3; RFC 3463 4.7.1 "delivery not authorized", temporary).
MESSAGE_RATE = SmtpReply(451, "4.7.1", "Too many messages, try again later")
RECIPIENT_RATE = SmtpReply(452, "4.5.3", "Too many recipients lately, try again later")
FIRST_TIME_RATE = SmtpReply(451, "4.7.1", "Too many new recipients today, try again later")
NO_OUTBOUND = SmtpReply(
    451, "4.3.0", "Remote delivery is not available yet (no outbound queue), try again later"
)
LINE_TOO_LONG = SmtpReply(500, "5.5.2", "Line too long")
#: Before hanging up on a client that sent ``smtp_max_unknown_commands``
#: unrecognised commands: a server closing the channel says 421 (RFC 5321 §3.8, §4.2.3).
TOO_MANY_UNKNOWN = SmtpReply(421, "4.7.0", "Too many unrecognized commands, closing connection")
