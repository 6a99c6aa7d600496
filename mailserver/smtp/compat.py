"""aiosmtpd behind one seam: the only module that imports aiosmtpd or touches its privates.

``AiosmtpdConnection`` is aiosmtpd's ``SMTP`` with every private attribute and
private method we rely on used here and nowhere else; ``adapter.py`` (the
connection) and ``auth.py`` (AUTH) use only the public names below.  What we
do with aiosmtpd's internals, and why:

* ``init_stock`` replaces ``SMTP.__init__``: aiosmtpd rebuilds its command and
  AUTH tables with ``inspect.getmembers()``/``dir()`` on every connection (~9 %
  of the CPU of one-message connections, bench/RESULTS.md); we set the same
  attributes from tables built once per class and per handler.
* ``start_stock`` is aiosmtpd's first ``connection_made`` and asyncio's
  ``StreamReaderProtocol``'s under it in one pass.
* The idle timer (``_reset_timeout``/``_timeout_cb``) only moves a deadline
  instead of cancelling and creating a timer per command.
* ``_handle_client`` (its command loop) is wrapped so a refused connection never
  sees the greeting and every ended session closes with a bounded wait.
* ``_getaddr`` (path parsing), ``_create_envelope`` and the DATA bookkeeping
  (``_set_rset_state``, ``_set_post_data_state``, ``_call_handler_hook``) are
  reached through ``parse_path``/``new_envelope``/``reset_transaction``/
  ``end_data``/``call_hook``.

``PINNED`` lists each private name with the signature we expect; the test
``tests/unit/test_smtp_compat.py`` checks them against the installed aiosmtpd
(and the attribute set of a stock connection against ours), so an aiosmtpd
upgrade that renames or reshapes one fails there, in one place.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    Session,
    TLSSetupException,
    _AuthMechAttr,
    login_always_fail,
    syntax,
)

if TYPE_CHECKING:
    import ssl

__all__ = [
    "MISSING", "PINNED", "AiosmtpdConnection", "AuthResult", "Envelope", "Session",
    "TLSSetupException", "syntax",
]

# aiosmtpd logs every command at INFO and warns on each AUTH about a
# deprecated attribute it sets itself; our structured events replace them.
logging.getLogger("mail.log").setLevel(logging.ERROR)

#: How early an idle timer may fire and still count (see ``_idle_check``).
_IDLE_SLACK = 0.01

#: aiosmtpd's private methods we override or call -> their parameters (after self),
#: as the installed aiosmtpd must declare them.  Checked by test_smtp_compat.py.
PINNED: Mapping[str, tuple[str, ...]] = {
    "_handle_client": (),
    "_reset_timeout": ("duration",),
    "_timeout_cb": (),
    "_create_envelope": (),
    "_getaddr": ("arg",),
    "_set_rset_state": (),
    "_set_post_data_state": (),
    "_call_handler_hook": ("command", "args"),
    "_strip_command_keyword": ("keyword", "arg"),
    "_cb_client_connected": ("reader", "writer"),
}
#: ``_AuthMechAttr``'s fields, as we build it.
PINNED_AUTH_MECH_FIELDS = ("method", "is_builtin")


class AiosmtpdConnection(SMTP):
    """aiosmtpd's ``SMTP`` with its privates reached through public names (module doc).

    A subclass provides ``admit_session()``, ``session_ended()``,
    ``on_idle_timeout()``, ``new_envelope()``, ``parse_path(arg)`` and
    ``run_command(name, fn, arg)``.
    """

    # Ours, not aiosmtpd's: the idle timer's deadline and whether it is armed.
    _idle_deadline: float
    _idle_armed: bool

    # -- what the subclass provides -----------------------------------------------------

    async def admit_session(self) -> bool:
        """Whether the command loop may start (False: the subclass answered already)."""
        raise NotImplementedError

    def session_ended(self) -> None:
        """The command loop ended, however (QUIT, error, cancelled)."""
        raise NotImplementedError

    def on_idle_timeout(self) -> None:
        raise NotImplementedError

    def new_envelope(self) -> Envelope:
        raise NotImplementedError

    def parse_path(self, arg: str) -> tuple[str | None, str | None]:
        """MAIL/RCPT path parsing (RFC 5321 §4.1.2); ``stock_getaddr`` is aiosmtpd's."""
        return self.stock_getaddr(arg)

    async def run_command(
        self, name: str, method: Callable[[Any, str | None], Awaitable[None]], arg: str | None
    ) -> None:
        """Run one ``smtp_<name>`` method (a subclass wraps it)."""
        await method(self, arg)

    def init_stock(
        self,
        handler: Any,
        *,
        hostname: str,
        data_size_limit: int,
        line_length_limit: int,
        idle_timeout: float,
        tls_context: ssl.SSLContext | None,
        auth_mechanisms: Mapping[str, str],
    ) -> None:
        """Set what ``SMTP.__init__`` sets, from tables built once.

        ``auth_mechanisms``: AUTH mechanism name -> method attribute (empty: no AUTH).
        """
        loop = asyncio.get_running_loop()
        self.line_length_limit = line_length_limit
        self.__ident__ = "ESMTP ready"
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=loop, limit=line_length_limit),
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
        # AUTH is enforced by our code (aiosmtpd cannot see implicit TLS as TLS).
        self._auth_require_tls = False
        self._auth_required = False
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        self._enforce_call_limit = False
        self._auth_methods = {
            name: _AuthMechAttr(getattr(self, attr), True) for name, attr in auth_mechanisms.items()
        }
        self._handle_hooks = _hooks_of(handler)
        self._ehlo_hook_ver = None  # our handler has no handle_EHLO
        self._smtp_methods = _CommandTable(self)  # type: ignore[assignment]

    def start_stock(self, transport: asyncio.BaseTransport, *, implicit_tls: bool) -> None:
        """aiosmtpd's first ``connection_made`` (and asyncio's ``StreamReaderProtocol``'s
        under it) in one pass: one peername lookup instead of two, no log call to a
        silenced logger, and the StreamWriter handed over directly rather than
        through the ``client_connected_cb`` round trip."""
        loop = self.loop
        self.envelope = self.new_envelope()  # _set_rset_state
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
        self._handler_coroutine = loop.create_task(self._handle_client())

    def drop_cycles(self) -> None:
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
        return self._reader

    @property
    def stream_writer(self) -> asyncio.StreamWriter:
        return self._writer

    @property
    def task_done(self) -> bool:
        """Whether the command loop's task ended (or never started)."""
        task = self._handler_coroutine
        return task is None or task.done()

    @property
    def auth_mechanism_names(self) -> list[str]:
        return sorted(self._auth_methods)

    def reset_transaction(self) -> None:
        """A new, empty transaction (RSET, EHLO: RFC 5321 §4.1.4)."""
        self._set_rset_state()

    def end_data(self) -> None:
        """The transaction is over after DATA's reply (RFC 5321 §4.1.1.4)."""
        self._set_post_data_state()

    async def call_hook(self, command: str, *args: Any) -> Any:
        """The handler's ``handle_<command>`` (``MISSING`` when it has none)."""
        return await self._call_handler_hook(command, *args)

    def strip_keyword(self, keyword: str, arg: str) -> str | None:
        """``arg`` without the leading ``keyword`` ("FROM:"), None if it lacks it."""
        return self._strip_command_keyword(keyword, arg)

    def stock_getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's lenient path parser (RFC 5322 forms)."""
        return SMTP._getaddr(self, arg)

    def data_received(self, data: bytes) -> None:
        # Idle means no bytes at all, so a long DATA transfer keeps the connection alive.
        self._reset_timeout()
        super().data_received(data)

    # -- aiosmtpd's private methods, overridden ------------------------------------------

    def _create_envelope(self) -> Envelope:
        return self.new_envelope()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        return self.parse_path(arg)

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
        self.on_idle_timeout()

    async def _handle_client(self) -> None:
        if not await self.admit_session():
            return
        try:
            await super()._handle_client()
        finally:
            self.session_ended()


# -- tables built once (see init_stock) ---------------------------------------------


_Commands = dict[str, Callable[[Any, str | None], Awaitable[None]]]
_COMMANDS: dict[type, _Commands] = {}


def _commands_of(cls: type) -> _Commands:
    """``smtp_<VERB>`` functions of ``cls`` (aiosmtpd's and overrides), by verb; once per class."""
    found = _COMMANDS.get(cls)
    if found is None:
        found = _COMMANDS[cls] = {
            attr[len("smtp_"):]: getattr(cls, attr) for attr in dir(cls) if attr.startswith("smtp_")
        }
    return found


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
def uniform_limits(limit: int) -> _UniformLimits:
    """The shared, read-only ``command_size_limits`` mapping for ``limit``."""
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

    def __init__(self, conn: Any, name: str, fn: Any) -> None:
        self.conn, self.name, self.fn = conn, name, fn

    def __call__(self, arg: str | None) -> Awaitable[None]:
        return self.conn.run_command(self.name, self.fn, arg)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.fn, attr)


class _CommandTable:
    """aiosmtpd's ``_smtp_methods`` mapping (``get``, ``items``), made per command
    from the class table instead of per connection."""

    __slots__ = ("conn", "commands")

    def __init__(self, conn: AiosmtpdConnection) -> None:
        self.conn = conn
        self.commands = _commands_of(type(conn))

    def get(self, name: str, default: Any = None) -> Any:
        fn = self.commands.get(name)
        return default if fn is None else _Command(self.conn, name, fn)

    def items(self) -> list[tuple[str, _Command]]:
        return [(name, _Command(self.conn, name, fn)) for name, fn in self.commands.items()]
