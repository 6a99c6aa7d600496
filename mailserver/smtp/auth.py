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

    async def auth_failed(self, conn: Any) -> float:
        """Record a failed AUTH from ``conn.peer_ip``; seconds to wait before the 535."""
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
        """The SASL mechanisms we implement (LOGIN, PLAIN), sorted, for the EHLO AUTH line."""
        return sorted(MECHANISMS)

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
        mechanism = MECHANISMS.get(args[0].upper())  # names are case-insensitive
        if mechanism is None:
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

    async def _check_login(self, login: bytes, password: bytes) -> AuthOutcome:
        """The account (str) for these credentials, or ``FAILED`` after the delay."""
        hooks: SessionHooks = self.event_handler
        account = None
        try:
            username, secret = login.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            username = secret = ""
        if username:
            account = await hooks.authenticate(self, username, secret)
        if account is None:
            self._state.auth_failures += 1
            delay = await hooks.auth_failed(self)
            self.log.warning("auth_failed", failures=self._state.auth_failures,
                             delay_ms=int(delay * 1000))
            if delay > 0:
                # Slows a guesser down across connections (see throttle.py);
                # a shutdown's abort cancels this wait with the connection.
                await asyncio.sleep(delay)
            return FAILED
        self.log = self.log.bind(user=account)
        self.log.info("auth_success")
        return account


#: SASL mechanism name (RFC 4422) -> its method.
MECHANISMS: dict[str, Callable[[Any, str | None], Awaitable[AuthOutcome]]] = {
    "LOGIN": AuthMechanisms.sasl_login,
    "PLAIN": AuthMechanisms.sasl_plain,
}
