"""Delivery Status Notifications (RFC 3464) for failed, delayed, delivered or relayed recipients.

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

The SMTP DSN extension (RFC 3461) shapes a report: ``envid`` becomes
``Original-Envelope-Id`` (RFC 3464 §2.2.1), a recipient's ORCPT its
``Original-Recipient`` (§2.3.1), both xtext-decoded (RFC 3461 §6.3), and
``return_full`` (RET=FULL, RFC 3461 §4.3) returns the whole message as
``message/rfc822`` in a failure report instead of the header section.

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

from mailserver.protocol.dsn_params import Orcpt, utf8_addr_xtext
from mailserver.protocol.line_endings import to_crlf

#: Most octets of the original header section quoted in a DSN.
MAX_QUOTED_HEADERS = 64 * 1024
#: Largest message returned whole for RET=FULL; a bigger one gets its header
#: section only (as Postfix's ``bounce_size_limit``), so a bounce of a huge
#: message cannot fill the sender's mailbox.
MAX_RETURNED_MESSAGE = 1024 * 1024

_ENHANCED = re.compile(rb"^([245])\.(\d{1,3})\.(\d{1,3})$")
_REPLY = re.compile(r"^([245])\d\d(?:[ -]([245]\.\d{1,3}\.\d{1,3}))?")


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    """One per-recipient block (RFC 3464 §2.3).

    ``action``: "failed", "delayed", "delivered" or "relayed" (§2.3.3).
    ``status``: RFC 3463 code such as "5.1.1".  ``diagnostic``: the remote
    reply ("550 5.1.1 No such user") or our own words; ``remote_mta``: host
    name that answered ("" if none); ``orcpt``: RCPT's ORCPT (RFC 3461 §4.2).
    """

    address: str
    action: str
    status: str
    diagnostic: str = ""
    remote_mta: str = ""
    orcpt: Orcpt | None = None


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
    return "utf-8; " + utf8_addr_xtext(address)


def original_recipient_field(orcpt: Orcpt) -> str:
    """The value of ``Original-Recipient:`` (RFC 3464 §2.3.1) for an ORCPT:
    its address type, and the address decoded from xtext (RFC 3461 §6.3)."""
    if orcpt.addr_type.lower() in ("rfc822", "utf-8"):
        return recipient_field(orcpt.address)
    return f"{orcpt.addr_type}; {_field_text(orcpt.address)}"


def _field_text(text: str) -> str:
    # A field value must be one line: no CR/LF smuggled in from a remote reply.
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


#: Report kinds, by the most serious action they carry: subject and explanation.
_FAILED_TEXT = (
    "Undelivered Mail Returned to Sender",
    ["Your message could not be delivered to one or more recipients.",
     "It has been returned with its headers below."],
)
_DELAYED_TEXT = (
    "Delayed Mail (still being retried)",
    ["Your message has not been delivered yet to the recipients below.",
     "It is still being retried; you do not need to send it again."],
)
_SUCCESS_TEXT = (
    "Successful Mail Delivery Report",
    ["As you asked, this reports the delivery of your message to the recipients",
     "below (or its relay to a mail system that does not report delivery)."],
)


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
    envid: str | None = None,
    return_full: bool = False,
) -> bytes:
    """The complete DSN message (CRLF line ends) to send to ``reverse_path``.

    The subject line follows the most serious action among ``recipients``:
    any "failed" makes it a failure report, else any "delayed" a delay
    warning, else a success report ("delivered"/"relayed").  Times are Unix
    seconds.  ``envid``: MAIL's ENVID; ``return_full``: RET=FULL, honoured in
    failure reports up to ``MAX_RETURNED_MESSAGE`` octets (RFC 3461 §4.3).
    Raises ValueError for a null ``reverse_path`` (RFC 3464 §2: no DSN for a
    DSN) or no recipients.
    """
    if not reverse_path:
        raise ValueError("no DSN is sent to the null reverse-path")
    if not recipients:
        raise ValueError("a DSN reports at least one recipient")
    actions = {r.action for r in recipients}
    failed = "failed" in actions
    subject, explanation = (_FAILED_TEXT if failed
                            else _DELAYED_TEXT if "delayed" in actions else _SUCCESS_TEXT)
    full = failed and return_full and len(original) <= MAX_RETURNED_MESSAGE
    if full:
        explanation = [explanation[0], "It has been returned in full below."]
    boundary = "=_dsn_" + os.urandom(12).hex()
    date = email.utils.formatdate(now, localtime=False)
    msgid = email.utils.make_msgid("dsn", domain=reporting_mta)
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
        f"This is the mail system at {reporting_mta}.",
        "",
        *explanation,
    ]
    if "delayed" in actions and not failed and retry_until is not None:
        lines.append(f"Delivery will be tried until {email.utils.formatdate(retry_until)}.")
    lines.append("")
    for r in recipients:
        lines.append(f"<{r.address}>: {_field_text(r.diagnostic) or r.status}")
    lines += ["", f"--{boundary}", "Content-Type: message/delivery-status", ""]
    lines += _per_message_fields(reporting_mta, queue_id, arrival_date, envid)
    for r in recipients:
        lines += ["", *_per_recipient_fields(r, date, retry_until)]
    # The returned message is RFC 5322 text inside ours: CRLF lines, even if
    # it was queued before intake converted bare LFs (protocol.line_endings).
    returned = to_crlf(original) if full else header_section(original)
    cte = "7bit" if returned.isascii() else "8bit"
    lines += [
        "",
        f"--{boundary}",
        f"Content-Type: {'message/rfc822' if full else 'text/rfc822-headers'}",
        f"Content-Transfer-Encoding: {cte}",
        "",
        "",
    ]
    if full and not returned.endswith(b"\r\n"):
        returned += b"\r\n"
    head = "\r\n".join(lines).encode("utf-8")
    return head + returned + f"\r\n--{boundary}--\r\n".encode()


def _per_message_fields(
    reporting_mta: str, queue_id: str, arrival_date: float, envid: str | None
) -> list[str]:
    """RFC 3464 §2.2, in its order: Original-Envelope-Id first (§2.2.1)."""
    fields = [] if envid is None else [f"Original-Envelope-Id: {_field_text(envid)}"]
    fields.append(f"Reporting-MTA: dns; {reporting_mta}")
    if queue_id:
        fields.append(f"X-Queue-ID: {queue_id}")
    fields.append(f"Arrival-Date: {email.utils.formatdate(arrival_date)}")
    return fields


def _per_recipient_fields(r: DsnRecipient, date: str, retry_until: float | None) -> list[str]:
    """RFC 3464 §2.3, in its order: Original-Recipient first (§2.3.1)."""
    fields = [] if r.orcpt is None else [
        f"Original-Recipient: {original_recipient_field(r.orcpt)}"]
    fields += [f"Final-Recipient: {recipient_field(r.address)}", f"Action: {r.action}",
               f"Status: {r.status}"]
    if r.remote_mta:
        fields.append(f"Remote-MTA: dns; {r.remote_mta}")
    if r.diagnostic:
        fields.append(f"Diagnostic-Code: smtp; {_field_text(r.diagnostic)}")
    fields.append(f"Last-Attempt-Date: {date}")
    if r.action == "delayed" and retry_until is not None:
        fields.append(f"Will-Retry-Until: {email.utils.formatdate(retry_until)}")
    return fields
