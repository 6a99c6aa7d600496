"""One mail transaction on an open session: MAIL, RCPT per recipient, DATA (RFC 5321 §3.3).

The envelope is pipelined when the server offers PIPELINING (RFC 2920, see
``pipeline.py``); otherwise one command per round trip.  Once the host has
answered RCPT, its answers are the result of the attempt, per recipient, so
one RCPT can fail while others succeed.  The reply to the end of the message
may take twice ``command_timeout`` (RFC 5321 §4.5.3.2.6).  Extensions used
when offered: SMTPUTF8 (RFC 6531), 8BITMIME (RFC 6152), SIZE (RFC 1870),
DSN (RFC 3461 §5.2.1: the message's parameters are passed on), CHUNKING
(RFC 3030: the message in one ``BDAT <size> LAST``, see ``pipeline``);
REQUIRETLS (RFC 8689 §4.2.2) when the caller says the message carries it.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosmtplib
from aiosmtplib.email import quote_address

from mailserver.protocol.dsn_params import DsnRequest
from mailserver.protocol.smtp_address import has_control_characters
from mailserver.queue import pipeline
from mailserver.queue.connect import HostFailed, OutboundSession, format_reply
from mailserver.queue.outcome import Outcome, RcptResult
from mailserver.queue.settings import OutboundSettings

#: The reply to the end of the message may take this many times ``command_timeout``
#: (RFC 5321 §4.5.3.2: 5 minutes per command, 10 for the end of data).
DATA_END_FACTOR = 2


def _is_8bit(data: bytes) -> bool:
    return not data.isascii()


def valid_path(address: str) -> bool:
    """Whether ``address`` can be sent as a MAIL/RCPT path (RFC 5321 §4.1.2): no
    whitespace or angle brackets outside a quoted local part, no control characters."""
    try:
        quote_address(address)
    except ValueError:
        return False
    return not has_control_characters(address)


async def run_transaction(
    settings: OutboundSettings, session: OutboundSession, reverse_path: str,
    recipients: Sequence[str], message: bytes, dsn: DsnRequest | None, *,
    requiretls: bool = False,
) -> tuple[list[RcptResult], bool]:
    """MAIL, RCPT per recipient, DATA (RFC 5321 §3.3); the envelope pipelined when offered.

    Returns the per-recipient results and whether the session is in a known
    state (fit for reuse after RSET).  Raises ``HostFailed`` when MAIL was
    refused (permanent for 5xx) or the line failed before any RCPT answer.
    ``requiretls``: MAIL carries REQUIRETLS (RFC 8689 §4.2.2; the caller has
    checked that the session qualifies).
    """
    smtp, host = session.smtp, session.host
    options = []
    utf8 = not (reverse_path.isascii() and all(r.isascii() for r in recipients))
    if utf8 and smtp.supports_extension("smtputf8"):
        options.append(b"SMTPUTF8")  # RFC 6531 §3.4
    if _is_8bit(message) and smtp.supports_extension("8bitmime"):
        options.append(b"BODY=8BITMIME")  # RFC 6152
    if smtp.supports_extension("size"):
        options.append(f"SIZE={len(message)}".encode())  # RFC 1870
    if requiretls:
        options.append(b"REQUIRETLS")  # RFC 8689 §4.2.2
    if utf8 and not smtp.supports_extension("smtputf8"):
        # RFC 6531 §3.2: non-ASCII addresses only to a server that offers SMTPUTF8.
        raise HostFailed(f"553 5.6.7 {session.where} does not support SMTPUTF8 addresses",
                         permanent=True)
    encoding = "utf-8" if utf8 else "ascii"
    next_hop_dsn = smtp.supports_extension("dsn")
    mail_dsn, rcpt_dsn = _dsn_params(dsn, recipients) if next_hop_dsn else ([], {})
    mail = [b"MAIL", b"FROM:" + quote_address(reverse_path).encode(encoding), *options,
            *mail_dsn]
    rcpts = [[b"RCPT", b"TO:" + quote_address(r).encode(encoding), *rcpt_dsn.get(r, [])]
             for r in recipients]
    try:
        mail_reply, rcpt_replies = await _envelope(settings, smtp, mail, rcpts)
    except (aiosmtplib.SMTPException, OSError, TimeoutError, pipeline.NextHopReplyError,
            pipeline.Disconnected) as exc:
        raise HostFailed(f"421 4.4.2 {session.where}: {type(exc).__name__}: {exc}") from None
    if mail_reply.code // 100 != 2:
        raise HostFailed(
            f"{format_reply(mail_reply.code, mail_reply.text)} (from {session.where})",
            permanent=mail_reply.code // 100 == 5)
    results: dict[str, RcptResult] = {}
    accepted: list[str] = []
    for rcpt, reply in zip(recipients, rcpt_replies, strict=True):
        if reply.code // 100 == 2:  # 250, or 251 "will forward"
            accepted.append(rcpt)
        else:
            outcome = Outcome.PERMANENT if reply.code // 100 == 5 else Outcome.TEMPORARY
            text = format_reply(reply.code, reply.text)
            results[rcpt] = RcptResult(rcpt, outcome, text, host)
    reusable = True
    if accepted:
        # RFC 5321 §4.5.3.2.6: the end of data gets twice a command's time.
        end_timeout = DATA_END_FACTOR * settings.command_timeout
        try:
            if smtp.supports_extension("chunking"):  # RFC 3030: one BDAT ... LAST
                reply = await pipeline.bdat_last(smtp.protocol, message, end_timeout)
                code, reply_text = reply.code, reply.text
            else:
                resp = await smtp.data(message, timeout=end_timeout)
                code, reply_text = resp.code, resp.message
        except aiosmtplib.SMTPResponseException as exc:
            code, reply_text = exc.code, exc.message
        except (aiosmtplib.SMTPException, OSError, TimeoutError, pipeline.NextHopReplyError,
                pipeline.Disconnected) as exc:
            # Lost after DATA: we cannot know whether it was taken; retrying risks a
            # duplicate, not a loss (RFC 5321 §6.1 prefers that).
            reusable = False
            for rcpt in accepted:
                results[rcpt] = RcptResult(
                    rcpt, Outcome.TEMPORARY, f"421 4.4.2 {host}: connection lost: {exc}", host
                )
            return [results[r] for r in recipients], reusable
        text = format_reply(code, reply_text)
        if code // 100 == 2:
            for rcpt in accepted:
                results[rcpt] = RcptResult(rcpt, Outcome.DELIVERED, text, host, next_hop_dsn)
        else:
            outcome = Outcome.PERMANENT if 500 <= code < 600 else Outcome.TEMPORARY
            for rcpt in accepted:
                results[rcpt] = RcptResult(rcpt, outcome, text, host)
    return [results[r] for r in recipients], reusable


def _dsn_params(dsn: DsnRequest | None, recipients: Sequence[str],
                ) -> tuple[list[bytes], dict[str, list[bytes]]]:
    """MAIL's RET/ENVID and each RCPT's NOTIFY/ORCPT, 7-bit xtext (RFC 3461 §4),
    for a next hop that offers DSN (RFC 3461 §5.2.1)."""
    if dsn is None:
        return [], {}
    return ([p.encode("ascii") for p in dsn.mail.to_params()],
            {r: [p.encode("ascii") for p in dsn.rcpt(r).to_params()] for r in recipients})


async def _envelope(
    settings: OutboundSettings, smtp: aiosmtplib.SMTP, mail: list[bytes],
    rcpts: list[list[bytes]],
) -> tuple[pipeline.NextHopReply, list[pipeline.NextHopReply]]:
    """The MAIL reply and one reply per RCPT (none when MAIL was refused unpipelined).

    With PIPELINING (RFC 2920 §3.1) MAIL and every RCPT go in one write and
    the replies are read in order; otherwise one command per round trip.
    """
    timeout = settings.command_timeout
    if smtp.supports_extension("pipelining"):
        lines = [b" ".join(args) + b"\r\n" for args in (mail, *rcpts)]
        replies = await pipeline.exchange(smtp.protocol, lines, timeout)
        return replies[0], replies[1:]
    resp = await smtp.execute_command(*mail, timeout=timeout)
    mail_reply = pipeline.NextHopReply(resp.code, resp.message)
    if resp.code // 100 != 2:
        return mail_reply, []
    out = []
    for args in rcpts:
        resp = await smtp.execute_command(*args, timeout=timeout)
        out.append(pipeline.NextHopReply(resp.code, resp.message))
    return mail_reply, out
