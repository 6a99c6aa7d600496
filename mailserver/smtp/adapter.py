"""Our subclass of ``aiosmtpd.smtp.SMTP``: the only module that imports aiosmtpd.

aiosmtpd parses commands, does STARTTLS and DATA dot-unstuffing, and calls
our hooks (``handler.py``).  What it lacks we add here, in one place:

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

Per-connection cost: aiosmtpd's ``SMTP.__init__`` scans the class with
``inspect`` on every connection; ours sets the same attributes from tables
built once (see ``SmtpConnection.__init__``), and ids come from counters.
The first ``connection_made`` does aiosmtpd's and asyncio's set-up in one pass
(``_start``); the command size limits are one shared read-only mapping; and
``wait_closed`` makes a future only for a caller that waits.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import re
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    Envelope,
    Session,
    TLSSetupException,
    _AuthMechAttr,
    login_always_fail,
    syntax,
)

from mailserver import log as logsetup
from mailserver.config import Limits
from mailserver.delivery.local import LocalRecipient
from mailserver.errors import ProtocolSyntaxError, SmtpReply, smtp_reply
from mailserver.protocol import dsn_params
from mailserver.protocol.dsn_params import MailDsn, RcptDsn
from mailserver.protocol.smtp import replies
from mailserver.protocol.smtp.data import DataDecoder, DataError
from mailserver.protocol.smtp.replies import add_enhanced_code
from mailserver.protocol.smtp_address import parse_path
from mailserver.smtp.auth import AuthMechanisms

if TYPE_CHECKING:
    import ssl

# aiosmtpd logs every command at INFO and warns on each AUTH about a
# deprecated attribute it sets itself; our structured events replace them.
logging.getLogger("mail.log").setLevel(logging.ERROR)

_AUTH_PARAM = re.compile(r"\s+AUTH=\S*", re.IGNORECASE)
#: A DSN parameter (RFC 3461 §4) somewhere in a MAIL/RCPT argument: the cheap
#: test that keeps commands without one off the parsing path.
_DSN_PARAM = re.compile(r"\s(?:RET|ENVID|NOTIFY|ORCPT)=", re.IGNORECASE)
#: aiosmtpd's reply (after our enhanced code) before it hangs up on a client
#: that sent too many unknown commands; sent as ``replies.TOO_MANY_UNKNOWN``.
_AIOSMTPD_BOGUS_CLOSE = "502 5.5.1 Too many unrecognized commands"
#: How early an idle timer may fire and still count (see ``_idle_check``).
_IDLE_SLACK = 0.01
#: ``StreamReader.read`` size meaning "all that is buffered".
_READ_ALL = 1 << 62
#: Replies for refused content, as aiosmtpd words them (``push`` adds the
#: enhanced codes 5.5.2 and 5.3.4).
_DATA_REFUSALS = {
    DataError.LINE_TOO_LONG: "500 Line too long (see RFC5321 4.5.3.1.6)",
    DataError.TOO_MUCH: "552 Error: Too much mail data",
    DataError.BARE_LINE_ENDING: "550 5.5.2 Bare CR or LF not allowed (RFC 5321 2.3.8)",
}


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

    def admit(self, conn: SmtpConnection) -> bool: ...
    def release(self, conn: SmtpConnection) -> None: ...


class Transaction(Envelope):
    """aiosmtpd's envelope plus the accounts our RCPT policy resolved."""

    def __init__(self) -> None:
        super().__init__()
        self.local_recipients: list[LocalRecipient] = []
        #: Accepted forward-paths for other domains (authenticated submission only).
        self.remote_recipients: list[str] = []
        #: DSN parameters (RFC 3461) of the MAIL or RCPT being answered, set by the
        #: adapter; the handler keeps them when it accepts the command.
        self.dsn_offered: MailDsn | RcptDsn | None = None
        self.mail_dsn: MailDsn | None = None
        #: Accepted forward-path -> its RCPT's DSN parameters (only those that had some).
        self.rcpt_dsn: dict[str, RcptDsn] = {}


@dataclass(slots=True)
class _State:
    command: str | None = None  # the command being answered, for enhanced codes
    in_data: bool = False
    closing: bool = False
    admitted: bool = False
    auth_failures: int = 0
    closed: bool = False
    # Futures of ``wait_closed`` callers, made only when someone waits (shutdown,
    # a write timeout): most connections never need one, so no Event per connection.
    waiters: list[asyncio.Future[None]] | None = None
    # Aborts the transport if a close() does not complete (the peer does not read).
    abort_timer: asyncio.TimerHandle | None = None


class SmtpConnection(AuthMechanisms, SMTP):
    """One SMTP connection (RFC 5321), with our extensions and limits (see module doc)."""

    def __init__(self, handler: Any, settings: ConnectionSettings, registry: Registry) -> None:
        # aiosmtpd's own __init__ rebuilds its command and AUTH tables with
        # inspect.getmembers()/dir() on every connection (~9 % of the CPU of
        # one-message connections, bench/RESULTS.md): we set the same
        # attributes from tables built once per class and per handler.
        # tests/integration/test_smtp_adapter.py checks the attribute set against
        # aiosmtpd's, so an upgrade that adds one fails loudly.
        limits = settings.limits
        loop = asyncio.get_running_loop()
        # The StreamReader's limit: DATA lines longer than it (CRLF included)
        # are refused after the data.  Command lines have their own, smaller
        # limit (command_size_limit below).
        self.line_length_limit = max(limits.smtp_max_data_line_length, limits.smtp_max_line_length)
        self.__ident__ = "ESMTP ready"
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        self.event_handler = handler
        self.data_size_limit = limits.max_message_size
        self.enable_SMTPUTF8 = True
        self._decode_data = False
        self.hostname = settings.hostname
        self.tls_context = settings.starttls_context
        self.require_starttls = False
        self._timeout_duration = limits.smtp_idle_timeout
        self._timeout_handle = None
        self._idle_deadline = 0.0  # see _reset_timeout
        self._idle_armed = False
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        # We enforce AUTH ourselves (handler.handle_MAIL, smtp_AUTH below):
        # aiosmtpd cannot see implicit TLS as TLS.
        self._auth_require_tls = False
        self._auth_required = False
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        self._enforce_call_limit = False
        self._auth_methods = (
            {name: _AuthMechAttr(getattr(self, attr), True) for name, attr in _AUTH_MECHANISMS}
            if settings.submission else {}
        )
        self._handle_hooks = _hooks_of(handler)
        self._ehlo_hook_ver = None  # our handler has no handle_EHLO
        self._smtp_methods = _CommandTable(self)

        self.settings = settings
        self.conn_id = next_conn_id()
        self.peer_ip = ""
        self.log: Any = logsetup.get_logger("mailserver.smtp")  # bound in connection_made
        self._registry = registry
        self._state = _State()
        # One command-line limit for every verb: aiosmtpd's class-level
        # dictionary is shared by all instances and grows on every EHLO.
        self.command_size_limit = limits.smtp_max_line_length - 2
        self.command_size_limits = _uniform_limits(self.command_size_limit)

    # -- facts for the handler -----------------------------------------------------

    @property
    def is_tls(self) -> bool:
        """True once the connection is encrypted (implicit TLS or after STARTTLS)."""
        return self.settings.implicit_tls or self._tls_protocol is not None

    @property
    def in_data(self) -> bool:
        return self._state.in_data

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

    def _create_envelope(self) -> Transaction:
        return Transaction()

    # -- connection life -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:
            # STARTTLS finished: same connection, new session (RFC 3207 §4.2).
            super().connection_made(transport)
            return
        self._start(transport)
        peer = self.session.peer  # type: ignore[union-attr]
        self.peer_ip = str(peer[0]) if peer else ""
        self.log = self.log.bind(
            conn_id=self.conn_id, listener=self.settings.listener_name, peer=self.peer_ip
        )
        self._state.admitted = self._registry.admit(self)
        self.log.info("smtp_connect", admitted=self._state.admitted, tls=self.is_tls)

    def _start(self, transport: asyncio.BaseTransport) -> None:
        """aiosmtpd's first ``connection_made`` (and asyncio's ``StreamReaderProtocol``'s
        under it) in one pass: one peername lookup instead of two, no log call to a
        silenced logger, and the StreamWriter handed over directly rather than
        through the ``client_connected_cb`` round trip.

        tests/integration/test_smtp_adapter.py checks that the connection ends up
        with the attributes the stock path sets, so an upgrade that adds one fails.
        """
        loop = self.loop
        self.envelope = self._create_envelope()  # _set_rset_state
        session = self.session = Session(loop)
        session.peer = transport.get_extra_info("peername")
        self._reset_timeout()
        reader = self._strong_reader
        self._transport = transport
        reader.set_transport(transport)
        # An implicit-TLS listener's transport is the SSL one (its "sslcontext" is set).
        self._over_ssl = self.settings.implicit_tls
        writer = asyncio.StreamWriter(transport, self, reader, loop)  # type: ignore[arg-type]
        self._stream_writer = self._writer = writer
        self._reader = reader
        self._strong_reader = None
        self.transport = transport
        self._handler_coroutine = loop.create_task(self._handle_client())

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
            if self._handler_coroutine is None or self._handler_coroutine.done():
                self._drop_cycles()

    def data_received(self, data: bytes) -> None:
        # Idle means no bytes at all, so a long DATA transfer keeps the connection alive.
        self._reset_timeout()
        super().data_received(data)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Move the idle deadline (aiosmtpd calls this per command, we per read).

        aiosmtpd cancels and creates a timer each time; ours only moves the
        deadline, and the armed timer re-arms itself for the rest when it
        fires early.  ``_timeout_handle`` stays the armed (or last) timer, as
        aiosmtpd's ``connection_lost`` cancels it.
        """
        loop = self.loop
        deadline = loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is not None and self._idle_armed:
            if handle.when() <= deadline:
                return  # fires first, then re-arms for what is left
            handle.cancel()
        self._idle_armed = True
        self._timeout_handle = loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_armed = False
        # Timers may fire a little early (uvloop keeps milliseconds): within the
        # slack the deadline counts as reached, rather than re-arming for ~0 s.
        if self.loop.time() + _IDLE_SLACK < self._idle_deadline:
            self._idle_armed = True
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)
            return
        self._timeout_cb()

    def _timeout_cb(self) -> None:
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
        transport = self._original_transport or self.transport
        if transport is not None:
            transport.abort()  # type: ignore[attr-defined]

    async def _handle_client(self) -> None:
        if not self._state.admitted:
            self.log.warning("smtp_connection_refused", reason="connection limit")
            self.close_with(replies.GREETING_BUSY)
            return
        try:
            await super()._handle_client()
        finally:
            # However the session ended (QUIT, a closing error, cancelled by
            # connection_lost), what aiosmtpd closed must not hang on a peer
            # that does not read its last replies.
            self.close_soon()
            if self._state.closed:
                self._drop_cycles()

    def _drop_cycles(self) -> None:
        """Once the connection is closed and its task has ended, drop the
        references that tie its objects in cycles (the task and the exception
        it ended with, the stream writer and the command table pointing back
        here, bound methods of ours), so reference counting frees a finished
        connection at once.  Left to the cyclic collector, every connection
        was ~40 objects of garbage (bench/RESULTS.md: the collector's passes
        were ~7 % of a worker's CPU and their pauses tens of milliseconds)."""
        self._handler_coroutine = None
        self._smtp_methods = None  # type: ignore[assignment]
        self._writer = None  # type: ignore[assignment]
        self._reader = None  # type: ignore[assignment]
        self._client_connected_cb = None
        self._auth_methods = {}
        self._timeout_handle = None

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
        self._writer.write(data)
        if (transport is not None and not transport.is_closing()
                and transport.get_write_buffer_size() == 0):  # type: ignore[attr-defined]
            # All sent and the line is up: drain() would find nothing to wait
            # for, nor an error to raise (a lost connection closes the transport).
            return
        if transport is None or transport.get_write_buffer_size() == 0:  # type: ignore[attr-defined]
            await self._writer.drain()  # raises if the connection is gone
            return
        try:
            async with asyncio.timeout(self.settings.limits.smtp_idle_timeout):
                await self._writer.drain()
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

    # -- commands ------------------------------------------------------------------

    async def smtp_EHLO(self, hostname: str | None) -> None:
        """RFC 5321 §4.1.1.1, listing the extensions we support (RFC 1869 §4.3)."""
        if not hostname:
            await self.push("501 Syntax: EHLO hostname")
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = True
        self.session.host_name = hostname
        keywords = [
            "PIPELINING",  # RFC 2920
            f"SIZE {self.data_size_limit}",  # RFC 1870
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            "ENHANCEDSTATUSCODES",  # RFC 2034
            "DSN",  # RFC 3461
        ]
        if self.tls_context is not None and not self.is_tls:
            keywords.append("STARTTLS")  # RFC 3207
        if self.settings.submission and self.is_tls:
            keywords.append("AUTH " + " ".join(sorted(self._auth_methods)))  # RFC 4954
        keywords.append("HELP")
        # One write for the whole reply (RFC 5321 §4.2.1 multiline form), not a
        # send() per line.  No enhanced codes in EHLO replies (RFC 2034 §3).
        lines = [self.hostname, *keywords]
        last = len(lines) - 1
        await self._send("".join(
            f"250{' ' if i == last else '-'}{text}\r\n" for i, text in enumerate(lines)
        ).encode("utf-8", "surrogateescape"))

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        """RFC 3207 §4; a second STARTTLS on an encrypted connection is refused."""
        if self.is_tls:
            await self.push("503 5.5.1 TLS already active")
            return
        await super().smtp_STARTTLS(arg)  # type: ignore[arg-type]

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.2.  The AUTH= parameter (RFC 4954 §5) is accepted and ignored;
        RET= and ENVID= (RFC 3461 §4.3, §4.4) are ours (see ``_take_dsn``)."""
        if arg is not None:
            arg = await self._take_dsn(_AUTH_PARAM.sub("", arg), "FROM:")
            if arg is None:
                return
        await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.3, with NOTIFY= and ORCPT= (RFC 3461 §4.1, §4.2) taken
        out first (see ``_take_dsn``); aiosmtpd refuses any other parameter (555)."""
        if arg is not None:
            arg = await self._take_dsn(arg, "TO:")
            if arg is None:
                return
        await super().smtp_RCPT(arg)

    async def _take_dsn(self, arg: str, keyword: str) -> str | None:
        """Take the DSN parameters (RFC 3461 §4) out of a MAIL (``keyword`` "FROM:")
        or RCPT ("TO:") argument, parsed into ``envelope.dsn_offered``.

        Returns the argument without them for aiosmtpd, or None once a syntax
        error was answered (``501 5.5.4``).  After HELO (no extensions), or
        when the path does not parse, the argument goes on untouched and
        aiosmtpd refuses it as before.  The other command's DSN keywords stay
        in, so aiosmtpd answers them ``555`` (RFC 5321 §4.2.2).
        """
        envelope = self.envelope
        if envelope is not None:
            envelope.dsn_offered = None
        if (envelope is None or self.session is None or not self.session.extended_smtp
                or not _DSN_PARAM.search(arg)):
            return arg
        rest = self._strip_command_keyword(keyword, arg)
        if rest is None:
            return arg
        address, params = self._getaddr(rest)
        if not address or not params or not rest.endswith(params):
            return arg
        mail = keyword == "FROM:"
        allowed = dsn_params.MAIL_KEYWORDS if mail else dsn_params.RCPT_KEYWORDS
        tokens = params.split()
        ours = [t for t in tokens if t.partition("=")[0].upper() in allowed]
        others = [t for t in tokens if t.partition("=")[0].upper() not in allowed]
        try:
            envelope.dsn_offered = (
                dsn_params.parse_mail(ours) if mail else dsn_params.parse_rcpt(ours)
            )
        except ProtocolSyntaxError as exc:
            await self.push(str(smtp_reply(exc)))
            return None
        path = rest[: len(rest) - len(params)].rstrip()
        return " ".join([keyword + path, *others])

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.4, read in chunks by ``data.DataDecoder`` (same checks and
        replies as aiosmtpd's line-by-line reader, without a ``readuntil`` per line)."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        decoder = DataDecoder(max_size=self.data_size_limit, max_line=self.line_length_limit)
        reader = self._reader
        while True:
            # Everything buffered at once: after the end marker nothing is
            # left in the reader, so what follows can be put back in order.
            chunk = await reader.read(_READ_ALL)
            if not chunk:
                return  # the client went away mid-DATA: nothing was accepted
            rest = decoder.feed(chunk)
            if rest is not None:
                break
        if rest and not reader.at_eof():
            reader.feed_data(rest)  # pipelined commands after the message (RFC 2920)
        if decoder.error is not None:
            await self.push(_DATA_REFUSALS[decoder.error])
            self._set_post_data_state()
            return
        content = decoder.content
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """RFC 5321 §4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">".

        Paths in the RFC 5321 grammar are split by ``smtp_address.parse_path``
        (aiosmtpd's answer, without its RFC 5322 token trees and a class
        created per call: ~11 % of ingress CPU).  Anything else goes to
        aiosmtpd's lenient parser as before, except that a path opened with
        "<" and never closed is a syntax error (501): aiosmtpd only notes the
        missing ">" as a defect and accepts the address.
        """
        parsed = parse_path(arg)
        if parsed is not None:
            address, rest = parsed
            limit = self.local_part_limit
            if limit and len(address.rpartition("@")[0]) > limit:
                return None, None
            return address, rest
        stripped = arg.lstrip()
        if stripped.startswith("<") and ">" not in stripped:
            return None, None
        return super()._getaddr(arg)


# -- tables built once (see SmtpConnection.__init__) --------------------------------

#: AUTH mechanisms (RFC 4954): (name, method attribute), as aiosmtpd names them.
_AUTH_MECHANISMS: tuple[tuple[str, str], ...] = tuple(
    (getattr(fn, "__auth_mechanism_name__", attr[len("auth_"):].replace("__", "-")), attr)
    for attr, fn in sorted(vars(AuthMechanisms).items())
    if attr.startswith("auth_") and callable(fn)
)

#: ``smtp_<VERB>`` functions of the class (aiosmtpd's and our overrides), by verb.
_COMMANDS: dict[str, Callable[[Any, str | None], Awaitable[None]]] = {
    attr[len("smtp_"):]: getattr(SmtpConnection, attr)
    for attr in dir(SmtpConnection)
    if attr.startswith("smtp_")
}

class _UniformLimits(dict[str, int]):
    """aiosmtpd's ``command_size_limits`` with one limit for every verb, shared by the
    connections of a listener instead of a ``defaultdict`` and a lambda each.

    Read-only: aiosmtpd writes to it only in its own ``smtp_EHLO``, which ours
    replaces; a write from an upgrade fails loudly instead of leaking across
    connections.  Empty, so ``max_command_size_limit`` falls back to
    ``command_size_limit`` (the same value).
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __missing__(self, key: str) -> int:
        return self.limit

    def __setitem__(self, key: str, value: int) -> None:
        raise TypeError("command size limits are shared by every connection")


@functools.cache
def _uniform_limits(limit: int) -> _UniformLimits:
    return _UniformLimits(limit)


_HOOKS: weakref.WeakKeyDictionary[Any, dict[str, Callable[..., Any]]] = \
    weakref.WeakKeyDictionary()


def _hooks_of(handler: Any) -> dict[str, Callable[..., Any]]:
    """aiosmtpd's ``handle_*`` hook table of ``handler``, built once per handler."""
    hooks = _HOOKS.get(handler)
    if hooks is None:
        hooks = {attr[len("handle_"):]: getattr(handler, attr)
                 for attr in dir(handler) if attr.startswith("handle_")}
        _HOOKS[handler] = hooks
    return hooks


class _Command:
    """One command of one connection: what aiosmtpd awaits as ``method(arg)``.

    Attribute reads (HELP's ``__smtp_syntax__``) go to the underlying function.
    """

    __slots__ = ("conn", "name", "fn")

    def __init__(self, conn: SmtpConnection, name: str, fn: Any) -> None:
        self.conn, self.name, self.fn = conn, name, fn

    def __call__(self, arg: str | None) -> Awaitable[None]:
        return self.conn.run_command(self.name, self.fn, arg)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.fn, attr)


class _CommandTable:
    """aiosmtpd's ``_smtp_methods`` mapping (``get``, ``items``), made per command
    from the class table instead of per connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: SmtpConnection) -> None:
        self.conn = conn

    def get(self, name: str, default: Any = None) -> Any:
        fn = _COMMANDS.get(name)
        return default if fn is None else _Command(self.conn, name, fn)

    def items(self) -> list[tuple[str, _Command]]:
        return [(name, _Command(self.conn, name, fn)) for name, fn in _COMMANDS.items()]


# Connection ids: unique within the process (the pid tells processes apart in
# logs); a counter, not os.urandom per connection (bench/RESULTS.md).
_conn_ids = itertools.count(1)


def next_conn_id() -> str:
    """A short id for a new connection's log lines: ``<pid hex>.<counter hex>``."""
    return f"{os.getpid():x}.{next(_conn_ids):x}"
