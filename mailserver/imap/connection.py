"""The thin asyncio adapter around the sans-IO receiver and the session.

Design notes
------------
* ``_Stream`` is a minimal asyncio ``Protocol`` with a byte buffer, not an
  ``asyncio.StreamReader``: STARTTLS must throw away plaintext the client
  pipelined after the command (the command-injection defence, RFC 3207 §6 and
  CVE-2011-0411), and only our own buffer can be emptied reliably just before
  the transport is handed to ``loop.start_tls``.
* Bytes go into the ``Receiver``; its events drive the session.  A
  synchronizing literal gets ``+ Ready`` (RFC 3501 §7.5); a syntax error gets
  BAD and the connection goes on, a fatal one gets BYE and the end.
* Responses are queued by ``write`` and sent by ``flush`` once per command
  (or when the queue grows past ``_PUSH_AT``): one transport write per
  command, not per line.  Every network await is under a timeout: reads under
  the autologout timer (``limits.imap_idle_timeout``, RFC 3501 §5.4), drains
  and handshakes under fixed bounds.
* Slow peers: besides autologout, each command has two total deadlines, one
  for its text (``imap_line_timeout``: time spent waiting while a line of it
  is unfinished, summed over its lines) and one for its literals
  (``imap_literal_timeout``, summed likewise), the time counterparts of
  ``imap_max_line_length`` and ``imap_max_literal_size``, which are also per
  command.  Past one the peer gets BYE and the connection ends: a line
  without its end cannot be resynchronised.  Time spent executing commands
  or waiting between them does not count.  Memory is bounded by the same
  receiver limits: an over-long line is answered BAD as soon as it crosses
  ``imap_max_line_length`` (LF or not) and the rest of it is dropped as it
  arrives (``protocol.imap.receiver``).
* Closing never waits on the client: a graceful close (``transport.close``)
  sends what is buffered first, which a client that stops reading never lets
  happen, so ``_Stream.close`` aborts the transport if it is not gone within
  ``close_bound`` (the write timeout, at most the autologout time); a
  connection cancelled at the end of the shutdown grace is aborted at once.
  The SMTP side does the same (``close_soon`` in ``smtp.adapter``).
* ``interruptible`` is True while waiting for the next command (and in IDLE):
  a server shutdown then says ``* BYE`` and closes at once; otherwise it waits
  for the command in flight to finish.
* COMPRESS=DEFLATE (RFC 4978) lives here and nowhere else: after the tagged
  OK has gone out uncompressed, every byte we send passes one raw-deflate
  stream (``wbits=-15``) flushed with ``Z_SYNC_FLUSH`` at each push (§4: the
  client can decode every response batch as soon as it arrives), and every
  byte read passes one raw-inflate stream.  Inflation is done in slices of
  ``_INFLATE_SLICE`` octets so that a small "deflate bomb" never becomes more
  than one slice in memory: the receiver's own limits judge the rest.  With
  TLS, compression sits inside it (we compress, then the transport
  encrypts), the order §6 asks for.  Everything we write goes through
  ``write``/``_push``, so nothing can bypass the compressor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
import zlib
from typing import Any

import structlog

from mailserver.config import Listener
from mailserver.errors import ProtocolSyntaxError
from mailserver.imap.session import TABLE, ImapSession
from mailserver.imap.state import CloseConnection, State
from mailserver.metrics import instruments
from mailserver.protocol.imap.receiver import Receiver, Receiving
from mailserver.protocol.imap.response import continuation, tagged, untagged
from mailserver.protocol.imap.types import NEED_DATA, Command, Line, NeedContinuation
from mailserver.services import Services

#: Queued response bytes that are handed to the transport without waiting for
#: the end of the command (a big FETCH).
_PUSH_AT = 256 * 1024
#: Input buffered beyond this pauses reading from the socket (back-pressure).
_READ_HIGH_WATER = 1 << 20
#: After our last reply, how long (seconds) the peer's input is read and
#: dropped before the socket closes (see ``_Stream.close``).
_LINGER = 2.0
#: Bounds on writing to a client that does not read, and on TLS handshakes.
_WRITE_TIMEOUT = 120.0
_HANDSHAKE_TIMEOUT = 30.0
#: Largest piece of inflated input handed to the receiver at once (RFC 4978).
_INFLATE_SLICE = 64 * 1024


class WriteTimeout(ConnectionError):
    """The client did not take our output within the write bound."""


class _Gone:
    """What a finished session's ``conn`` is: any use of it is a bug, said loudly."""

    def __getattr__(self, name: str) -> Any:
        raise ConnectionResetError(f"connection already closed (used {name!r})")


_GONE: Any = _Gone()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    """Resolve a ``_Stream`` waiter if one waits (and is not done already)."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _Stream(asyncio.Protocol):
    """A buffered byte stream over one transport (plain or TLS)."""

    def __init__(self, on_made: object) -> None:
        self._on_made = on_made
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._eof = False
        # One future at a time, made only while someone waits: three
        # asyncio.Events cost ~2.3 KB per connection, 23 MB per 10,000 idle ones.
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._paused = False
        #: True once the transport is really gone (``connection_lost``).
        self.gone = False
        self._abort_timer: asyncio.TimerHandle | None = None
        #: Half-closed by us: input is dropped until the peer closes (``close``).
        self._lingering: asyncio.TimerHandle | None = None

    # -- protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._on_made(self)  # type: ignore[operator]

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:
            return  # after our last reply: dropped unread
        self._buf += data
        _wake(self._read_waiter)
        if len(self._buf) > _READ_HIGH_WATER and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        _wake(self._read_waiter)
        if self._lingering is not None:
            return False  # the peer has closed too: close now
        # Keep a plain socket open after the client's half-close so the
        # replies to what it sent last (e.g. LOGOUT) still go out; we close it.
        # TLS transports cannot stay half-open (asyncio would only warn).
        return self.transport is not None and self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self.gone = True
        self._write_paused = False
        _wake(self._read_waiter)
        _wake(self._drain_waiter)
        _wake(self._lost_waiter)
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        if self._lingering is not None:
            self._lingering.cancel()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        _wake(self._drain_waiter)

    # -- our side
    @property
    def closed(self) -> bool:
        return self._eof or self.transport is None or self.transport.is_closing()

    async def read(self) -> bytes:
        """Whatever has arrived (waiting for something), or ``b""`` at EOF."""
        while not self._buf:
            if self._eof:
                return b""
            await self._wait("_read_waiter")
        data = bytes(self._buf)
        self._buf.clear()
        if self._paused and self.transport is not None and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()
        return data

    def discard(self) -> None:
        """Forget buffered input (STARTTLS)."""
        self._buf.clear()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def ready(self) -> bool:
        """``drain`` would return at once: writing is not paused and the
        transport is open (``drain`` raises once it is closing)."""
        return (not self._write_paused and self.transport is not None
                and not self.transport.is_closing())

    async def drain(self) -> None:
        """Wait until the transport takes more output (``resume_writing``);
        ConnectionResetError once it is closing."""
        while self._write_paused:
            await self._wait("_drain_waiter")
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("connection closed")

    def close(self, within: float | None = None) -> None:
        """Close gracefully (buffered output goes first); with ``within``, abort
        the transport if it is still there that many seconds later."""
        transport = self.transport
        if transport is None:
            return
        if (self._lingering is None and not self._eof and not transport.is_closing()
                and transport.can_write_eof()):
            # A lingering close: closing a socket whose input was not all read
            # sends RST, and an RST can destroy our last reply (a BYE) in the
            # peer's receive buffer before it is read (RFC 9112 §9.6 says the
            # same for HTTP).  So half-close (the peer sees our FIN after the
            # BYE), drop its input until it closes or ``_LINGER`` passes, then close.
            self._buf.clear()
            if self._paused:
                self._paused = False
                transport.resume_reading()
            transport.write_eof()
            self._lingering = asyncio.get_running_loop().call_later(_LINGER, transport.close)
        else:
            transport.close()
        if within is not None and not self.gone and self._abort_timer is None:
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(within, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._abort_timer = None
        if not self.gone:
            self.abort()

    def abort(self) -> None:
        """Drop the connection now, buffered output and all."""
        if self.transport is not None and not self.gone:
            self.transport.abort()

    async def wait_lost(self) -> None:
        """Return once the transport is really gone (``connection_lost``)."""
        while not self.gone:
            await self._wait("_lost_waiter")

    async def _wait(self, slot: str) -> None:
        """Wait for the future in ``slot`` (made now unless one is pending),
        shared by every waiter: a waiter's cancellation does not cancel it."""
        fut: asyncio.Future[None] | None = getattr(self, slot)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            setattr(self, slot, fut)
        try:
            await asyncio.shield(fut)
        finally:
            if fut.done() and getattr(self, slot) is fut:
                setattr(self, slot, None)


class Connection:
    """One client connection: receiver + session + stream (RFC 3501 §2.2).

    ``run()`` serves it until LOGOUT, EOF, a fatal error, autologout or
    shutdown; it never raises for network trouble.
    """

    def __init__(self, stream: _Stream, services: Services, listener: Listener, *,
                 conn_id: str, peer: str) -> None:
        self.stream = stream
        self.services = services
        self.listener = listener
        self.limits = services.config.limits
        self.peer = peer
        self.tls = listener.tls == "implicit"
        try:
            self.loopback = ipaddress.ip_address(peer.split("%")[0]).is_loopback
        except ValueError:
            self.loopback = False
        self.interruptible = False
        self.log = structlog.get_logger("mailserver.imap").bind(conn_id=conn_id, peer=peer)
        self.receiver = self._new_receiver()
        self.session = ImapSession(services, listener, self, self.log)
        # Seconds spent waiting for the current command's text / literals.
        self._line_spent = 0.0
        self._literal_spent = 0.0
        self._out: list[bytes] = []
        self._out_size = 0
        self._shutdown = False
        #: Longest wait for the client to take our output: a write, or the
        #: graceful close (RFC 3501 §5.4 autologout bounds any wait on it).
        self.close_bound = min(self.limits.imap_idle_timeout, _WRITE_TIMEOUT)
        # RFC 4978 streams, both None until COMPRESS DEFLATE succeeded.
        self._deflate: zlib._Compress | None = None
        self._inflate: zlib._Decompress | None = None

    def _new_receiver(self) -> Receiver:
        return Receiver(self.limits.imap_max_line_length, self.limits.imap_max_literal_size,
                        self.limits.imap_max_nesting)

    @property
    def compressing(self) -> bool:
        """COMPRESS=DEFLATE is active (RFC 4978 §3)."""
        return self._deflate is not None

    async def start_compress(self) -> None:
        """Start DEFLATE both ways, right after the tagged OK of COMPRESS went
        out uncompressed (RFC 4978 §3).  Octets the receiver already holds
        arrived before that OK and stay as they are."""
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        self.log.info("imap_compress", algorithm="DEFLATE")

    def enable_utf8(self) -> None:
        """Mailbox names in commands are UTF-8 from the next command on
        (``ENABLE UTF8=ACCEPT``, RFC 6855 §3; ``ENABLE IMAP4rev2``, RFC 9051 §5.1)."""
        self.receiver.utf8 = True

    # ------------------------------------------------------- Conn protocol

    def tls_available(self) -> bool:
        return self.listener.tls == "starttls" and not self.tls

    def ssl_object(self) -> Any:
        """The connection's ``ssl.SSLObject`` (SCRAM channel binding), None without TLS."""
        transport = self.stream.transport
        return None if transport is None else transport.get_extra_info("ssl_object")

    def write(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= _PUSH_AT:
            self._push()

    def _push(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            if self._deflate is not None:
                # Z_SYNC_FLUSH: the batch is decodable on arrival (RFC 4978 §4).
                data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
            self.stream.write(data)

    async def flush(self) -> None:
        """Send what is queued and wait until the transport has taken it.
        Raises ``WriteTimeout`` (a ``ConnectionError``) when the client has not
        taken it within ``close_bound`` seconds."""
        self._push()
        if self.stream.ready():
            return  # the transport took it: no timer to arm and cancel per command
        try:
            async with asyncio.timeout(self.close_bound):
                await self.stream.drain()
        except TimeoutError:
            # Not an autologout: the client stopped reading, no BYE would reach it.
            raise WriteTimeout("client does not read its responses") from None

    async def read_line(self) -> bytes | None:
        """The next raw line (IDLE's DONE, an AUTHENTICATE response), ``None``
        at EOF.  Raises ``ProtocolSyntaxError`` for an over-long line and
        ``TimeoutError`` after the autologout time."""
        self.receiver.expect_line()
        while True:
            event = self.receiver.next_event()
            if isinstance(event, Line):
                self._command_done()
                return event.data
            if event is not NEED_DATA:  # expect_line guarantees a Line next
                raise RuntimeError(f"unexpected receiver event {event!r}")
            if not await self._fill():
                return None

    async def start_tls(self) -> None:
        """Upgrade to TLS after ``OK`` to STARTTLS (RFC 3501 §6.2.1).

        Input pipelined behind the command is discarded: both the receiver's
        buffer and ours, right before the transport stops reading.
        """
        utf8 = self.receiver.utf8
        self.receiver = self._new_receiver()
        self.receiver.utf8 = utf8
        self._command_done()
        self.stream.discard()
        transport = self.stream.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(_HANDSHAKE_TIMEOUT):
            new = await loop.start_tls(transport, self.stream, self.services.ssl_context,
                                       server_side=True)
        if new is None:
            raise ConnectionResetError("TLS handshake failed")
        self.stream.transport = new
        self.tls = True
        self.log.info("imap_starttls")

    # -------------------------------------------------------------- serving

    def _command_done(self) -> None:
        """A command (or raw line) is complete: the next one has its own deadlines."""
        self._line_spent = self._literal_spent = 0.0

    def _wait_bound(self) -> tuple[float, Receiving]:
        """How long the next read may wait, and what the receiver is in the
        middle of: the autologout time, cut to what is left of the current
        command's line or literal deadline."""
        idle = self.limits.imap_idle_timeout
        kind = self.receiver.receiving
        if kind is Receiving.NOTHING:
            self._command_done()
            return idle, kind
        if kind is Receiving.LITERAL:
            left = self.limits.imap_literal_timeout - self._literal_spent
        else:
            left = self.limits.imap_line_timeout - self._line_spent
        return max(0.0, min(idle, left)), kind

    async def _fill(self) -> bool:
        """Read more input into the receiver; False at EOF.  Autologout timer
        and the command's deadlines (``_wait_bound``): past a deadline the
        peer gets BYE and ``CloseConnection`` is raised.

        Under COMPRESS the input is inflated one slice at a time; what is left
        of a slice is served by the next call before the socket is read again.
        Input that does not inflate ends the session with BYE (RFC 4978 §4
        leaves no way to resynchronise)."""
        inflate = self._inflate
        if inflate is not None and inflate.unconsumed_tail:
            self.receiver.feed(self._inflated(inflate.unconsumed_tail))
            return True
        bound, kind = self._wait_bound()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(bound):
                data = await self.stream.read()
        except TimeoutError:
            if kind is Receiving.NOTHING or bound >= self.limits.imap_idle_timeout:
                raise  # autologout
            what = "Literal" if kind is Receiving.LITERAL else "Command line"
            self.log.info("imap_deadline", receiving=kind.value)
            self.write(untagged(f"BYE {what} took too long"))
            raise CloseConnection() from None
        finally:
            if kind is Receiving.LITERAL:
                self._literal_spent += loop.time() - started
            elif kind is Receiving.LINE:
                self._line_spent += loop.time() - started
        if not data:
            return False
        if inflate is not None:
            data = self._inflated(data)
        self.receiver.feed(data)
        return True

    def _inflated(self, data: bytes) -> bytes:
        assert self._inflate is not None
        try:
            out = self._inflate.decompress(data, _INFLATE_SLICE)
        except zlib.error:
            self.log.info("imap_compress_error")
            self.write(untagged("BYE Invalid compressed data"))
            raise CloseConnection() from None
        if self._inflate.eof:  # the client ended its deflate stream: nothing can follow
            self.write(untagged("BYE Compressed stream ended"))
            raise CloseConnection()
        return out

    def request_shutdown(self) -> None:
        """Server shutdown: BYE now if between commands, else after the current one."""
        self._shutdown = True
        if self.interruptible:
            self.write(untagged("BYE Server shutting down"))
            self._push()
            self.stream.close(self.close_bound)

    async def run(self) -> None:
        self.log.info("imap_connect", listener=self.listener.name, tls=self.tls)
        cancelled = False
        try:
            self.write(untagged(f"OK [CAPABILITY {self.session.capabilities()}] "
                                f"{self.services.config.hostname} ready"))
            await self.flush()
            await self._loop()
        except TimeoutError:
            self.write(untagged("BYE Autologout; idle for too long"))
        except CloseConnection:
            pass
        except asyncio.CancelledError:
            cancelled = True  # the shutdown grace is over: no more waiting
            raise
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            self.log.info("imap_connection_lost", error=str(exc) or type(exc).__name__)
        except Exception:  # noqa: BLE001 - one broken connection must not take others down
            self.log.exception("imap_connection_failed")
            self.write(untagged("BYE Internal error"))
        finally:
            if cancelled:
                self.stream.abort()
            else:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    self._push()
                self.stream.close(self.close_bound)
            self.log.info("imap_disconnect")
            # ImapSession and connection point at each other: cut that, so the
            # finished connection goes with its last reference rather than
            # waiting for the cyclic collector.
            self.session.conn = _GONE

    async def _loop(self) -> None:
        in_command = False  # a synchronizing literal was invited: mid-command
        while self.session.state is not State.LOGOUT:
            if self._shutdown and not in_command:
                self.write(untagged("BYE Server shutting down"))
                return
            try:
                event = self.receiver.next_event()
            except ProtocolSyntaxError as exc:
                in_command = False
                self._syntax_error(exc)
                await self.flush()
                if exc.fatal:
                    return
                continue
            if event is NEED_DATA:
                self.interruptible = not in_command
                try:
                    if not await self._fill():
                        return
                finally:
                    self.interruptible = False
                continue
            if isinstance(event, NeedContinuation):
                in_command = True
                self.write(continuation("Ready for literal data"))
                await self.flush()
                continue
            in_command = False
            self._command_done()
            if isinstance(event, Line):  # only after expect_line(); cannot happen here
                continue
            assert isinstance(event, Command)
            started = time.perf_counter()
            try:
                await self.session.execute(event)
            finally:
                after, self.session.after_reply = self.session.after_reply, None
            _command_timer(event.name).observe(time.perf_counter() - started)
            await self.flush()
            if after is not None:
                await after()
                await self.flush()

    def _syntax_error(self, exc: ProtocolSyntaxError) -> None:
        """BAD for input that does not parse (RFC 3501 §7.1.3); an over-size
        literal is ``NO [TOOBIG]`` (RFC 5530 §3), a fatal error also BYE."""
        if exc.tag is not None:
            if exc.text.startswith("Literal too big"):
                self.write(tagged(exc.tag, "NO", "Literal too big", "TOOBIG"))
            else:
                self.write(tagged(exc.tag, "BAD", exc.text))
        else:
            self.write(untagged("BAD " + exc.text))
        if exc.fatal:
            self.write(untagged("BYE " + exc.text))


def _command_timer(name: str) -> Any:
    """The duration histogram of command ``name``; names we do not implement
    share "OTHER" (a client cannot grow the label set)."""
    m = instruments()
    timer = m.imap_commands.get(name)
    if timer is None:
        # Keyed by the label only: a client's made-up names must not grow the dict.
        label = name if name in TABLE else "OTHER"
        timer = m.imap_commands.get(label)
        if timer is None:
            timer = m.imap_commands[label] = m.imap_command_seconds.labels(label)
    return timer
