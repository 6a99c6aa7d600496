"""One SMTP connection: our command loop over aiosmtpd's transport (``compat``).

The bytes are parsed by the sans-IO core (``protocol.smtp.command`` for
command lines and MAIL/RCPT parameters, ``protocol.smtp.data`` for DATA),
the commands answered by ``commands.py`` and ``auth.py``, and policy is
decided by the hooks (``handler.py``, which runs the stage pipeline of
``mailserver.checks``); aiosmtpd only carries the bytes and upgrades to TLS
(all of it in ``compat.py``).  The transaction's state is
``transaction.Transaction``.  This module keeps the session going:

* The command loop (``serve``): the greeting (or ``421 4.7.0`` when the
  listener's connection limits refuse the client), then one command at a
  time from the ``CommandReader``, which reads as much as the client sent:
  pipelined commands (RFC 2920) are answered in order without a read per
  line.  An over-long command line is answered at the limit (``500 5.5.2``)
  and skipped to its end; a bare CR or LF in a command line is refused
  (RFC 5321 §2.3.8); ``smtp_max_unknown_commands`` unrecognised commands end
  the session with ``421 4.7.0`` (RFC 5321 §3.8).
* ENHANCEDSTATUSCODES (RFC 2034): ``push`` adds an RFC 3463 code to every
  2xx/4xx/5xx reply that lacks one, from the table in ``replies.py``; the
  greeting and EHLO/HELO replies are left alone (RFC 2034 §3).
* Limits: command and DATA line lengths, message size, idle timeout with
  ``421 4.4.2``, connections per listener and per IP, AUTH failures.
* Clients that do not read: ``smtp_idle_timeout`` is also the write timeout
  (as Postfix's ``smtpd_timeout``).  A reply not taken within it drops the
  connection, and a closing connection whose last reply is not taken within
  it is aborted: ``transport.close()`` alone waits for the send buffer to
  drain, so a client that never reads would keep its connection slot forever.
* Graceful shutdown: an idle connection gets ``421 4.3.2`` at once; one in
  a command (DATA, say) finishes it, then gets the 421.
* Every exception of a command becomes a reply in one place: the handler's
  ``handle_exception`` (``errors.smtp_reply``).

Per-connection cost: see ``compat`` (lean ``init_stock``/``start_stock``);
ids come from ``log.next_conn_id`` (one counter for SMTP and IMAP), and
``wait_closed`` makes a future only for a caller that waits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mailserver import log as logsetup
from mailserver.config import Limits
from mailserver.errors import ProtocolSyntaxError, SmtpReply, smtp_reply
from mailserver.protocol.smtp import replies
from mailserver.protocol.smtp.command import NEED_DATA, Command, CommandReader
from mailserver.protocol.smtp.replies import add_enhanced_code, reply_bytes
from mailserver.smtp.auth import AuthMechanisms
from mailserver.smtp.commands import VERBS as _COMMAND_VERBS
from mailserver.smtp.commands import SmtpCommands
from mailserver.smtp.compat import AiosmtpdConnection
from mailserver.smtp.transaction import Transaction

if TYPE_CHECKING:
    import ssl

__all__ = ["ConnectionSettings", "Registry", "SmtpConnection", "Transaction"]

#: Verb -> method, every command we answer (RFC 5321 §4.1.1, RFC 4954).
VERBS = {**_COMMAND_VERBS, "AUTH": AuthMechanisms.smtp_AUTH}
#: How much one read takes from the socket buffer (octets).
_READ_SIZE = 1 << 16


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

    async def admit(self, conn: SmtpConnection) -> bool:
        """Count ``conn`` against the listener's connection limits; False: refuse it (421)."""
        ...

    def release(self, conn: SmtpConnection) -> None:
        """Give back ``conn``'s slot when it closes (idempotent)."""
        ...


@dataclass(slots=True)
class _State:
    command: str | None = None  # the command being answered, for enhanced codes
    in_data: bool = False
    closing: bool = False
    admitted: bool = False
    auth_failures: int = 0
    unknown_commands: int = 0
    ended: bool = False  # QUIT answered or the session closed by us: read no more
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
        self.init_stock(
            handler,
            hostname=settings.hostname,
            data_size_limit=limits.max_message_size,
            idle_timeout=limits.smtp_idle_timeout,
            tls_context=settings.starttls_context,
        )
        self.settings = settings
        self.conn_id = logsetup.next_conn_id()
        self.peer_ip = ""
        self.log: Any = logsetup.get_logger("mailserver.smtp")  # bound in connection_made
        self._registry = registry
        self._state = _State()
        #: The sans-IO command reader: everything read from the client goes through it.
        self.lines = CommandReader(limits.smtp_max_line_length)

    # -- facts for the handler -----------------------------------------------------

    @property
    def is_tls(self) -> bool:
        """True once the connection is encrypted (implicit TLS or after STARTTLS)."""
        return self.settings.implicit_tls or self.tls_started

    @property
    def in_data(self) -> bool:
        """True while a DATA transfer is being read (shutdown lets it finish)."""
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
        """``CheckContext.listener``: this listener's configured name."""
        return self.settings.listener_name

    @property
    def submission(self) -> bool:
        """``CheckContext.submission``: True on a submission listener (RFC 6409)."""
        return self.settings.submission

    @property
    def tls(self) -> bool:
        """``CheckContext.tls``: the same as ``is_tls``."""
        return self.is_tls

    @property
    def helo(self) -> str | None:
        """``CheckContext.helo``: the HELO/EHLO name, None before one."""
        session = self.session
        return None if session is None else session.host_name

    @property
    def auth_user(self) -> str | None:
        """``CheckContext.auth_user``: the account AUTH succeeded for (RFC 4954), else None."""
        session = self.session
        if session is None or not session.authenticated:
            return None
        return session.auth_data

    @property
    def mail_from(self) -> str | None:
        """``CheckContext.mail_from``: MAIL FROM's reverse-path, None outside a transaction."""
        envelope = self.envelope
        return None if envelope is None else envelope.mail_from

    @property
    def mail_size(self) -> int | None:
        """MAIL's SIZE= estimate in octets (RFC 1870 §6), None when not given."""
        envelope = self.envelope
        args = None if envelope is None else envelope.mail_args
        return None if args is None else args.size

    @property
    def rcpt_count(self) -> int:
        """``CheckContext.rcpt_count``: recipients accepted in this transaction so far."""
        envelope = self.envelope
        return 0 if envelope is None else len(envelope.rcpt_tos)

    @property
    def resolver(self) -> Any:
        """``CheckContext.resolver``: the handler's shared DNS resolver, or None."""
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
        """A fresh, empty ``Transaction`` (``reset_transaction``; aiosmtpd after STARTTLS)."""
        return Transaction()

    # -- connection life -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the session on a new connection; after STARTTLS, start it afresh on the
        TLS transport (RFC 3207 §4.2: what was said before is forgotten).
        """
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
        """The connection is gone: give back its slot, wake ``wait_closed`` callers, log."""
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
        """No bytes from the client for ``smtp_idle_timeout`` seconds: 421 4.4.2, then close."""
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
        """Whether the session may start: a refused connection gets a 421
        instead of the greeting.  Limits are counted across workers
        (``listeners/base.py``): one await."""
        self._state.admitted = await self._registry.admit(self)
        if not self._state.admitted:
            self.log.info("smtp_connect", admitted=False, tls=self.is_tls)
            self.log.warning("smtp_connection_refused", reason="connection limit")
            self.close_with(replies.GREETING_BUSY)
        return self._state.admitted

    def session_ended(self) -> None:
        """However the session ended (QUIT, a closing error, cancelled by
        connection_lost), what was sent must not hang on a peer that does
        not read its last replies."""
        self.close_soon()
        if self._state.closed:
            self.drop_cycles()

    # -- the command loop ------------------------------------------------------------

    async def serve(self) -> None:
        """The session (RFC 5321 §3.1, §4.1): greeting, then commands until QUIT,
        a close of ours, or the end of the client's stream."""
        state = self._state
        try:
            if not await self.admit_session():
                return
            await self._send(f"220 {self.hostname} ESMTP ready\r\n".encode())
            # Logged after the greeting is on its way, not before.
            self.log.info("smtp_connect", admitted=True, tls=self.is_tls)
            reader = self.stream_reader
            lines = self.lines
            while not state.ended:
                try:
                    command = lines.next_command()
                except ProtocolSyntaxError as exc:  # an over-long line, a bare CR or LF
                    await self.reply(smtp_reply(exc))
                    continue
                if command == NEED_DATA:
                    chunk = await reader.read(_READ_SIZE)
                    if not chunk:
                        return  # the client closed its side
                    lines.feed(chunk)
                    continue
                assert isinstance(command, Command)
                await self.dispatch(command)
        except ConnectionError:
            pass  # the peer went away; connection_lost does the rest
        finally:
            self.session_ended()

    async def dispatch(self, command: Command) -> None:
        """Answer one command (``commands.VERBS``), recording it for ``push``'s
        enhanced codes; an exception becomes the reply ``handle_exception`` gives."""
        state = self._state
        method = VERBS.get(command.verb)
        if method is None:
            await self._unknown(command.verb)
            return
        state.command = command.verb
        state.in_data = command.verb == "DATA"
        try:
            await method(self, command.arg)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            await self.push(await self.handle_exception(exc))
        finally:
            state.command = None
            state.in_data = False
        if state.closing and not state.ended:
            self.end_session(replies.SHUTTING_DOWN)

    async def _unknown(self, verb: str) -> None:
        """RFC 5321 §4.2.4: ``500`` for an unrecognised command; after
        ``smtp_max_unknown_commands`` of them, ``421`` and close (§3.8)."""
        state = self._state
        state.unknown_commands += 1
        self.log.info("smtp_unknown_command", verb=verb[:16])
        if state.unknown_commands >= self.settings.limits.smtp_max_unknown_commands:
            self.end_session(replies.TOO_MANY_UNKNOWN)
            return
        if verb and verb.isascii() and verb.isalpha() and len(verb) <= 16:
            await self.push(f'500 5.5.2 Error: command "{verb}" not recognized')
        else:  # never echo what may be binary or a flood
            await self.push("500 5.5.2 Error: bad syntax")

    def end_session(self, reply: SmtpReply | None = None) -> None:
        """Stop reading commands; send ``reply`` (if any) and close (``close_with``)."""
        self._state.ended = True
        if reply is None:
            self.close_soon()
        else:
            self.close_with(reply)

    async def handle_exception(self, error: Exception) -> str:
        """A command or a hook raised: the handler's mapping (``errors.smtp_reply``)."""
        hook = getattr(self.event_handler, "handle_exception", None)
        if hook is not None:
            return str(await hook(error))
        return str(smtp_reply(error))

    # -- replies -------------------------------------------------------------------

    async def reply(self, reply: SmtpReply) -> None:
        """Send ``reply`` as it is (it carries its own enhanced code)."""
        await self._send(reply_bytes(reply))

    async def push(self, status: str | bytes) -> None:
        """Send one reply line, adding the enhanced status code (RFC 2034 §3)."""
        line = status.decode("utf-8", "surrogateescape") if isinstance(status, bytes) else status
        command = self._state.command
        if command not in ("EHLO", "HELO"):
            line = add_enhanced_code(line, command)
        await self._send(line.encode("utf-8", "surrogateescape") + b"\r\n")

    async def _send(self, data: bytes) -> None:
        """Write ``data`` (whole reply lines) in one ``send``.

        The wait for the peer to read (``drain``) is bounded by
        ``smtp_idle_timeout``: past it the connection is aborted and this task
        waits to be cancelled by ``connection_lost``.
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
