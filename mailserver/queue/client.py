"""One delivery attempt for one domain's recipients, over SMTP with aiosmtplib.

The only importer of aiosmtplib.  RFC 5321 §5.1: try the MX hosts in order
(``mailserver.dns.mx``), every address of a host (IPv6 and IPv4), and move on
when a host cannot be reached or refuses the session (4xx greeting, EHLO or
MAIL).  Once a host has answered RCPT, its answers are the result of this
attempt: per recipient, so one RCPT can fail while others succeed.

TLS: STARTTLS (RFC 3207) whenever offered.  Opportunistic by default (RFC
7435: certificates are not verified, and a failed handshake falls back to
plain text on a new connection); for ``require_tls`` domains a host that does
not offer STARTTLS, or whose handshake fails, counts as unreachable.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import aiosmtplib

from mailserver.dns.mx import NullMx, mail_hosts
from mailserver.dns.resolver import DnsError, Resolver
from mailserver.queue.settings import OutboundSettings, SmartHost


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    TEMPORARY = "temporary"  # retry later
    PERMANENT = "permanent"  # bounce


@dataclass(frozen=True, slots=True)
class RcptResult:
    """The result for one recipient: ``reply`` like ``"250 2.0.0 OK"`` or
    ``"550 5.1.1 No such user"``, or our diagnosis in the same shape;
    ``remote_mta``: the host that answered ("" when none did)."""

    address: str
    outcome: Outcome
    reply: str
    remote_mta: str = ""


class _HostFailed(Exception):
    """This host/address could not take the message: try the next one."""

    def __init__(self, reply: str, *, permanent: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent


def _reply(code: int, message: str) -> str:
    text = " ".join(str(message).split())
    return f"{code} {text}".strip()


def _all(rcpts: Sequence[str], outcome: Outcome, reply: str, mta: str = "") -> list[RcptResult]:
    return [RcptResult(r, outcome, reply, mta) for r in rcpts]


def _is_8bit(data: bytes) -> bool:
    return not data.isascii()


async def deliver_domain(
    settings: OutboundSettings,
    resolver: Resolver,
    domain: str,
    reverse_path: str,
    recipients: Sequence[str],
    message: bytes,
) -> list[RcptResult]:
    """Try to deliver ``message`` to ``recipients`` (all at ``domain``).

    Never raises for delivery trouble: every failure becomes a TEMPORARY or
    PERMANENT result.  Returns one result per recipient, in order.
    """
    if settings.smart_host is not None:
        sh = settings.smart_host
        targets = [(sh.host, sh.host, sh.port)]
        try:
            addrs = await resolver.addresses(sh.host)
        except DnsError:
            addrs = []
        if addrs:
            targets = [(sh.host, a, sh.port) for a in addrs]
        return await _try_targets(settings, targets, reverse_path, recipients, message,
                                  require_tls=sh.tls != "none", smart_host=sh)
    try:
        hosts = await mail_hosts(resolver, domain)
    except NullMx:
        return _all(recipients, Outcome.PERMANENT,
                    f"556 5.1.10 {domain} does not accept mail (null MX, RFC 7505)")
    except DnsError as exc:
        if exc.temporary:
            return _all(recipients, Outcome.TEMPORARY, f"451 4.4.3 DNS lookup failed: {exc}")
        return _all(recipients, Outcome.PERMANENT, f"550 5.1.2 {exc}")
    implicit = hosts == [domain.lower().rstrip(".")]
    targets: list[tuple[str, str, int]] = []
    dns_errors: list[DnsError] = []
    for host in hosts:
        try:
            addrs = await resolver.addresses(host)
        except DnsError as exc:
            dns_errors.append(exc)
            continue
        targets += [(host, a, settings.smtp_port) for a in addrs]
    if not targets:
        if implicit and not any(e.temporary for e in dns_errors):
            # RFC 5321 §5.1: no MX and no address: the domain cannot receive mail.
            return _all(recipients, Outcome.PERMANENT,
                        f"550 5.1.2 {domain} has no MX and no address records")
        return _all(recipients, Outcome.TEMPORARY,
                    f"451 4.4.4 no usable address for the mail hosts of {domain}")
    require = domain.lower() in settings.require_tls
    return await _try_targets(settings, targets, reverse_path, recipients, message,
                              require_tls=require, smart_host=None)


async def _try_targets(
    settings: OutboundSettings,
    targets: Sequence[tuple[str, str, int]],
    reverse_path: str,
    recipients: Sequence[str],
    message: bytes,
    *,
    require_tls: bool,
    smart_host: SmartHost | None,
) -> list[RcptResult]:
    last = "451 4.4.1 no host could be reached"
    for host, addr, port in targets:
        # Opportunistic STARTTLS: if the handshake fails, one more try in plain text.
        for use_tls in (True, False) if not require_tls else (True,):
            try:
                return await _session(settings, host, addr, port, reverse_path, recipients,
                                      message, use_tls=use_tls, require_tls=require_tls,
                                      smart_host=smart_host)
            except _HostFailed as exc:
                if exc.permanent:
                    return _all(recipients, Outcome.PERMANENT, exc.reply, host)
                last = exc.reply
                if "STARTTLS" not in exc.reply:
                    break
    return _all(recipients, Outcome.TEMPORARY, last)


async def _session(
    settings: OutboundSettings,
    host: str,
    addr: str,
    port: int,
    reverse_path: str,
    recipients: Sequence[str],
    message: bytes,
    *,
    use_tls: bool,
    require_tls: bool,
    smart_host: SmartHost | None,
) -> list[RcptResult]:
    implicit = smart_host is not None and smart_host.tls == "implicit"
    validate = smart_host is not None and smart_host.tls != "none"
    # A smart host is verified by name (TLS SNI and certificate), so connect by name.
    smtp = aiosmtplib.SMTP(
        hostname=host if smart_host is not None else addr,
        port=port,
        local_hostname=settings.hostname,
        timeout=settings.command_timeout,
        use_tls=implicit,
        start_tls=False,
        validate_certs=validate,
        tls_context=None if validate else _no_verify_context(),
    )
    where = f"{host} [{addr}]:{port}"
    try:
        try:
            async with asyncio.timeout(settings.connect_timeout):
                await smtp.connect()
            await smtp.ehlo()
            if not implicit:
                if use_tls and smtp.supports_extension("starttls"):
                    try:
                        await smtp.starttls(server_hostname=host, validate_certs=validate,
                                            tls_context=None if validate else _no_verify_context())
                    except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
                        raise _HostFailed(f"421 4.7.0 STARTTLS with {where} failed: {exc}") \
                            from None
                    await smtp.ehlo()
                elif require_tls:
                    raise _HostFailed(f"421 4.7.10 {where} does not offer STARTTLS "
                                      "(TLS is required for this domain)")
            if smart_host is not None and smart_host.username:
                await smtp.login(smart_host.username, smart_host.password or "")
            return await _transaction(smtp, host, reverse_path, recipients, message)
        except aiosmtplib.SMTPResponseException as exc:
            # Greeting, EHLO, AUTH or MAIL refused: the whole session failed.
            reply = _reply(exc.code, exc.message)
            raise _HostFailed(f"{reply} (from {where})", permanent=500 <= exc.code < 600
                              and isinstance(exc, aiosmtplib.SMTPSenderRefused)) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            raise _HostFailed(f"421 4.4.2 {where}: {type(exc).__name__}: {exc}") from None
    finally:
        smtp.close()


async def _transaction(
    smtp: aiosmtplib.SMTP, host: str, reverse_path: str, recipients: Sequence[str],
    message: bytes,
) -> list[RcptResult]:
    """MAIL, RCPT per recipient, DATA (RFC 5321 §3.3).  SMTPSenderRefused escapes."""
    options = []
    utf8 = not (reverse_path.isascii() and all(r.isascii() for r in recipients))
    if utf8 and smtp.supports_extension("smtputf8"):
        options.append("SMTPUTF8")
    if _is_8bit(message) and smtp.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")  # RFC 6152
    if smtp.supports_extension("size"):
        options.append(f"SIZE={len(message)}")  # RFC 1870
    encoding = "utf-8" if utf8 else "ascii"
    await smtp.mail(reverse_path, options=options, encoding=encoding)
    results: dict[str, RcptResult] = {}
    accepted: list[str] = []
    for rcpt in recipients:
        try:
            await smtp.rcpt(rcpt, encoding=encoding)
        except aiosmtplib.SMTPRecipientRefused as exc:
            outcome = Outcome.PERMANENT if exc.code >= 500 else Outcome.TEMPORARY
            results[rcpt] = RcptResult(rcpt, outcome, _reply(exc.code, exc.message), host)
        else:
            accepted.append(rcpt)
    if accepted:
        try:
            resp = await smtp.data(message)
        except aiosmtplib.SMTPResponseException as exc:
            outcome = Outcome.PERMANENT if exc.code >= 500 else Outcome.TEMPORARY
            for rcpt in accepted:
                results[rcpt] = RcptResult(rcpt, outcome, _reply(exc.code, exc.message), host)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Lost after DATA: we cannot know whether it was taken; retrying risks a
            # duplicate, not a loss (RFC 5321 §6.1 prefers that).
            for rcpt in accepted:
                results[rcpt] = RcptResult(
                    rcpt, Outcome.TEMPORARY, f"421 4.4.2 {host}: connection lost: {exc}", host
                )
        else:
            for rcpt in accepted:
                results[rcpt] = RcptResult(rcpt, Outcome.DELIVERED,
                                           _reply(resp.code, resp.message), host)
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass  # the outcome is already decided
    return [results[r] for r in recipients]


def _no_verify_context() -> ssl.SSLContext:
    """Opportunistic TLS (RFC 7435 §4): encrypt without authenticating the peer.
    (No CA bundle is loaded: nothing is verified, so making one is cheap.)"""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
