"""aiosmtpd behind one seam: the only module that imports aiosmtpd or touches its privates.

What aiosmtpd still does for us is the transport: its ``SMTP`` class is the
asyncio protocol (a ``StreamReaderProtocol``) and its ``smtp_STARTTLS``
upgrades the connection to TLS in place (RFC 3207: an ``SSLProtocol`` slid
under the transport; once the handshake is done its ``connection_made``
starts a new session and drops what was buffered in the clear, §4.2).
Everything that speaks SMTP is ours: the command loop, command lines and
ESMTP parameters (``protocol.smtp.command``), replies, DATA
(``protocol.smtp.data``) and AUTH (``smtp/commands.py``, ``smtp/auth.py``).

``AiosmtpdConnection`` reaches aiosmtpd's private names here and nowhere else:

* ``init_stock`` replaces ``SMTP.__init__`` (which rebuilds its command and
  AUTH tables with ``inspect`` on every connection, ~9 % of the CPU of
  one-message connections, bench/RESULTS.md) and sets the same attributes;
* ``start_stock`` is aiosmtpd's first ``connection_made`` and asyncio's under
  it in one pass, starting our command loop (``serve``) instead of aiosmtpd's;
* the idle timer (``_reset_timeout``/``_timeout_cb``) only moves a deadline
  instead of cancelling and creating a timer per read;
* ``_create_envelope`` gives our transaction when aiosmtpd resets the
  session after STARTTLS;
* ``eof_received``: aiosmtpd cancels the session at a half-close; ours lets
  the command loop answer what was sent before it.

``PINNED`` lists each private method with the signature we expect; the test
``tests/unit/test_smtp_compat.py`` checks them against the installed aiosmtpd
(and the attribute set of a stock connection against ours), so an aiosmtpd
upgrade that renames or reshapes one fails there, in one place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException, login_always_fail

if TYPE_CHECKING:
    import ssl

__all__ = ["PINNED", "AiosmtpdConnection", "Envelope", "Session", "TLSSetupException"]

# aiosmtpd logs at INFO; our structured events replace its lines.
logging.getLogger("mail.log").setLevel(logging.ERROR)

#: How early an idle timer may fire and still count (see ``_idle_check``).
_IDLE_SLACK = 0.01

#: aiosmtpd's private methods we override, or that its STARTTLS path calls on
#: us -> their parameters (after self).  Checked by test_smtp_compat.py.
PINNED: Mapping[str, tuple[str, ...]] = {
    "_reset_timeout": ("duration",),
    "_timeout_cb": (),
    "_create_envelope": (),
    "_create_session": (),
    "_set_rset_state": (),
    "_cb_client_connected": ("reader", "writer"),
}
#: The private attributes we read or set (besides those ``init_stock`` sets).
PINNED_ATTRIBUTES = ("_reader", "_writer", "_tls_protocol", "_original_transport",
                     "_handler_coroutine", "_timeout_handle", "_handle_hooks")
#: No handler hooks for aiosmtpd to call (its STARTTLS path asks for one).
_NO_HOOKS: Mapping[str, Any] = {}


class AiosmtpdConnection(SMTP):
    """aiosmtpd's ``SMTP`` as a transport, with its privates behind public names.

    A subclass provides ``serve()`` (the command loop, run as the connection's
    task), ``on_idle_timeout()`` and ``new_envelope()``.
    """

    # Ours, not aiosmtpd's: the idle timer's deadline and whether it is armed.
    _idle_deadline: float
    _idle_armed: bool

    # -- what the subclass provides -----------------------------------------------------

    async def serve(self) -> None:
        """The session: greeting, commands, until QUIT or the connection ends."""
        raise NotImplementedError

    def on_idle_timeout(self) -> None:
        """Called when the client sent nothing for the idle timeout (seconds); subclass hook."""
        raise NotImplementedError

    def new_envelope(self) -> Envelope:
        """A fresh, empty envelope (RSET, HELO/EHLO, after DATA, after STARTTLS); subclass hook."""
        raise NotImplementedError

    def init_stock(
        self,
        handler: Any,
        *,
        hostname: str,
        data_size_limit: int,
        idle_timeout: float,
        tls_context: ssl.SSLContext | None,
    ) -> None:
        """Set what ``SMTP.__init__`` sets, without its per-connection table scans."""
        loop = asyncio.get_running_loop()
        self.line_length_limit = 1 << 16  # the StreamReader's limit: we never readline()
        self.__ident__ = "ESMTP ready"
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = True
        self._decode_data = False
        self.hostname = hostname
        self.tls_context = tls_context
        self.require_starttls = False
        self._timeout_duration = idle_timeout
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
        # Our commands enforce AUTH (aiosmtpd cannot see implicit TLS as TLS).
        self._auth_require_tls = False
        self._auth_required = False
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        self._enforce_call_limit = False
        self._auth_methods = {}
        self._handle_hooks = _NO_HOOKS  # type: ignore[assignment]
        self._ehlo_hook_ver = None
        self._smtp_methods = _NO_HOOKS  # type: ignore[assignment]

    def start_stock(self, transport: asyncio.BaseTransport, *, implicit_tls: bool) -> None:
        """aiosmtpd's first ``connection_made`` (and asyncio's ``StreamReaderProtocol``'s
        under it) in one pass, starting ``serve`` as the connection's task: one
        peername lookup instead of two, and the StreamWriter handed over
        directly rather than through the ``client_connected_cb`` round trip."""
        loop = self.loop
        self.envelope = self.new_envelope()
        session = self.session = Session(loop)
        session.peer = transport.get_extra_info("peername")
        self._reset_timeout()
        reader: asyncio.StreamReader = self._strong_reader  # type: ignore[has-type]
        self._transport = transport
        reader.set_transport(transport)
        # An implicit-TLS listener's transport is the SSL one (its "sslcontext" is set).
        self._over_ssl = implicit_tls
        writer = asyncio.StreamWriter(transport, self, reader, loop)  # type: ignore[arg-type]
        self._stream_writer = self._writer = writer
        self._reader = reader
        self._strong_reader = None
        self.transport = transport
        self._handler_coroutine = loop.create_task(self.serve())

    async def start_tls(self) -> None:
        """STARTTLS (RFC 3207 §4): send ``220``, then the handshake (aiosmtpd's
        ``smtp_STARTTLS``).  On success the session starts anew (``connection_made``);
        raises ``TLSSetupException`` when the handshake fails."""
        await SMTP.smtp_STARTTLS(self, "")

    def drop_cycles(self) -> None:
        """Once the connection is closed and its task has ended, drop the
        references that tie its objects in cycles (the task and the exception
        it ended with, the stream writer pointing back here), so reference
        counting frees a finished connection at once.  Left to the cyclic
        collector, every connection was ~40 objects of garbage (bench/RESULTS.md:
        the collector's passes were ~7 % of a worker's CPU)."""
        self._handler_coroutine = None
        self._writer = None  # type: ignore[assignment]
        self._reader = None  # type: ignore[assignment]
        self._client_connected_cb = None
        self._timeout_handle = None

    # -- facts and actions, public names for private ones ------------------------------

    @property
    def tls_started(self) -> bool:
        """True once STARTTLS completed on this connection."""
        return self._tls_protocol is not None

    @property
    def raw_transport(self) -> asyncio.BaseTransport | None:
        """The TCP transport (under STARTTLS the TLS layer's is above it)."""
        return self._original_transport or self.transport

    @property
    def stream_reader(self) -> asyncio.StreamReader:
        """The connection's ``StreamReader`` (what the command loop reads from)."""
        return self._reader

    @property
    def stream_writer(self) -> asyncio.StreamWriter:
        """The connection's ``StreamWriter`` (what replies are written to)."""
        return self._writer

    @property
    def task_done(self) -> bool:
        """Whether the command loop's task ended (or never started)."""
        task = self._handler_coroutine
        return task is None or task.done()

    def data_received(self, data: bytes) -> None:
        """Bytes from the client: restart the idle timer, then buffer them for the reader."""
        # Idle means no bytes at all, so a long DATA transfer keeps the connection alive.
        self._reset_timeout()
        super().data_received(data)

    def eof_received(self) -> bool:
        """The client half-closed: the command loop reads the end of the stream and
        answers what came before it (aiosmtpd would cancel the session here).
        True keeps a TCP connection half-open for those replies; a TLS one
        cannot stay half-open (asyncio warns on True)."""
        asyncio.StreamReaderProtocol.eof_received(self)
        return self._original_transport is None and not self._over_ssl

    # -- aiosmtpd's private methods, overridden ------------------------------------------

    def _create_envelope(self) -> Envelope:
        return self.new_envelope()

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Move the idle deadline (aiosmtpd re-creates its timer each time).

        The armed timer re-arms itself for the rest when it fires early.
        ``_timeout_handle`` stays the armed (or last) timer, as aiosmtpd's
        ``connection_lost`` cancels it.
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
        self.on_idle_timeout()
