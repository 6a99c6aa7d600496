"""Delivery Status Notifications (RFC 3464) for failed or delayed recipients.

Pure: stdlib only, no I/O.  The report is ``multipart/report;
report-type=delivery-status`` (RFC 6522) with three parts: a human-readable
explanation, the ``message/delivery-status`` fields, and the original header
section as ``text/rfc822-headers`` (RFC 6522 §4; not the body: the sender has
it, and it may be large).

The parts are assembled as bytes rather than by ``email.generator``: the
original header section must travel byte for byte (the generator would
re-fold it and cannot carry raw 8-bit header bytes), and the
``message/delivery-status`` handling of the stdlib expects parsed blocks.
``email.utils`` supplies dates, Message-IDs and address quoting.

Loop rules (RFC 3464 §2, RFC 5321 §4.5.5, §6.1): a DSN goes out with the
null reverse-path, and none is ever made for a message whose reverse-path is
null — so a DSN cannot bounce back and forth.  ``Auto-Submitted:
auto-replied`` (RFC 3834 §5) tells responders not to answer it.
"""

from __future__ import annotations

import email.utils
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Most octets of the original header section quoted in a DSN.
MAX_QUOTED_HEADERS = 64 * 1024

_ENHANCED = re.compile(rb"^([245])\.(\d{1,3})\.(\d{1,3})$")
_REPLY = re.compile(r"^([245])\d\d(?:[ -]([245]\.\d{1,3}\.\d{1,3}))?")


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    """One per-recipient block (RFC 3464 §2.3).

    ``action``: "failed" or "delayed".  ``status``: RFC 3463 code such as
    "5.1.1".  ``diagnostic``: the remote reply ("550 5.1.1 No such user") or
    our own words; ``remote_mta``: host name that answered ("" if none).
    """

    address: str
    action: str
    status: str
    diagnostic: str = ""
    remote_mta: str = ""


def status_of(reply: str, permanent: bool) -> str:
    """The RFC 3463 status for an SMTP reply text such as ``"550 5.1.1 text"``.

    Uses the enhanced code when present and consistent with the basic code;
    otherwise the class of the basic code (X.0.0); with no reply at all
    ``5.0.0`` or ``4.0.0`` by ``permanent``.
    """
    m = _REPLY.match(reply.strip())
    if m:
        klass, enhanced = m.group(1), m.group(2)
        if enhanced and enhanced[0] == klass:
            return enhanced
        if klass in "45":
            return f"{klass}.0.0"
    return "5.0.0" if permanent else "4.0.0"


def header_section(message: bytes) -> bytes:
    """The original header section (up to the empty line), CRLF-terminated lines,
    at most ``MAX_QUOTED_HEADERS`` octets cut at a line end."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = message.find(sep)
        if end >= 0:
            head = message[:end]
            break
    else:
        head = message
    lines = re.split(rb"\r\n|\r|\n", head)
    out = bytearray()
    for line in lines:
        if len(out) + len(line) + 2 > MAX_QUOTED_HEADERS:
            break
        out += line + b"\r\n"
    return bytes(out)


def recipient_field(address: str) -> str:
    """The value of a ``Final-Recipient:`` (or ``Original-Recipient:``) field.

    An ASCII address is ``rfc822; <address>`` (RFC 3464 §2.3.2).  A non-ASCII
    (RFC 6531) address is of type ``utf-8`` (RFC 6533 §3), in its 7-bit
    ``utf-8-addr-xtext`` form, since a ``message/delivery-status`` part is
    7-bit: every character outside QCHAR (non-ASCII, and "\\", "+", "=",
    SP and controls) becomes ``\\x{HEXPOINT}``, upper-case hex without
    leading zeros beyond two digits ("ü" -> ``\\x{FC}``, "中" -> ``\\x{4E2D}``).
    """
    if address.isascii():
        return f"rfc822; {_field_text(address)}"
    return "utf-8; " + "".join(
        c if _QCHARS.fullmatch(c) else f"\\x{{{ord(c):02X}}}" for c in address
    )


#: RFC 6533 §3 QCHAR: printable ASCII except SP, "+", "=" and "\\".
_QCHARS = re.compile(r"[\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e]+")


def _field_text(text: str) -> str:
    # A field value must be one line: no CR/LF smuggled in from a remote reply.
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def build_dsn(
    *,
    reporting_mta: str,
    reverse_path: str,
    recipients: Sequence[DsnRecipient],
    original: bytes,
    arrival_date: float,
    queue_id: str = "",
    now: float | None = None,
    retry_until: float | None = None,
) -> bytes:
    """The complete DSN message (CRLF line ends) to send to ``reverse_path``.

    ``recipients`` all share the same action kind for the subject line: any
    "failed" makes it a failure report, otherwise a delay warning.  Times are
    Unix seconds.  Raises ValueError for a null ``reverse_path`` (RFC 3464 §2:
    no DSN for a DSN) or no recipients.
    """
    if not reverse_path:
        raise ValueError("no DSN is sent to the null reverse-path")
    if not recipients:
        raise ValueError("a DSN reports at least one recipient")
    failed = any(r.action == "failed" for r in recipients)
    boundary = "=_dsn_" + os.urandom(12).hex()
    date = email.utils.formatdate(now, localtime=False)
    msgid = email.utils.make_msgid("dsn", domain=reporting_mta)
    subject = (
        "Undelivered Mail Returned to Sender" if failed else "Delayed Mail (still being retried)"
    )
    lines = [
        f"From: {email.utils.formataddr(('Mail Delivery System', f'MAILER-DAEMON@{reporting_mta}'))}",
        f"To: <{reverse_path}>",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: {msgid}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated delivery status notification (RFC 3464).",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
    ]
    if failed:
        lines += [
            f"This is the mail system at {reporting_mta}.",
            "",
            "Your message could not be delivered to one or more recipients.",
            "It has been returned with its headers below.",
        ]
    else:
        lines += [
            f"This is the mail system at {reporting_mta}.",
            "",
            "Your message has not been delivered yet to the recipients below.",
            "It is still being retried; you do not need to send it again.",
        ]
        if retry_until is not None:
            lines.append(f"Delivery will be tried until {email.utils.formatdate(retry_until)}.")
    lines.append("")
    for r in recipients:
        lines.append(f"<{r.address}>: {_field_text(r.diagnostic) or r.status}")
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        # RFC 3464 §2.2 per-message fields
        f"Reporting-MTA: dns; {reporting_mta}",
    ]
    if queue_id:
        lines.append(f"X-Queue-ID: {queue_id}")
    lines.append(f"Arrival-Date: {email.utils.formatdate(arrival_date)}")
    for r in recipients:
        # RFC 3464 §2.3 per-recipient fields, one block each after an empty line
        lines += ["", f"Final-Recipient: {recipient_field(r.address)}", f"Action: {r.action}",
                  f"Status: {r.status}"]
        if r.remote_mta:
            lines.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic:
            lines.append(f"Diagnostic-Code: smtp; {_field_text(r.diagnostic)}")
        lines.append(f"Last-Attempt-Date: {date}")
        if r.action == "delayed" and retry_until is not None:
            lines.append(f"Will-Retry-Until: {email.utils.formatdate(retry_until)}")
    headers = header_section(original)
    cte = "7bit" if headers.isascii() else "8bit"
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        f"Content-Transfer-Encoding: {cte}",
        "",
        "",
    ]
    head = "\r\n".join(lines).encode("utf-8")
    return head + headers + f"\r\n--{boundary}--\r\n".encode()
