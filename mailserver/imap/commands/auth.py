"""Any-state and not-authenticated commands: CAPABILITY, NOOP, LOGOUT, ID,
ENABLE, STARTTLS, LOGIN, AUTHENTICATE (RFC 3501 §6.1, §6.2; RFC 2971;
RFC 5161; RFC 4959 SASL-IR; RFC 4616 PLAIN; RFC 7677 SCRAM-SHA-256 and
-PLUS), and COMPRESS (RFC 4978), which like STARTTLS changes the connection
once its tagged OK is on the wire.

SCRAM (``protocol.sasl.scram`` with ``auth.scram``'s keys): the
server-final-message goes in a last continuation, answered by an empty line,
then the tagged OK (RFC 3501 §6.2.2).  A message that does not parse is BAD;
a failed exchange (wrong password, no such account, no SCRAM keys yet,
channel binding) is ``NO [AUTHENTICATIONFAILED]``, counted like a wrong
LOGIN.  The credential cache plays no part (nothing to hash).

Plaintext credentials are accepted only over TLS or from a loopback peer
(``ImapSession.plaintext_ok``); elsewhere LOGINDISABLED is advertised and both
LOGIN and AUTHENTICATE PLAIN answer ``NO [PRIVACYREQUIRED]`` (RFC 5530).
After ``limits.max_auth_failures`` failed attempts the session ends with BYE.
"""

from __future__ import annotations

import asyncio
import binascii
import time
from typing import TYPE_CHECKING

from mailserver import analytics
from mailserver.analytics import FlowEvent, Kind, domain_of
from mailserver.counters.logins import LoginGuard
from mailserver.errors import ProtocolSyntaxError, UserError
from mailserver.imap.state import State, TaggedOk
from mailserver.metrics import instruments
from mailserver.protocol.imap.response import quote, untagged
from mailserver.protocol.imap.types import (
    Authenticate,
    Command,
    Compress,
    Enable,
    IdArgs,
    Login,
)
from mailserver.protocol.sasl.scram import (
    SCRAM_SHA_256,
    SCRAM_SHA_256_PLUS,
    ScramFailed,
    ScramServer,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from mailserver.imap.session import ImapSession

#: What we tell a client that sends ID (RFC 2971 §3.3); no version, on purpose.
_SERVER_ID = (("name", "mailserver"),)


async def capability(session: ImapSession, cmd: Command) -> TaggedOk:
    """CAPABILITY (RFC 3501 §6.1.1)."""
    session.write(untagged("CAPABILITY " + session.capabilities()))
    return TaggedOk("CAPABILITY completed")


async def noop(session: ImapSession, cmd: Command) -> TaggedOk:
    """NOOP (§6.1.2): the pending-change report happens in ``ImapSession.execute``."""
    return TaggedOk("NOOP completed")


async def logout(session: ImapSession, cmd: Command) -> TaggedOk:
    """LOGOUT (§6.1.3): untagged BYE, then the tagged OK; the connection closes."""
    session.log.info("imap_logout")  # type: ignore[attr-defined]  # bound with the user
    session.write(untagged("BYE Logging out"))
    session.state = State.LOGOUT
    session.selected = None
    return TaggedOk("LOGOUT completed")


async def id_(session: ImapSession, cmd: Command) -> TaggedOk:
    """ID (RFC 2971 §3.1): log what the client says about itself, answer our name."""
    args = cmd.args
    if isinstance(args, IdArgs) and args.params:
        # Values are client-chosen text: keep them short in the logs.
        session.log.info(  # type: ignore[attr-defined]
            "imap_client_id",
            client={k[:30]: (v or "")[:100] for k, v in list(args.params.items())[:30]},
        )
    fields = b" ".join(quote(k) + b" " + quote(v) for k, v in _SERVER_ID)
    session.write(b"* ID (" + fields + b")\r\n")
    return TaggedOk("ID completed")


async def enable(session: ImapSession, cmd: Command) -> TaggedOk:
    """ENABLE (RFC 5161 §3.1): CONDSTORE and QRESYNC (RFC 7162 §3.1, §3.2.3),
    IMAP4rev2 (RFC 9051 §6.3.1) and UTF8=ACCEPT (RFC 6855 §3) can be enabled;
    ``* ENABLED`` lists those this command turned on (§3.2), spelt as
    advertised; other names are ignored.  QRESYNC implies CONDSTORE."""
    args = cmd.args
    assert isinstance(args, Enable)
    newly = [name for name in args.capabilities if session.enable(name)]
    spelt = {n.upper(): n for n in session.enabled}
    session.write(b"* ENABLED" + b"".join(b" " + spelt[n.upper()].encode() for n in newly)
                  + b"\r\n")
    return TaggedOk("ENABLE completed")


async def compress(session: ImapSession, cmd: Command) -> TaggedOk:
    """COMPRESS (RFC 4978 §3): DEFLATE only.  Once compression is on, a second
    COMPRESS is ``NO [COMPRESSIONACTIVE]`` (§3); an unknown mechanism is NO.
    Compression starts after the tagged OK is sent (``after_reply``)."""
    args = cmd.args
    assert isinstance(args, Compress)
    if session.conn.compressing:
        raise UserError("Compression is already active", imap_code="COMPRESSIONACTIVE")
    if args.mechanism != "DEFLATE":
        raise UserError(f"Unsupported compression mechanism {args.mechanism[:30]}",
                        imap_code="CANNOT")
    session.after_reply = session.conn.start_compress
    return TaggedOk("DEFLATE active")


async def starttls(session: ImapSession, cmd: Command) -> TaggedOk:
    """STARTTLS (§6.2.1): OK, then the handshake.  Whatever the client sent
    after the command in plaintext is thrown away by the connection (the
    command-injection defence of RFC 3207 §6 / CVE-2011-0411 class bugs)."""
    if not session.conn.tls_available():
        raise UserError("TLS is not available here", imap_code="CANNOT")
    session.after_reply = session.conn.start_tls
    return TaggedOk("Begin TLS negotiation now")


async def login(session: ImapSession, cmd: Command) -> TaggedOk:
    """LOGIN (§6.2.3)."""
    args = cmd.args
    assert isinstance(args, Login)
    if not session.plaintext_ok():
        raise UserError("Plaintext login requires TLS (use STARTTLS)",
                        imap_code="PRIVACYREQUIRED")
    return await _finish_login(session, args.user, args.password)


async def authenticate(session: ImapSession, cmd: Command) -> TaggedOk:
    """AUTHENTICATE (§6.2.2) with PLAIN (RFC 4616), SCRAM-SHA-256 and
    SCRAM-SHA-256-PLUS (RFC 7677) and SASL-IR (RFC 4959).

    Without an initial response we send an empty continuation and read one
    line: ``*`` cancels (BAD, §6.2.2), otherwise it must be base64.
    """
    args = cmd.args
    assert isinstance(args, Authenticate)
    mechanism = args.mechanism
    scram = session.services.scram
    known = mechanism == "PLAIN" or (
        scram is not None and (mechanism == SCRAM_SHA_256 or (
            mechanism == SCRAM_SHA_256_PLUS and scram.plus_available(session.conn.ssl_object()))))
    if not known:
        raise UserError(f"Unsupported mechanism {mechanism}", imap_code="CANNOT")
    if not session.plaintext_ok():
        raise UserError("Plaintext authentication requires TLS (use STARTTLS)",
                        imap_code="PRIVACYREQUIRED")
    response = args.initial
    if response is None:
        # An empty challenge (RFC 4616 §2, RFC 5802 §5): "+ " and nothing else.
        response = await _sasl_response(session, b"")
    if mechanism != "PLAIN":
        return await _scram(session, response, plus=mechanism == SCRAM_SHA_256_PLUS)
    parts = response.split(b"\x00")
    if len(parts) != 3:
        raise ProtocolSyntaxError("Invalid PLAIN response")
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise ProtocolSyntaxError("PLAIN response is not UTF-8") from None
    if authzid and authzid.lower() != authcid.lower():
        # We do not let one user act as another (RFC 4616 §2 leaves it to policy).
        return await _failed(session, authcid)
    return await _finish_login(session, authcid, password)


async def _sasl_response(session: ImapSession, challenge: bytes) -> bytes:
    """Send ``challenge`` in a continuation (``+ `` and base64; the bare "+ "
    for an empty one, which ``continuation`` would fill with text a SASL
    client would decode) and read the client's answer, decoded.  ``*``
    cancels (BAD, RFC 3501 §6.2.2); bad base64 is BAD."""
    session.write(b"+ " + binascii.b2a_base64(challenge, newline=False) + b"\r\n")
    await session.conn.flush()
    line = await session.conn.read_line()
    if line is None:
        raise ConnectionResetError("client went away during AUTHENTICATE")
    line = line.strip()
    if line == b"*":
        raise ProtocolSyntaxError("AUTHENTICATE cancelled")
    try:
        return binascii.a2b_base64(line, strict_mode=True)
    except binascii.Error:
        raise ProtocolSyntaxError("Invalid base64 in AUTHENTICATE response") from None


async def _scram(session: ImapSession, client_first: bytes, *, plus: bool) -> TaggedOk:
    """One SCRAM exchange after the client-first-message (module docstring)."""
    scram = session.services.scram
    assert scram is not None
    ssl_object = session.conn.ssl_object()
    server = ScramServer(plus=plus, plus_offered=scram.plus_available(ssl_object),
                         channel_binding=scram.channel_binding(ssl_object))
    user = ""
    try:
        first = server.receive_client_first(client_first)
        user = first.username
        await _refuse_if_blocked(session, user)
        found = scram.lookup(user)
        keys = found.keys
        client_final = await _sasl_response(session, server.server_first(keys.salt,
                                                                          keys.iterations))
        verifier = server.receive_client_final(client_final, keys.stored_key, keys.server_key)
        if found.account is None:  # fake keys cannot verify; never trust that
            raise ScramFailed("invalid-proof")
    except ScramFailed as exc:
        session.log.info("imap_scram_failed", reason=exc.value)  # type: ignore[attr-defined]
        return await _failed(session, user)
    if await _sasl_response(session, verifier):
        raise ProtocolSyntaxError("Expected an empty response")
    return _logged_in(session, found.account)


async def _finish_login(session: ImapSession, user: str, password: str) -> TaggedOk:
    # The one login path of IMAP and SMTP AUTH (cache, bounded hashing pool,
    # rehash): ``auth.login.Authenticator``.
    await _refuse_if_blocked(session, user)
    address = await session.services.authenticator.authenticate(user, password)
    if address is None:
        return await _failed(session, user)
    return _logged_in(session, address)


async def _refuse_if_blocked(session: ImapSession, user: str) -> None:
    """``NO [UNAVAILABLE]`` (RFC 5530), without a password check, when the
    client IP or ``user`` has too many failed logins (``counters/logins.py``).
    Raises UserError."""
    guard = LoginGuard(session.services.counters, session.limits)
    if user and await guard.blocked(session.conn.peer, user):
        session.log.warning("imap_login_blocked", attempted=user[:100])  # type: ignore[attr-defined]
        raise UserError("Too many failed logins, try again later", imap_code="UNAVAILABLE")


def _logged_in(session: ImapSession, address: str) -> TaggedOk:
    session.user = address
    session.state = State.AUTHENTICATED
    session.bind_log(user=address)
    session.log.info("imap_login")  # type: ignore[attr-defined]
    analytics.emit(FlowEvent(Kind.IMAP_LOGIN, time.time(), domain=domain_of(address),
                             account=address, result="ok", source=session.conn.peer))
    return TaggedOk("Logged in", code="CAPABILITY " + session.capabilities())


async def _failed(session: ImapSession, user: str) -> TaggedOk:
    session.auth_failures += 1
    # The level of SMTP's ``auth_failed`` (warning): one fail2ban filter and
    # one alert rule catch both (conf/fail2ban/).
    session.log.warning(  # type: ignore[attr-defined]
        "imap_login_failed", attempted=user[:100], failures=session.auth_failures
    )
    # Failures per client IP across connections and workers (shared with SMTP
    # AUTH): reconnecting after max_auth_failures does not reset the delay.
    instruments().auth_failures.labels("imap").inc()
    analytics.emit(FlowEvent(Kind.AUTH_FAILURE, time.time(), result="perm",
                             code="NO", reason="imap", source=session.conn.peer))
    await LoginGuard(session.services.counters, session.limits).failed(session.conn.peer, user)
    delay = await session.services.counters.auth_failure(session.conn.peer)
    if delay > 0:
        await asyncio.sleep(delay)
    if session.auth_failures >= session.limits.max_auth_failures:
        # The tagged NO goes first (queued by the dispatcher), BYE follows it.
        session.state = State.LOGOUT
        session.after_reply = _bye_after(session)
    raise UserError("Authentication failed", imap_code="AUTHENTICATIONFAILED")


def _bye_after(session: ImapSession) -> Callable[[], Awaitable[None]]:
    async def bye() -> None:
        session.write(untagged("BYE Too many authentication failures"))

    return bye
