"""Opening and closing an SMTP session with a next hop (aiosmtplib underneath).

Connect to the address the route chose, EHLO (HELO when a server without
extensions refuses EHLO with a 5xx: RFC 5321 §4.1.4, §3.2), STARTTLS, AUTH.
A host that cannot be reached or refuses the session (4xx greeting, EHLO or
AUTH) raises ``HostFailed``: the caller moves on to the next address.

TLS: STARTTLS (RFC 3207) whenever offered.  Opportunistic by default (RFC
7435: certificates are not verified; the caller retries a failed handshake
in plain text on a new connection); for ``require_tls`` domains a host that
does not offer STARTTLS, or whose handshake fails, counts as unreachable.
A smart host is spoken to over the TLS mode it is configured with, its
certificate verified against its name (or ``ca_file``), with AUTH when it
has credentials.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass

import aiosmtplib

from mailserver.queue.settings import OutboundSettings, SmartHost


class HostFailed(Exception):
    """This host/address could not take the message: try the next one."""

    def __init__(self, reply: str, *, permanent: bool = False, tls: bool = False,
                 result: str | None = None) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent
        #: The host failed for want of (authenticated) TLS: no STARTTLS, a failed
        #: handshake or certificate check (REQUIRETLS, RFC 8689 §4.2.2, tells these apart).
        self.tls = tls
        #: With ``tls``: the TLS-RPT result type (RFC 8460 §4.3), see ``tls_result``.
        self.result = result


def tls_result(exc: BaseException) -> str:
    """The RFC 8460 §4.3.2.2 result type of a failed handshake: the certificate
    error's OpenSSL code decides (expired, host mismatch, untrusted chain), any
    other failure is ``validation-failure``."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, ssl.SSLCertVerificationError):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return "validation-failure"
    code = seen.verify_code
    if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
        return "certificate-expired"
    if code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
        return "certificate-host-mismatch"
    if code in (2, 18, 19, 20, 21):  # no issuer / self-signed / untrusted chain
        return "certificate-not-trusted"
    return "validation-failure"


def format_reply(code: int, message: str) -> str:
    """A reply as one line of text: ``"550 5.1.1 no such user"`` (folded lines joined)."""
    text = " ".join(str(message).split())
    return f"{code} {text}".strip()


#: Longest a QUIT may take when we close a session, seconds.
QUIT_TIMEOUT = 10.0


@dataclass(eq=False, slots=True)
class OutboundSession:
    """Our client side of an SMTP session with a next hop (MX or smart host),
    past EHLO (and STARTTLS and AUTH), ready for MAIL.

    ``host``: the name we connected to (MX host or smart host); ``where``:
    ``"host [addr]:port"`` for diagnostics.
    """

    smtp: aiosmtplib.SMTP
    host: str
    where: str
    #: The session runs under TLS (STARTTLS done, or implicit TLS).
    tls: bool = False


async def close_session(session: OutboundSession) -> None:
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


async def open_session(
    settings: OutboundSettings,
    host: str,
    addr: str,
    port: int,
    *,
    use_tls: bool,
    require_tls: bool,
    smart_host: SmartHost | None,
    authenticate: bool = False,
) -> OutboundSession:
    """Connect to ``addr``:``port``, EHLO, STARTTLS, AUTH.  Raises ``HostFailed``.

    ``authenticate``: the host's certificate must verify (PKIX, RFC 6125) for
    ``host`` against ``settings.ca_file`` or the system's trust store (the
    smart host's ``ca_file`` for a smart host): REQUIRETLS (RFC 8689 §4.2.2).
    """
    implicit = smart_host is not None and smart_host.tls == "implicit"
    verify = authenticate or (smart_host is not None and smart_host.tls != "none")
    ca_file = smart_host.ca_file if smart_host is not None else settings.ca_file
    ctx = _verifying_context(ca_file) if verify else _no_verify_context()
    where = f"{host} [{addr}]:{port}"
    sock: socket.socket | None = None
    smtp: aiosmtplib.SMTP | None = None
    handed_over = False  # from connect() on, the socket belongs to the transport
    under_tls = implicit
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
                        raise HostFailed(f"421 4.7.0 STARTTLS with {where} failed: {exc}",
                                         tls=True, result=tls_result(exc)) from None
                    await smtp.ehlo()  # RFC 3207 §4.2: forget what was said in plain text
                    under_tls = True
                elif require_tls:
                    raise HostFailed(f"421 4.7.10 {where} does not offer STARTTLS "
                                     "(TLS is required for this destination)", tls=True,
                                     result="starttls-not-supported")
            if smart_host is not None and smart_host.username:
                await smtp.login(smart_host.username, smart_host.password or "")  # RFC 4954
        except aiosmtplib.SMTPResponseException as exc:
            # Greeting, EHLO or AUTH refused: this host cannot take the message now.
            raise HostFailed(f"{format_reply(exc.code, exc.message)} (from {where})") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            raise HostFailed(f"421 4.4.2 {where}: {type(exc).__name__}: {exc}") from None
    except BaseException:
        if handed_over:
            assert smtp is not None
            smtp.close()
        elif sock is not None:
            sock.close()
        raise
    return OutboundSession(smtp, host, where, under_tls)


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
