"""One SMTP connection: aiosmtpd's command loop (through ``compat``) plus what it lacks.

aiosmtpd parses commands, does STARTTLS, and calls our hooks (``handler.py``,
which runs the stage pipeline of ``mailserver.checks``).  Every use of
aiosmtpd's private names lives in ``compat.py``; this module uses only its
public ones.  The transaction's state is ``transaction.Transaction``; policy is
never decided here.  What aiosmtpd lacks we add here, in one place:

* ENHANCEDSTATUSCODES (RFC 2034): ``push`` adds an RFC 3463 code to every
  2xx/4xx/5xx reply that lacks one, from the table in ``replies.py``; the
  greeting and EHLO/HELO replies are left alone (RFC 2034 §3).  To know which
  command a reply answers, every ``smtp_*`` method is wrapped to record it.
* PIPELINING (RFC 2920): aiosmtpd reads one command at a time from its
  stream and answers it before reading the next, so replies already come in
  order; we only advertise it (our own EHLO, which also drops aiosmtpd's
  empty ``AUTH`` line on port 25).
* Limits: line length for commands (``smtp_max_line_length``) and for DATA
  lines (``smtp_max_data_line_length``: real mail has lines far over RFC 5321's
  1000 octets, and Postfix accepts them), CRLF included, idle timeout with a ``421 4.4.2`` (aiosmtpd just hangs up),
  connections per listener and per IP (``421 4.7.0`` instead of the
  greeting), AUTH failures (``421 4.7.0`` and close).
* Clients that do not read: ``smtp_idle_timeout`` is also the write timeout
  (as Postfix's ``smtpd_timeout``).  A reply not taken within it drops the
  connection, and a closing connection whose last reply is not taken within
  it is aborted: ``transport.close()`` alone waits for the send buffer to
  drain, so a client that never reads would keep its connection slot forever.
* DSN (RFC 3461): advertised; MAIL's RET/ENVID and RCPT's NOTIFY/ORCPT are
  taken out of the argument before aiosmtpd sees it (it upper-cases
  parameters, and xtext and addresses are case-sensitive; it also refuses
  every RCPT parameter with 555), parsed by ``protocol.dsn_params`` (a
  syntax error is ``501 5.5.4``) and left on the envelope as
  ``dsn_offered`` for the handler's hook to keep once it accepts the command.
* AUTH PLAIN/LOGIN (RFC 4954) checked against the store asynchronously
  (aiosmtpd's authenticator callback is synchronous; argon2 must not run on
  the loop), only on submission listeners and only under TLS: ``auth.py``.
* Graceful shutdown: an idle connection gets ``421 4.3.2`` at once; one in
  DATA finishes its transaction, then gets the 421.

DATA bytes are kept exactly as received: our ``smtp_DATA`` reads the content
in chunks through ``data.DataDecoder``, which ends DATA only at CRLF.CRLF and
leaves bare CR and bare LF inside lines untouched, so a smuggled "LF.LF" is
just message content (never a second message), and the stored bytes are the
client's.  We accept rather than reject bare line endings, as Postfix does by
default; unlike Postfix we do not normalise them.  One consequence: the DATA
line limit counts CRLF-terminated lines, so a message written with bare LF
only (an RFC 5321 §2.3.8 violation) and bigger than that limit is one long
line and is refused with ``500 5.5.2``.

Per-connection cost: see ``compat`` (lean ``init_stock``/``start_stock``); ids
come from ``log.next_conn_id`` (one counter for SMTP and IMAP); the command size
limits are one shared read-only mapping; and ``wait_closed`` makes a future
only for a caller that waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mailserver import log as logsetup
from mailserver.config import Limits
from mailserver.errors import SmtpReply
from mailserver.protocol.smtp import replies
from mailserver.protocol.smtp.replies import add_enhanced_code
from mailserver.smtp.auth import AuthMechanisms
from mailserver.smtp.commands import SmtpCommands
from mailserver.smtp.compat import (
    AiosmtpdConnection,
    TLSSetupException,
    uniform_limits,
)
from mailserver.smtp.transaction import Transaction

if TYPE_CHECKING:
    import ssl

__all__ = ["ConnectionSettings", "Registry", "SmtpConnection", "Transaction"]

#: aiosmtpd's reply (after our enhanced code) before it hangs up on a client
#: that sent too many unknown commands; sent as ``replies.TOO_MANY_UNKNOWN``.
_AIOSMTPD_BOGUS_CLOSE = "502 5.5.1 Too many unrecognized commands"
@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """What every connection of one listener shares."""

    listener_name: str
    hostname: str
    limits: Limits
    submission: bool  # RFC 6409 listener: AUTH offered (under TLS) and required
    starttls_context: ssl.SSLContext | None  # offered when not None
    implicit_tls: bool  # TLS from the first byte (RFC 8314)


class Registry(Protocol):
    """The listener's view of its connections (see ``server.py``)."""

    async def admit(self, conn: SmtpConnection) -> bool: ...
    def release(self, conn: SmtpConnection) -> None: ...


@dataclass(slots=True)
class _State:
    command: str | None = None  # the command being answered, for enhanced codes
    in_data: bool = False
    closing: bool = False
    admitted: bool = False
    auth_failures: int = 0
    closed: bool = False
    connection_checked: bool = False  # the connect and HELO stages ran (see checks.stage)
    # Futures of ``wait_closed`` callers, made only when someone waits (shutdown,
    # a write timeout): most connections never need one, so no Event per connection.
    waiters: list[asyncio.Future[None]] | None = None
    # Aborts the transport if a close() does not complete (the peer does not read).
    abort_timer: asyncio.TimerHandle | None = None


class SmtpConnection(AuthMechanisms, SmtpCommands, AiosmtpdConnection):
    """One SMTP connection (RFC 5321), with our extensions and limits (see module doc)."""

    def __init__(self, handler: Any, settings: ConnectionSettings, registry: Registry) -> None:
        limits = settings.limits
        # The StreamReader's limit: DATA lines longer than it (CRLF included)
        # are refused after the data.  Command lines have their own, smaller
        # limit (command_size_limit below).
        self.init_stock(
            handler,
            hostname=settings.hostname,
            data_size_limit=limits.max_message_size,
            line_length_limit=max(limits.smtp_max_data_line_length, limits.smtp_max_line_length),
            idle_timeout=limits.smtp_idle_timeout,
            tls_context=settings.starttls_context,
            auth_mechanisms=_AUTH_MECHANISMS if settings.submission else {},
        )
        self.settings = settings
        self.conn_id = logsetup.next_conn_id()
        self.peer_ip = ""
        self.log: Any = logsetup.get_logger("mailserver.smtp")  # bound in connection_made
        self._registry = registry
        self._state = _State()
        # One command-line limit for every verb: aiosmtpd's class-level
        # dictionary is shared by all instances and grows on every EHLO.
        self.command_size_limit = limits.smtp_max_line_length - 2
        self.command_size_limits = uniform_limits(self.command_size_limit)

    # -- facts for the handler -----------------------------------------------------

    @property
    def is_tls(self) -> bool:
        """True once the connection is encrypted (implicit TLS or after STARTTLS)."""
        return self.settings.implicit_tls or self.tls_started

    @property
    def in_data(self) -> bool:
        return self._state.in_data

    def first_transaction(self) -> bool:
        """True the first time it is asked: the connect and HELO stages run then."""
        state = self._state
        if state.connection_checked:
            return False
        state.connection_checked = True
        return True

    # -- checks.CheckContext: the read-only view stages get (no allocation per check) ---

    @property
    def listener(self) -> str:
        return self.settings.listener_name

    @property
    def submission(self) -> bool:
        return self.settings.submission

    @property
    def tls(self) -> bool:
        return self.is_tls

    @property
    def helo(self) -> str | None:
        session = self.session
        return None if session is None else session.host_name

    @property
    def auth_user(self) -> str | None:
        session = self.session
        if session is None or not session.authenticated:
            return None
        return session.auth_data

    @property
    def mail_from(self) -> str | None:
        envelope = self.envelope
        return None if envelope is None else envelope.mail_from

    @property
    def mail_size(self) -> int | None:
        envelope = self.envelope
        for option in () if envelope is None else envelope.mail_options:
            keyword, _, value = option.partition("=")
            if keyword.upper() == "SIZE" and value.isdigit():
                return int(value)
        return None

    @property
    def rcpt_count(self) -> int:
        envelope = self.envelope
        return 0 if envelope is None else len(envelope.rcpt_tos)

    @property
    def resolver(self) -> Any:
        return getattr(self.event_handler, "resolver", None)

    async def wait_closed(self) -> None:
        """Return once the connection is gone."""
        state = self._state
        if state.closed:
            return
        # One future per caller: a cancelled waiter (shutdown's timeout) must not
        # cancel what another one awaits.
        waiter: asyncio.Future[None] = self.loop.create_future()
        if state.waiters is None:
            state.waiters = []
        state.waiters.append(waiter)
        await waiter

    def _set_closed(self) -> None:
        state = self._state
        state.closed = True
        for waiter in state.waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        state.waiters = None

    def new_envelope(self) -> Transaction:
        return Transaction()

    # -- connection life -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:
            # STARTTLS finished: same connection, new session (RFC 3207 §4.2).
            super().connection_made(transport)
            return
        self.start_stock(transport, implicit_tls=self.settings.implicit_tls)
        peer = self.session.peer
        self.peer_ip = str(peer[0]) if peer else ""
        self.log = self.log.bind(
            conn_id=self.conn_id, listener=self.settings.listener_name, peer=self.peer_ip
        )

    def connection_lost(self, error: Exception | None) -> None:
        if self._state.closed:
            return
        if self._state.abort_timer is not None:
            self._state.abort_timer.cancel()
        try:
            super().connection_lost(error)
        finally:
            self._registry.release(self)
            self._set_closed()
            self.log.info("smtp_disconnect")
            if self.task_done:
                self.drop_cycles()

    def on_idle_timeout(self) -> None:
        self.log.info("smtp_idle_timeout")
        self.close_with(replies.IDLE_TIMEOUT)

    def close_with(self, reply: SmtpReply) -> None:
        """Write ``reply`` (if the line is still up) and close; the close flushes it first,
        for at most ``smtp_idle_timeout`` seconds (see ``close_soon``)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(f"{reply}\r\n".encode())  # type: ignore[attr-defined]
        self.close_soon()

    def close_soon(self) -> None:
        """Close gracefully (what is buffered is sent first), but abort the connection
        if it is not gone within ``smtp_idle_timeout`` seconds: a close waits for the
        peer to read what is buffered, which a client that never reads never does."""
        if self._state.closed:
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        if self._state.abort_timer is None:
            self._state.abort_timer = self.loop.call_later(
                self.settings.limits.smtp_idle_timeout, self._close_timed_out
            )

    def _close_timed_out(self) -> None:
        self._state.abort_timer = None
        if not self._state.closed:
            self.log.info("smtp_close_timeout")
            self.abort()

    def begin_shutdown(self) -> None:
        """Listener shutdown: close now if idle, else after the DATA in progress."""
        self._state.closing = True
        if not self._state.in_data:
            self.close_with(replies.SHUTTING_DOWN)

    def abort(self) -> None:
        """Drop the connection without a word (shutdown grace expired, write timeout).

        The TCP transport itself (under STARTTLS the TLS layer's is above it):
        aborting it never waits for the peer."""
        transport = self.raw_transport
        if transport is not None:
            transport.abort()  # type: ignore[attr-defined]

    async def admit_session(self) -> bool:
        """Whether the command loop may start: a refused connection gets a 421
        instead of the greeting (``compat`` calls this).  Limits are counted
        across workers (``listeners/base.py``): one await."""
        self._state.admitted = await self._registry.admit(self)
        self.log.info("smtp_connect", admitted=self._state.admitted, tls=self.is_tls)
        if not self._state.admitted:
            self.log.warning("smtp_connection_refused", reason="connection limit")
            self.close_with(replies.GREETING_BUSY)
        return self._state.admitted

    def session_ended(self) -> None:
        """However the session ended (QUIT, a closing error, cancelled by
        connection_lost), what aiosmtpd closed must not hang on a peer that does
        not read its last replies."""
        self.close_soon()
        if self._state.closed:
            self.drop_cycles()

    async def handle_exception(self, error: Exception) -> str:
        """A failed STARTTLS handshake is the client's problem, not a server fault:
        log it quietly (aiosmtpd closes the connection); the rest goes to the handler."""
        if isinstance(error, TLSSetupException):
            self.log.info("starttls_failed", error=repr(error.__cause__))
            return "454 4.7.0 TLS handshake failed"
        return await super().handle_exception(error)

    # -- replies -------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        """Send one reply line, adding the enhanced status code (RFC 2034 §3)."""
        line = status.decode("utf-8", "surrogateescape") if isinstance(status, bytes) else status
        command = self._state.command
        is_greeting = command is None and line.startswith("220")
        if command not in ("EHLO", "HELO") and not is_greeting:
            line = add_enhanced_code(line, command)
        if line.startswith(_AIOSMTPD_BOGUS_CLOSE):
            line = str(replies.TOO_MANY_UNKNOWN)  # aiosmtpd closes right after it
        await self._send(line.encode("utf-8", "surrogateescape") + b"\r\n")

    async def _send(self, data: bytes) -> None:
        """Write ``data`` (whole reply lines) in one ``send``.

        As aiosmtpd's ``push``, but the wait for the peer to read (``drain``) is
        bounded by ``smtp_idle_timeout``: past it the connection is aborted and
        this task waits to be cancelled by ``connection_lost``.
        """
        transport = self.transport
        writer = self.stream_writer
        writer.write(data)
        if (transport is not None and not transport.is_closing()
                and transport.get_write_buffer_size() == 0):  # type: ignore[attr-defined]
            # All sent and the line is up: drain() would find nothing to wait
            # for, nor an error to raise (a lost connection closes the transport).
            return
        if transport is None or transport.get_write_buffer_size() == 0:  # type: ignore[attr-defined]
            await writer.drain()  # raises if the connection is gone
            return
        try:
            async with asyncio.timeout(self.settings.limits.smtp_idle_timeout):
                await writer.drain()
        except TimeoutError:
            self.log.warning("smtp_write_timeout")
            self.abort()
            await self.wait_closed()  # connection_lost cancels this task

    async def run_command(
        self, name: str, method: Callable[[Any, str | None], Awaitable[None]], arg: str | None
    ) -> None:
        """Run ``smtp_<name>``, recording the command for ``push``'s enhanced codes."""
        state = self._state
        state.command = name
        state.in_data = name == "DATA"
        try:
            await method(self, arg)
        finally:
            state.command = None
            state.in_data = False
        if state.closing:
            self.close_with(replies.SHUTTING_DOWN)


# -- tables built once (see SmtpConnection.__init__) --------------------------------

#: AUTH mechanisms (RFC 4954): name -> method attribute, as aiosmtpd names them.
_AUTH_MECHANISMS: dict[str, str] = {
    getattr(fn, "__auth_mechanism_name__", attr[len("auth_"):].replace("__", "-")): attr
    for attr, fn in sorted(vars(AuthMechanisms).items())
    if attr.startswith("auth_") and callable(fn)
}
