"""SMTP AUTH (RFC 4954) for ``SmtpConnection``: the command and its mechanisms.

A mixin of ``adapter.SmtpConnection``: the class keeps the connection's state
and I/O, this module what AUTH does with it.

* Offered only on submission listeners and only under TLS (RFC 8314 §3); a
  mechanism name is case-insensitive; not during a mail transaction and not
  twice (RFC 4954 §4: ``503``).
* PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login); an initial
  response may be ``=`` (empty, RFC 4954 §4); a ``334`` challenge is answered
  by one line, ``*`` cancels it (``501 5.7.0``); bad base64 is ``501 5.5.2``;
  a line longer than ``smtp_max_line_length`` is ``500 5.5.2``.
* SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 7677, RFC 5802; the exchange is
  ``protocol.sasl.scram``, the keys ``auth.scram``): offered when the
  handler has ``scram``, -PLUS when this TLS connection has channel binding
  data.  The server-final-message goes in a last ``334``, answered by an
  empty line, then ``235`` (RFC 4954 §4: no data with the 235).  A message
  that does not parse is ``501 5.5.2``; a failed exchange (wrong password,
  no such account, account without SCRAM keys, channel binding) is ``535``
  and counted like a wrong PLAIN password.
* The password is checked by the handler's ``authenticate`` off the loop
  (argon2); a failure is counted per connection (``max_auth_failures``, then
  ``421 4.7.0`` and close) and delayed per client address by the handler's
  throttle.
"""

from __future__ import annotations

import asyncio
import binascii
import enum
from base64 import b64decode, b64encode
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.sasl.scram import (
    SCRAM_SHA_256,
    SCRAM_SHA_256_PLUS,
    ScramFailed,
    ScramServer,
    ScramSyntaxError,
)
from mailserver.protocol.smtp import replies
from mailserver.protocol.smtp.command import NEED_DATA


class Unauthenticated(enum.Enum):
    """What a mechanism gives back instead of the account."""

    FAILED = "failed"  # wrong credentials: 535, counted
    ANSWERED = "answered"  # the mechanism replied already (cancelled, bad base64)


FAILED = Unauthenticated.FAILED
ANSWERED = Unauthenticated.ANSWERED
#: A mechanism's result: the account, or why there is none.
AuthOutcome = str | Unauthenticated


class SessionHooks(Protocol):
    """What AUTH needs from the handler (``handler.SmtpHooks``)."""

    async def authenticate(
        self, conn: Any, username: str, password: str
    ) -> str | None:
        """The account for ``username``/``password`` (RFC 4954 §4), or None when they are wrong."""
        ...

    async def auth_failed(self, conn: Any, username: str = "") -> float:
        """Record a failed AUTH from ``conn.peer_ip`` for ``username``; seconds
        to wait before the 535."""
        ...

    async def login_blocked(self, conn: Any, username: str) -> bool:
        """Whether ``conn.peer_ip`` or ``username`` has too many failed logins
        (``counters/logins.py``): refuse without checking the password."""
        ...


class AuthMechanisms:
    """``smtp_AUTH`` and the ``auth_*`` mechanisms.  Uses the connection's
    ``settings``, ``session``, ``envelope``, ``is_tls``, ``push``, ``reply``,
    ``end_session``, ``log``, ``_state`` (``auth_failures``), ``lines`` (the
    command reader), ``stream_reader`` and ``event_handler``."""

    # The connection's attributes this mixin reads (set by SmtpConnection).
    settings: Any
    session: Any
    envelope: Any
    is_tls: Any  # a property of the connection
    log: Any
    _state: Any
    lines: Any
    stream_reader: Any
    event_handler: Any
    push: Any
    reply: Any
    end_session: Any

    @property
    def auth_mechanism_names(self) -> list[str]:
        """The SASL mechanisms offered on this connection, sorted, for the EHLO
        AUTH line: LOGIN, PLAIN, and SCRAM-SHA-256(-PLUS) when available."""
        return sorted(name for name in MECHANISMS if self._offers(name))

    def _offers(self, name: str) -> bool:
        """Whether mechanism ``name`` (upper case) may be used on this connection."""
        if not name.startswith("SCRAM-"):
            return True
        scram = getattr(self.event_handler, "scram", None)
        if scram is None:
            return False
        return name != SCRAM_SHA_256_PLUS or scram.plus_available(self._ssl_object())

    def _ssl_object(self) -> Any:
        transport = getattr(self, "transport", None)  # the TLS layer's, after STARTTLS
        return None if transport is None else transport.get_extra_info("ssl_object")

    async def smtp_AUTH(self, arg: str | None) -> None:
        """RFC 4954 §4: only on submission listeners, only under TLS (RFC 8314 §3)."""
        session = self.session
        if not self.settings.submission:
            await self.reply(replies.AUTH_NOT_OFFERED)
            return
        if not self.is_tls:
            await self.reply(replies.AUTH_NEEDS_TLS)
            return
        if not session.host_name:
            await self.push("503 Error: send EHLO first")
            return
        if not session.extended_smtp:
            await self.push('500 Error: command "AUTH" not recognized')
            return
        if session.authenticated:
            await self.push("503 Already authenticated")
            return
        if self.envelope.mail_from:
            await self.push("503 5.5.1 AUTH not permitted during a mail transaction")
            return
        args = (arg or "").split()
        if not args:
            await self.push("501 Syntax: AUTH <mechanism> [<initial-response>]")
            return
        if len(args) > 2:
            await self.push("501 Too many values")
            return
        name = args[0].upper()  # names are case-insensitive
        mechanism = MECHANISMS.get(name)
        if mechanism is None or not self._offers(name):
            await self.push("504 5.5.4 Unrecognized authentication type")
            return
        outcome = await mechanism(self, args[1] if len(args) == 2 else None)
        if outcome is ANSWERED:
            return
        if outcome is FAILED:
            await self.reply(replies.AUTH_INVALID)
            if self._state.auth_failures >= self.settings.limits.max_auth_failures:
                self.log.warning("auth_too_many_failures", failures=self._state.auth_failures)
                self.end_session(replies.AUTH_TOO_MANY)
            return
        session.authenticated = True
        session.auth_data = outcome
        await self.reply(replies.AUTH_OK)

    # -- the exchange ----------------------------------------------------------------

    async def _read_line(self) -> str | None:
        """The client's next line (an answer to a ``334``), None at the end of its stream."""
        lines = self.lines
        while True:
            line = lines.next_line()
            if line != NEED_DATA:
                return line
            chunk = await self.stream_reader.read(1 << 16)
            if not chunk:
                return None
            lines.feed(chunk)

    async def _response(self, initial: str | None, challenge: bytes) -> bytes | None:
        """The initial response (RFC 4954 §4, ``=`` is empty) or the answer to a
        ``334`` challenge, decoded.  None when the exchange ended with a reply
        sent (cancelled, bad base64, over-long) or the client left."""
        if initial is None:
            await self.push("334 " + b64encode(challenge).decode())
            try:
                initial = await self._read_line()
            except ProtocolSyntaxError as exc:  # an over-long or badly ended line
                await self.reply(exc.smtp or replies.LINE_TOO_LONG)
                return None
            if initial is None:
                self.end_session()
                return None
            initial = initial.strip()
            if initial == "*":
                await self.push("501 5.7.0 Auth aborted")
                return None
        elif initial == "=":
            return b""
        try:
            return b64decode(initial, validate=True)
        except (binascii.Error, ValueError):
            await self.push("501 5.5.2 Cannot decode base64")
            return None

    async def sasl_plain(self, initial: str | None) -> AuthOutcome:
        """RFC 4616: ``[authzid] NUL authcid NUL passwd``; authzid must be empty or authcid."""
        response = await self._response(initial, b"")
        if response is None:
            return ANSWERED
        parts = response.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Malformed PLAIN response")
            return ANSWERED
        authzid, login, password = parts
        if authzid and authzid != login:
            return await self._check_login(b"", b"")  # no proxy authorization
        return await self._check_login(login, password)

    async def sasl_login(self, initial: str | None) -> AuthOutcome:
        """The de-facto LOGIN mechanism (draft-murchison-sasl-login): user, then password."""
        login = await self._response(initial, b"Username:")
        if login is None:
            return ANSWERED
        password = await self._response(None, b"Password:")
        if password is None:
            return ANSWERED
        return await self._check_login(login, password)

    async def sasl_scram_sha_256(self, initial: str | None) -> AuthOutcome:
        """SCRAM-SHA-256 (RFC 7677): no channel binding."""
        return await self._scram(initial, plus=False)

    async def sasl_scram_sha_256_plus(self, initial: str | None) -> AuthOutcome:
        """SCRAM-SHA-256-PLUS (RFC 7677, RFC 5802 §6): bound to this TLS connection."""
        return await self._scram(initial, plus=True)

    async def _scram(self, initial: str | None, *, plus: bool) -> AuthOutcome:
        """One SCRAM exchange (see the module docstring); the handler's ``scram``
        (``auth.scram.ScramLogins``) gives the keys and the channel binding."""
        scram = self.event_handler.scram
        ssl_object = self._ssl_object()
        server = ScramServer(plus=plus, plus_offered=scram.plus_available(ssl_object),
                             channel_binding=scram.channel_binding(ssl_object))
        client_first = await self._response(initial, b"")
        if client_first is None:
            return ANSWERED
        username = ""
        try:
            first = server.receive_client_first(client_first)
            username = first.username
            if await self.event_handler.login_blocked(self, username):
                return self._blocked(username)
            found = scram.lookup(first.username)
            keys = found.keys
            client_final = await self._response(None, server.server_first(keys.salt,
                                                                          keys.iterations))
            if client_final is None:
                return ANSWERED
            verifier = server.receive_client_final(client_final, keys.stored_key,
                                                   keys.server_key)
            if found.account is None:  # fake keys cannot verify; never trust that
                raise ScramFailed("invalid-proof")
        except ScramSyntaxError as exc:
            assert exc.smtp is not None
            await self.reply(exc.smtp)
            return ANSWERED
        except ScramFailed as exc:
            return await self._failed(username[:100],
                                      mechanism=SCRAM_SHA_256_PLUS if plus else SCRAM_SHA_256,
                                      reason=exc.value)
        # RFC 4954 §4: the server-final-message in a 334; the client answers "".
        last = await self._response(None, verifier)
        if last is None:
            return ANSWERED
        if last:
            await self.push("501 5.5.2 Expected an empty response")
            return ANSWERED
        return self._succeeded(found.account)

    async def _check_login(self, login: bytes, password: bytes) -> AuthOutcome:
        """The account (str) for these credentials, or ``FAILED`` after the delay."""
        hooks: SessionHooks = self.event_handler
        account = None
        try:
            username, secret = login.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            username = secret = ""
        if username and await hooks.login_blocked(self, username):
            return self._blocked(username)
        if username:
            account = await hooks.authenticate(self, username, secret)
        if account is None:
            return await self._failed(username=username[:100])
        return self._succeeded(account)

    def _blocked(self, username: str) -> AuthOutcome:
        """Refuse a blocked login (421 4.7.0, closing): ``ANSWERED``."""
        self.log.warning("auth_blocked", username=username[:100])
        self.end_session(replies.LOGIN_BLOCKED)
        return ANSWERED

    async def _failed(self, username: str = "", **fields: str) -> AuthOutcome:
        """Count a failure (per connection, per client address and per
        account) and wait the throttle's delay; ``FAILED`` (the caller sends 535)."""
        hooks: SessionHooks = self.event_handler
        self._state.auth_failures += 1
        delay = await hooks.auth_failed(self, username)
        if username:
            fields["username"] = username
        self.log.warning("auth_failed", failures=self._state.auth_failures,
                         delay_ms=int(delay * 1000), **fields)
        if delay > 0:
            # Slows a guesser down across connections (see throttle.py);
            # a shutdown's abort cancels this wait with the connection.
            await asyncio.sleep(delay)
        return FAILED

    def _succeeded(self, account: str) -> AuthOutcome:
        self.log = self.log.bind(user=account)
        self.log.info("auth_success")
        return account


#: SASL mechanism name (RFC 4422) -> its method.
MECHANISMS: dict[str, Callable[[Any, str | None], Awaitable[AuthOutcome]]] = {
    "LOGIN": AuthMechanisms.sasl_login,
    "PLAIN": AuthMechanisms.sasl_plain,
    SCRAM_SHA_256: AuthMechanisms.sasl_scram_sha_256,
    SCRAM_SHA_256_PLUS: AuthMechanisms.sasl_scram_sha_256_plus,
}
