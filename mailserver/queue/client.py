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

A smart host (``OutboundSettings.smart_host``) replaces MX resolution: every
message goes to it, over the TLS mode it is configured with, its certificate
verified against its name (or ``ca_file``), with AUTH when it has credentials.
We connect to the addresses our resolver gives for its name and present the
name for SNI and verification.

IP addresses are never looked up (``mailserver.dns.mx.ip_literal``): a smart
host given by address, an address-literal recipient domain (RFC 5321 §4.1.3:
``[192.0.2.1]``, ``[IPv6:2001:db8::1]``; a malformed one fails permanently)
and an MX record that holds an address instead of a name (RFC 5321 §5.1
forbids it; like Postfix we log ``mx_numeric_host`` and use the address).

Connection limit: with a pool, each delivery holds a place under the limit
of its route (``route_key``: the smart host, shared by every recipient
domain, or else the recipient domain) from before it takes or opens a
session until the session is pooled or closed.

A server that refuses EHLO with a 5xx gets HELO (RFC 5321 §4.1.4, §3.2) and
is spoken to without extensions.  The reply to the end of the message may
take twice ``command_timeout`` (RFC 5321 §4.5.3.2.6).

The envelope is pipelined when the server offers PIPELINING (RFC 2920, see
``pipeline.py``).  With a ``ConnectionPool`` a session that finished a
transaction cleanly is kept for the next message on the same route (RSET
before reuse, RFC 5321 §4.1.1.5); a reused session that fails before any
recipient was accepted is dropped and a fresh connection made.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import ssl
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import aiosmtplib
import structlog
from aiosmtplib.email import quote_address

from mailserver.dns.mx import NullMx, ip_literal, mail_hosts
from mailserver.dns.resolver import DnsError, Resolver
from mailserver.protocol.dsn_params import DsnRequest
from mailserver.protocol.smtp_address import has_control_characters
from mailserver.queue import pipeline
from mailserver.queue.pool import ConnectionPool, Lease
from mailserver.queue.settings import OutboundSettings, SmartHost

log = structlog.get_logger("mailserver.queue")


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
    #: The host that took it offered DSN: success reports are its job (RFC 3461 §5.2.2).
    next_hop_dsn: bool = False


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


#: Longest a QUIT may take when we close a session, seconds.
QUIT_TIMEOUT = 10.0
#: The reply to the end of the message may take this many times ``command_timeout``
#: (RFC 5321 §4.5.3.2: 5 minutes per command, 10 for the end of data).
DATA_END_FACTOR = 2


@dataclass(eq=False, slots=True)
class Session:
    """An open SMTP session past EHLO (and STARTTLS and AUTH), ready for MAIL.

    ``host``: the name we connected to (MX host or smart host); ``where``:
    ``"host [addr]:port"`` for diagnostics.
    """

    smtp: aiosmtplib.SMTP
    host: str
    where: str


def valid_path(address: str) -> bool:
    """Whether ``address`` can be sent as a MAIL/RCPT path (RFC 5321 §4.1.2): no
    whitespace or angle brackets outside a quoted local part, no control characters."""
    try:
        quote_address(address)
    except ValueError:
        return False
    return not has_control_characters(address)


async def close_session(session: Session) -> None:
    """Say QUIT (RFC 5321 §4.1.1.10) and close.  Never raises."""
    transport = session.smtp.transport
    try:
        async with asyncio.timeout(QUIT_TIMEOUT):
            await session.smtp.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass  # the outcome of the transaction is already decided
    finally:
        session.smtp.close()
        if transport is not None:
            # After QUIT nothing is left to say: a graceful close would wait for
            # the peer's TLS close_notify and keep the socket open past shutdown.
            transport.abort()  # type: ignore[attr-defined]  # a Transport in fact


def new_pool(settings: OutboundSettings) -> ConnectionPool:
    """The sessions ``deliver_domain`` shares: at most ``max_connections_per_domain``
    open per route (``route_key``), idle ones kept ``reuse_idle`` seconds."""
    return ConnectionPool(close_session, settings.reuse_idle, settings.max_connections_per_domain)


def route_key(settings: OutboundSettings, domain: str) -> Hashable:
    """Where mail for ``domain`` goes, as the key of its sessions and their limit:
    the smart host when there is one (all domains share it), else the domain."""
    sh = settings.smart_host
    if sh is not None:
        return ("smart", sh.host.lower(), sh.port)
    return ("mx", domain.lower())


class _NoRoute(Exception):
    """No host to try: every recipient gets ``outcome`` with ``reply``."""

    def __init__(self, outcome: Outcome, reply: str) -> None:
        super().__init__(reply)
        self.outcome = outcome
        self.reply = reply


@dataclass(frozen=True, slots=True)
class _Route:
    """The hosts to try, in order, as ``(name, address, port)``, and how to talk to them."""

    targets: list[tuple[str, str, int]]
    require_tls: bool
    smart_host: SmartHost | None


async def deliver_domain(
    settings: OutboundSettings,
    resolver: Resolver,
    domain: str,
    reverse_path: str,
    recipients: Sequence[str],
    message: bytes,
    *,
    pool: ConnectionPool | None = None,
    dsn: DsnRequest | None = None,
) -> list[RcptResult]:
    """Try to deliver ``message`` to ``recipients`` (all at ``domain``).

    Never raises for delivery trouble: every failure becomes a TEMPORARY or
    PERMANENT result.  Returns one result per recipient, in order.  With
    ``pool``, this waits for a place under the route's connection limit, an
    idle session to the same route is reused and the session is left there
    afterwards (the caller closes the pool).  ``dsn``: the message's DSN
    parameters, passed on to a next hop that offers DSN (RFC 3461 §5.2.1).
    """
    if not valid_path(reverse_path):
        return _all(recipients, Outcome.PERMANENT,
                    "553 5.1.7 the reverse-path cannot be sent on an SMTP command line")
    bad = [r for r in recipients if not valid_path(r)]
    if bad:
        good = [r for r in recipients if r not in bad]
        done = {r.address: r for r in _all(
            bad, Outcome.PERMANENT, "553 5.1.3 address cannot be sent on an SMTP command line")}
        if good:
            done.update((r.address, r) for r in await deliver_domain(
                settings, resolver, domain, reverse_path, good, message, pool=pool, dsn=dsn))
        return [done[r] for r in recipients]
    if pool is None:
        return await _deliver(settings, resolver, domain, reverse_path, recipients, message,
                              None, dsn)
    async with pool.lease(route_key(settings, domain)) as lease:
        return await _deliver(settings, resolver, domain, reverse_path, recipients, message,
                              lease, dsn)


async def _deliver(
    settings: OutboundSettings, resolver: Resolver, domain: str, reverse_path: str,
    recipients: Sequence[str], message: bytes, lease: Lease | None, dsn: DsnRequest | None,
) -> list[RcptResult]:
    reused = await _reuse(settings, lease, reverse_path, recipients, message, dsn)
    if reused is not None:
        return reused
    try:
        route = await _route(settings, resolver, domain)
    except _NoRoute as exc:
        return _all(recipients, exc.outcome, exc.reply)
    return await _try_targets(settings, route, reverse_path, recipients, message,
                              lease=lease, dsn=dsn)


async def _route(settings: OutboundSettings, resolver: Resolver, domain: str) -> _Route:
    """The smart host, an address literal, or the domain's MX hosts (RFC 5321 §5.1).

    IP addresses are used as they are, never looked up.  Raises ``_NoRoute``.
    """
    sh = settings.smart_host
    if sh is not None:
        return _Route(await _smart_host_targets(resolver, sh), sh.tls != "none", sh)
    require = domain.lower() in settings.require_tls
    if domain.startswith("["):
        # RFC 5321 §4.1.3 address literal: straight to that address, no DNS.
        addr = ip_literal(domain)
        if addr is None:
            raise _NoRoute(Outcome.PERMANENT,
                           f"550 5.1.2 {domain} is not an IPv4 or IPv6 address literal")
        return _Route([(addr, addr, settings.smtp_port)], require, None)
    try:
        hosts = await mail_hosts(resolver, domain)
    except NullMx:
        raise _NoRoute(Outcome.PERMANENT,
                       f"556 5.1.10 {domain} does not accept mail (null MX, RFC 7505)") from None
    except DnsError as exc:
        if exc.temporary:
            raise _NoRoute(Outcome.TEMPORARY, f"451 4.4.3 DNS lookup failed: {exc}") from None
        raise _NoRoute(Outcome.PERMANENT, f"550 5.1.2 {exc}") from None
    implicit = hosts == [domain.lower().rstrip(".")]
    targets: list[tuple[str, str, int]] = []
    dns_errors: list[DnsError] = []
    for host in hosts:
        if (addr := ip_literal(host)) is not None and not implicit:
            # RFC 5321 §5.1 wants a name here; like Postfix, warn and use the address.
            log.warning("mx_numeric_host", domain=domain, mx=host)
            targets.append((addr, addr, settings.smtp_port))
            continue
        try:
            addrs = await resolver.addresses(host)
        except DnsError as exc:
            dns_errors.append(exc)
            continue
        targets += [(host, a, settings.smtp_port) for a in addrs]
    if not targets:
        if implicit and not any(e.temporary for e in dns_errors):
            # RFC 5321 §5.1: no MX and no address: the domain cannot receive mail.
            raise _NoRoute(Outcome.PERMANENT,
                           f"550 5.1.2 {domain} has no MX and no address records")
        raise _NoRoute(Outcome.TEMPORARY,
                       f"451 4.4.4 no usable address for the mail hosts of {domain}")
    return _Route(targets, require, None)


async def _smart_host_targets(resolver: Resolver, sh: SmartHost) -> list[tuple[str, str, int]]:
    """The smart host's addresses: an IP address as it is; a name through our resolver,
    or, when that fails, through the system's (a name only in /etc/hosts)."""
    addr = ip_literal(sh.host)
    if addr is not None:
        return [(addr, addr, sh.port)]
    try:
        addrs = await resolver.addresses(sh.host)
    except DnsError:
        addrs = []
    return [(sh.host, a, sh.port) for a in addrs] or [(sh.host, sh.host, sh.port)]


async def _reuse(
    settings: OutboundSettings, lease: Lease | None,
    reverse_path: str, recipients: Sequence[str], message: bytes, dsn: DsnRequest | None,
) -> list[RcptResult] | None:
    """Deliver over an idle pooled session, or None when there is none that works."""
    if lease is None:
        return None
    while (session := lease.take()) is not None:
        try:
            async with asyncio.timeout(settings.command_timeout):
                await session.smtp.rset()  # RFC 5321 §4.1.1.5; also: is the line alive?
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            session.smtp.close()
            continue
        try:
            results, reusable = await _transaction(settings, session, reverse_path,
                                                   recipients, message, dsn)
        except _HostFailed:
            # Nothing was accepted (e.g. a per-connection message limit answered
            # MAIL with 421): a fresh session decides.
            session.smtp.close()
            continue
        await _release(lease, session, reusable)
        return results
    return None


async def _release(lease: Lease | None, session: Session, reusable: bool) -> None:
    if lease is not None and reusable and session.smtp.is_connected:
        lease.keep(session)
    else:
        await close_session(session)


async def _try_targets(
    settings: OutboundSettings,
    route: _Route,
    reverse_path: str,
    recipients: Sequence[str],
    message: bytes,
    *,
    lease: Lease | None,
    dsn: DsnRequest | None,
) -> list[RcptResult]:
    last = "451 4.4.1 no host could be reached"
    require_tls, smart_host = route.require_tls, route.smart_host
    for host, addr, port in route.targets:
        # Opportunistic STARTTLS: if the handshake fails, one more try in plain text.
        for use_tls in (True, False) if not require_tls else (True,):
            try:
                session = await _open(settings, host, addr, port, use_tls=use_tls,
                                      require_tls=require_tls, smart_host=smart_host)
            except _HostFailed as exc:
                last = exc.reply
                if "STARTTLS" in exc.reply:
                    continue
                break
            try:
                results, reusable = await _transaction(settings, session, reverse_path,
                                                       recipients, message, dsn)
            except _HostFailed as exc:
                session.smtp.close()
                if exc.permanent:
                    return _all(recipients, Outcome.PERMANENT, exc.reply, host)
                last = exc.reply
                break
            await _release(lease, session, reusable)
            return results
    return _all(recipients, Outcome.TEMPORARY, last)


async def _open(
    settings: OutboundSettings,
    host: str,
    addr: str,
    port: int,
    *,
    use_tls: bool,
    require_tls: bool,
    smart_host: SmartHost | None,
) -> Session:
    """Connect to ``addr``:``port``, EHLO, STARTTLS, AUTH.  Raises ``_HostFailed``."""
    implicit = smart_host is not None and smart_host.tls == "implicit"
    verify = smart_host is not None and smart_host.tls != "none"
    ctx = _verifying_context(smart_host.ca_file) if smart_host is not None and verify \
        else _no_verify_context()
    where = f"{host} [{addr}]:{port}"
    sock: socket.socket | None = None
    smtp: aiosmtplib.SMTP | None = None
    handed_over = False  # from connect() on, the socket belongs to the transport
    try:
        try:
            async with asyncio.timeout(settings.connect_timeout):
                # Our own socket: we connect to the address our resolver chose,
                # while aiosmtplib presents ``host`` for TLS (SNI, verification).
                sock = await _connect(addr, port)
                smtp = aiosmtplib.SMTP(
                    hostname=host, sock=sock, local_hostname=settings.hostname,
                    timeout=settings.command_timeout, use_tls=implicit, start_tls=False,
                    validate_certs=verify, tls_context=ctx,
                )
                handed_over = True
                await smtp.connect()
            await _hello(smtp)
            if not implicit:
                if use_tls and smtp.supports_extension("starttls"):
                    try:
                        await smtp.starttls(server_hostname=host, validate_certs=verify,
                                            tls_context=ctx)
                    except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
                        raise _HostFailed(f"421 4.7.0 STARTTLS with {where} failed: {exc}") \
                            from None
                    await smtp.ehlo()  # RFC 3207 §4.2: forget what was said in plain text
                elif require_tls:
                    raise _HostFailed(f"421 4.7.10 {where} does not offer STARTTLS "
                                      "(TLS is required for this destination)")
            if smart_host is not None and smart_host.username:
                await smtp.login(smart_host.username, smart_host.password or "")  # RFC 4954
        except aiosmtplib.SMTPResponseException as exc:
            # Greeting, EHLO or AUTH refused: this host cannot take the message now.
            raise _HostFailed(f"{_reply(exc.code, exc.message)} (from {where})") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            raise _HostFailed(f"421 4.4.2 {where}: {type(exc).__name__}: {exc}") from None
    except BaseException:
        if handed_over:
            assert smtp is not None
            smtp.close()
        elif sock is not None:
            sock.close()
        raise
    return Session(smtp, host, where)


async def _hello(smtp: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO when the server refuses EHLO with a 5xx: a server without
    extensions answers EHLO with 500/502 (RFC 5321 §4.1.4) and still takes mail
    after HELO (RFC 5321 §3.2), without extension keywords."""
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError as exc:
        if exc.code // 100 != 5 or not smtp.is_connected:
            raise
        await smtp.helo()


async def _connect(addr: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (addr, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _transaction(
    settings: OutboundSettings, session: Session, reverse_path: str,
    recipients: Sequence[str], message: bytes, dsn: DsnRequest | None,
) -> tuple[list[RcptResult], bool]:
    """MAIL, RCPT per recipient, DATA (RFC 5321 §3.3); the envelope pipelined when offered.

    Returns the per-recipient results and whether the session is in a known
    state (fit for reuse after RSET).  Raises ``_HostFailed`` when MAIL was
    refused (permanent for 5xx) or the line failed before any RCPT answer.
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
    if utf8 and not smtp.supports_extension("smtputf8"):
        # RFC 6531 §3.2: non-ASCII addresses only to a server that offers SMTPUTF8.
        raise _HostFailed(f"553 5.6.7 {session.where} does not support SMTPUTF8 addresses",
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
    except (aiosmtplib.SMTPException, OSError, TimeoutError, pipeline.ReplyError,
            pipeline.Disconnected) as exc:
        raise _HostFailed(f"421 4.4.2 {session.where}: {type(exc).__name__}: {exc}") from None
    if mail_reply.code // 100 != 2:
        raise _HostFailed(f"{_reply(mail_reply.code, mail_reply.text)} (from {session.where})",
                          permanent=mail_reply.code // 100 == 5)
    results: dict[str, RcptResult] = {}
    accepted: list[str] = []
    for rcpt, reply in zip(recipients, rcpt_replies, strict=True):
        if reply.code // 100 == 2:  # 250, or 251 "will forward"
            accepted.append(rcpt)
        else:
            outcome = Outcome.PERMANENT if reply.code // 100 == 5 else Outcome.TEMPORARY
            results[rcpt] = RcptResult(rcpt, outcome, _reply(reply.code, reply.text), host)
    reusable = True
    if accepted:
        try:
            # RFC 5321 §4.5.3.2.6: the end of data gets twice a command's time.
            resp = await smtp.data(message, timeout=DATA_END_FACTOR * settings.command_timeout)
        except aiosmtplib.SMTPResponseException as exc:
            outcome = Outcome.PERMANENT if 500 <= exc.code < 600 else Outcome.TEMPORARY
            for rcpt in accepted:
                results[rcpt] = RcptResult(rcpt, outcome, _reply(exc.code, exc.message), host)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Lost after DATA: we cannot know whether it was taken; retrying risks a
            # duplicate, not a loss (RFC 5321 §6.1 prefers that).
            reusable = False
            for rcpt in accepted:
                results[rcpt] = RcptResult(
                    rcpt, Outcome.TEMPORARY, f"421 4.4.2 {host}: connection lost: {exc}", host
                )
        else:
            for rcpt in accepted:
                results[rcpt] = RcptResult(rcpt, Outcome.DELIVERED,
                                           _reply(resp.code, resp.message), host, next_hop_dsn)
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
) -> tuple[pipeline.Reply, list[pipeline.Reply]]:
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
    mail_reply = pipeline.Reply(resp.code, resp.message)
    if resp.code // 100 != 2:
        return mail_reply, []
    out = []
    for args in rcpts:
        resp = await smtp.execute_command(*args, timeout=timeout)
        out.append(pipeline.Reply(resp.code, resp.message))
    return mail_reply, out


def _verifying_context(ca_file: str | None) -> ssl.SSLContext:
    """A smart host is authenticated (RFC 8314 §5, RFC 6125): its certificate must
    chain to ``ca_file`` (PEM) when given, else to the system's trust store."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _no_verify_context() -> ssl.SSLContext:
    """Opportunistic TLS (RFC 7435 §4): encrypt without authenticating the peer.
    (No CA bundle is loaded: nothing is verified, so making one is cheap.)"""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
