"""SMTP AUTH (RFC 4954) for ``SmtpConnection``: the command and its mechanisms.

A mixin of ``adapter.SmtpConnection`` (before aiosmtpd's ``SMTP`` in its bases,
so ``super()`` here is aiosmtpd's): the class keeps the connection's state,
this module what AUTH does with it.

* Offered only on submission listeners and only under TLS (RFC 8314 §3); a
  mechanism name is case-insensitive.
* PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login); an initial
  response may be ``=`` (empty, RFC 4954 §4); bad base64 is ``501 5.5.2``.
* The password is checked by the handler's ``authenticate`` off the loop
  (argon2); a failure is counted per connection (``max_auth_failures``, then
  ``421 4.7.0`` and close) and delayed per client address by the handler's
  throttle.
"""

from __future__ import annotations

import asyncio
import binascii
from base64 import b64decode
from typing import Any, Protocol

from mailserver.protocol.smtp import replies
from mailserver.smtp.compat import MISSING, AuthResult


class SessionHooks(Protocol):
    """What AUTH needs from the handler besides aiosmtpd's ``handle_*`` hooks."""

    async def authenticate(
        self, conn: Any, username: str, password: str
    ) -> str | None: ...

    async def auth_failed(self, conn: Any) -> float:
        """Record a failed AUTH from ``conn.peer_ip``; seconds to wait before the 535."""
        ...


class AuthMechanisms:
    """``smtp_AUTH`` and the ``auth_*`` mechanisms.  Uses the connection's
    ``settings``, ``is_tls``, ``push``, ``close_with``, ``log``, ``_state``
    (``auth_failures``), ``command_size_limit`` and ``event_handler``."""

    # The connection's attributes this mixin reads (set by SmtpConnection).
    settings: Any
    is_tls: Any  # a property of the connection
    log: Any
    _state: Any
    command_size_limit: int
    event_handler: Any
    push: Any
    close_with: Any

    async def smtp_AUTH(self, arg: str | None) -> None:
        """RFC 4954 §4: only on submission listeners, only under TLS (RFC 8314 §3)."""
        if not self.settings.submission:
            await self.push(str(replies.AUTH_NOT_OFFERED))
            return
        if not self.is_tls:
            await self.push(str(replies.AUTH_NEEDS_TLS))
            return
        if arg:
            mechanism, sep, rest = arg.strip().partition(" ")
            arg = mechanism.upper() + sep + rest  # mechanism names are case-insensitive
        await super().smtp_AUTH(arg)  # type: ignore[misc]  # a mixin over aiosmtpd.SMTP
        if self._state.auth_failures >= self.settings.limits.max_auth_failures:
            self.log.warning("auth_too_many_failures", failures=self._state.auth_failures)
            self.close_with(replies.AUTH_TOO_MANY)

    # -- mechanisms (aiosmtpd calls them as method(self, args)) ----------------------

    async def challenge_auth(
        self, challenge: str | bytes, encode_to_b64: bool = True, log_client_response: bool = False
    ) -> Any:
        """aiosmtpd's 334 exchange, with an over-long answer refused rather than
        surfacing as an internal error (``StreamReader.readline`` raises ValueError)."""
        try:
            answer = await super().challenge_auth(  # type: ignore[misc]  # mixin, as above
                challenge, encode_to_b64, log_client_response)
        except ValueError:
            await self.push(str(replies.LINE_TOO_LONG))
            return MISSING
        # The stream limit is the (larger) DATA line limit: hold the answer to
        # the command line limit here (base64: 4 octets on the line per 3 decoded).
        if isinstance(answer, bytes) and len(answer) * 4 > self.command_size_limit * 3:
            await self.push(str(replies.LINE_TOO_LONG))
            return MISSING
        return answer

    async def _decode_response(self, args: list[str], challenge: str) -> bytes | None:
        """The initial response (RFC 4954 §4, "=" is empty) or the answer to a 334 challenge.

        ``None`` when the client cancelled or sent bad base64 (a 501 was sent).
        """
        if len(args) < 2:
            answer = await self.challenge_auth(challenge)
            return None if answer is MISSING else answer
        if args[1] == "=":
            return b""
        try:
            return b64decode(args[1], validate=True)
        except (binascii.Error, ValueError):
            await self.push("501 5.5.2 Cannot decode base64")
            return None

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        """RFC 4616: ``[authzid] NUL authcid NUL passwd``; authzid must be empty or authcid."""
        response = await self._decode_response(args, "")
        if response is None:
            return AuthResult(success=False, handled=True)
        parts = response.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Malformed PLAIN response")
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        if authzid and authzid != login:
            return await self._check_login(b"", b"")  # no proxy authorization
        return await self._check_login(login, password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        """The de-facto LOGIN mechanism (draft-murchison-sasl-login): user, then password."""
        login = await self._decode_response(args, "Username:")
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self._decode_response([args[0]], "Password:")
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self._check_login(login, password)

    async def _check_login(self, login: bytes, password: bytes) -> AuthResult:
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
            return AuthResult(success=False, handled=False)
        self.log = self.log.bind(user=account)
        self.log.info("auth_success")
        return AuthResult(success=True, auth_data=account, message=str(replies.AUTH_OK))
