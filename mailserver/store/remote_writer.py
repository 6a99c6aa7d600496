"""A worker's writer: the same interface as ``Writer``, the work done by the
supervisor's writer service (``writer_service.py``).

``submit(fn, *args, weight=...)`` sends the request over one unix stream
connection and returns what the service's ``Writer`` returned (or raises what
it raised) once the service has replied, i.e. after the synced commit.

Ordering (as ``writer.py``): a reply carries every mailbox id its round
changed; they go to ``on_changes`` (the change feed's ``notify``) before the
caller's future is resolved, so this process's waiters are woken before the
caller hears "done" (the round's change-feed datagram skips this process).
Processes without a request in the round heard the commit on the change feed
before the service replied.

Failure: if the connection breaks (the service closed it, or a frame cannot
be read), every pending request fails with ``TemporaryFailure`` (SMTP 451,
IMAP ``NO [UNAVAILABLE]``, ``errors.py``) — its commit may or may not have
happened, and nothing was acknowledged — and the next ``submit`` connects
again.  A connect that fails is a ``TemporaryFailure`` too.  A caller
cancelled while waiting does not cancel the request: it may still commit,
as with ``Writer`` once its round began.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from mailserver.errors import MailserverError, TemporaryFailure
from mailserver.store import writer_wire as wire

T = TypeVar("T")

#: Seconds a connect to the writer service may take.
CONNECT_TIMEOUT = 10.0


class _Connection(asyncio.Protocol):
    def __init__(self, owner: RemoteWriter) -> None:
        self._owner = owner
        self._decoder = wire.FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's: no isinstance.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._decoder.feed(data)
        try:
            while (body := self._decoder.next_frame()) is not None:
                self._reply(wire.decode_reply(body))
        except wire.WireError as exc:
            self._fail(f"writer service sent a bad frame: {exc}")

    def _reply(self, reply: wire.WriteReply) -> None:
        if reply.changed:
            self._owner.on_changes(reply.changed)
        fut = self.pending.pop(reply.rid, None)
        if fut is None or fut.done():
            return
        if reply.ok:
            fut.set_result(reply.value)
        else:
            fut.set_exception(reply.value)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("connection to the writer service lost")

    def _fail(self, text: str) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self._owner.lost(self)
        pending, self.pending = self.pending, {}
        if pending:
            # Their replies would have carried the changes of their rounds (the
            # change feed skipped this process for them): let waiters look again.
            self._owner.on_lost()
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(TemporaryFailure(text))


class RemoteWriter:
    """``Writer``'s interface over the writer service at ``address``.

    ``on_changes(ids)`` runs on the loop with each reply's changed mailbox
    ids, before the caller's future is resolved.  ``on_lost()`` runs when the
    connection fails with requests in flight: the changes their replies would
    have carried are unknown (the change feed's ``notify_all``).
    """

    def __init__(self, address: str, loop: asyncio.AbstractEventLoop,
                 on_changes: Callable[[frozenset[int]], None],
                 on_lost: Callable[[], None] = lambda: None) -> None:
        self._address = address
        self._loop = loop
        self.on_changes = on_changes
        self.on_lost = on_lost
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._closed = False
        #: Commits made by this process: none, the service commits (``Store.commits``).
        self.commits = 0
        #: Requests answered OK.
        self.requests = 0

    async def submit(self, fn: Callable[..., T], *args: Any, weight: int = 0) -> T:
        """Run ``fn(ctx, *args)`` in the service's next group commit; return its
        result once committed and synced, or raise what it raised."""
        if self._closed:
            raise MailserverError("store is closed")
        rid = next(self._ids)
        parts = wire.encode_request(rid, fn, args, weight)
        conn = self._conn
        if conn is None or conn.transport is None:
            conn = await self._connection()
        transport = conn.transport
        if transport is None:
            raise TemporaryFailure("connection to the writer service lost")
        fut = self._loop.create_future()
        conn.pending[rid] = fut
        # Head and message as they are: no concatenation of the message.
        transport.writelines(parts)
        result: T = await fut
        self.requests += 1
        return result

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.transport is not None:
            return conn
        async with self._connecting:
            if self._conn is None or self._conn.transport is None:
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        _, proto = await self._loop.create_unix_connection(
                            lambda: _Connection(self), self._address)
                except (OSError, TimeoutError) as exc:
                    raise TemporaryFailure(f"writer service unreachable: {exc}") from None
                self._conn = proto
            return self._conn

    def lost(self, conn: _Connection) -> None:
        """Called by ``conn`` when its socket closes: the next submit connects again."""
        if self._conn is conn:
            self._conn = None

    async def close(self) -> None:
        """Wait for the replies in flight, then close the connection."""
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        if conn is None:
            return
        if conn.pending:
            await asyncio.gather(*conn.pending.values(), return_exceptions=True)
        if conn.transport is not None:
            conn.transport.close()
        self._conn = None
