"""The writer service: one group-commit writer for every worker process.

Why: with ``workers = N`` each worker used to run its own ``Writer``; LMDB
lets one write transaction run at a time across processes, so the writers
took turns on the lock file, each round waited for the other process's
commit and fsync, and batches stayed small.  Now the supervisor runs the
only ``Writer`` of the daemon and this service in front of it; the workers'
stores send their requests here (``remote_writer.py``), so requests from
every worker share one round and one fsync, and no process waits on another
one's write lock.

Transport: a unix stream socket ``data_dir/run/writer.stream``
(``writer_wire.SERVICE_NAME``), frames as ``writer_wire.py`` describes; one
connection per worker, requests and replies multiplexed by request id and
answered in commit order.  Requests carry pickles, so only the daemon's user
may connect: the directory is made 0700, the socket 0600, and each peer's
uid (``SO_PEERCRED``, unix(7)) must be ours, else the connection is closed.

Invariants (those of ``writer.py``, across processes):

* A reply is written only after the round's commit returned (synced): the
  ``Writer`` resolves the request's future only then.
* Before any reply of a round is written, the writer has sent the round's
  changed ids on the change feed to every other process that has no
  request in the round; every reply of the round (a failure's too) carries
  all the round's changed ids, which the caller's process hands to its local
  waiters before the caller's future is resolved.  A request's process is
  known by its connection's pid (``SO_PEERCRED``), the feed's sockets by the
  pid in their names.  So an IDLE in any worker hears every change,
  and a client that got OK and asks another session sees the change.

Failure modes:

* A worker that dies (or closes) with requests in flight: their requests
  still commit (the worker never answered its client, so nothing
  acknowledged depends on them either way); the replies are dropped.
* A peer that stops reading: once more than ``MAX_UNREAD`` octets of replies
  wait for it, its connection is cut, so the service never blocks on it.
* A frame that cannot be read (length over the limit, short header): that
  connection is cut; a request whose body does not decode gets a
  ``TemporaryFailure`` reply and the connection lives on.
* The supervisor dying ends the workers anyway (their stdin lifeline).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import struct
from pathlib import Path
from typing import Any, cast

import structlog

from mailserver.errors import MailserverError, TemporaryFailure
from mailserver.store import writer_wire as wire
from mailserver.store.feed import unix_address
from mailserver.store.writer import Outcome, Writer

log = structlog.get_logger("mailserver.store.writer_service")

#: Octets of unread replies after which a peer's connection is cut.
MAX_UNREAD = 64 * 1024 * 1024
_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_credentials(sock: Any) -> tuple[int, int]:
    """``(pid, uid)`` of the process at the other end of a unix socket
    (SO_PEERCRED, unix(7)); raises ``OSError``."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS.size)
    pid, uid, _ = _CREDS.unpack(raw)
    return int(pid), int(uid)


def peer_uid(sock: Any) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    return peer_credentials(sock)[1]


def make_private_dir(path: Path) -> None:
    """``path`` exists, belongs to us and is 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


class _Connection(asyncio.Protocol):
    """One worker's connection: requests in, replies out."""

    def __init__(self, service: WriterService) -> None:
        self._service = service
        self._decoder = wire.FrameDecoder()
        self._transport: asyncio.Transport | None = None
        self._pid = 0  # the peer's (SO_PEERCRED): its requests' ``origin``
        # Replies of one round are resolved in one loop pass: one write for them.
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's: no isinstance.
        transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        try:
            self._pid, uid = peer_credentials(sock)
        except OSError:
            uid = -1
        if uid != os.geteuid():
            log.warning("writer_peer_refused", peer_uid=uid)
            transport.abort()
            return
        self._transport = transport
        self._service.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._service.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        self._decoder.feed(data)
        while True:
            try:
                body = self._decoder.next_frame()
                if body is None:
                    return
                self._request(body)
            except wire.BadRequest as exc:
                self._send(wire.encode_reply(exc.rid, False, _temporary(exc)))
            except wire.WireError as exc:
                log.warning("writer_peer_dropped", error=str(exc))
                self._abort()
                return

    def _request(self, body: bytes) -> None:
        req = wire.decode_request(body)
        try:
            self._service.writer.enqueue_call(
                req.fn, req.args, weight=req.weight, origin=self._pid,
                on_done=functools.partial(self._settled, req.rid))
        except MailserverError as exc:  # the writer is closing
            self._send(wire.encode_reply(req.rid, False, exc))
            return
        self._service.requests += 1

    def _settled(self, rid: int, outcome: Outcome) -> None:
        if self._transport is None:  # the peer is gone: nobody to tell
            return
        self._send(wire.encode_reply(rid, outcome.ok, outcome.value, outcome.changed))

    def _send(self, frame: bytes) -> None:
        if self._transport is None:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
            self._service.unflushed.add(self)
        self._out.append(frame)

    def _flush(self) -> None:
        self._service.unflushed.discard(self)
        transport = self._transport
        out, self._out = self._out, []
        if transport is None or not out:
            return
        transport.writelines(out)
        if transport.get_write_buffer_size() > MAX_UNREAD:
            log.warning("writer_peer_dropped", error="peer does not read its replies")
            self._abort()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
            self._transport = None


def _temporary(exc: Exception) -> MailserverError:
    return TemporaryFailure(str(exc))


class WriterService:
    """Serves ``writer`` on ``run_dir/writer.stream`` (see the module docstring).

    ``await WriterService.start(writer, run_dir)``; ``await close()`` stops
    accepting and drops the connections (call it after the workers exited;
    the writer itself is closed by its ``Store``).
    """

    def __init__(self, writer: Writer, dir_fd: int) -> None:
        self.writer = writer
        self.connections: set[_Connection] = set()
        #: Connections with replies not written yet (see ``flush_replies``).
        self.unflushed: set[_Connection] = set()
        writer.after_settle = self.flush_replies
        #: Requests taken from workers (for the log and tests).
        self.requests = 0
        self._server: asyncio.AbstractServer | None = None
        self._dir_fd = dir_fd

    @classmethod
    async def start(cls, writer: Writer, run_dir: Path) -> WriterService:
        """Bind and listen.  A socket left by a dead supervisor is replaced.
        Raises ``OSError``."""
        make_private_dir(run_dir)
        dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(wire.SERVICE_NAME, dir_fd=dir_fd)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                path = unix_address(run_dir, dir_fd, wire.SERVICE_NAME)
                sock.bind(path)
                os.chmod(wire.SERVICE_NAME, 0o600, dir_fd=dir_fd)
                sock.listen(128)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            service = cls(writer, dir_fd)
            service._server = await asyncio.get_running_loop().create_unix_server(
                lambda: _Connection(service), sock=sock)
        except BaseException:
            os.close(dir_fd)
            raise
        log.info("writer_service_started")
        return service

    def flush_replies(self) -> None:
        """Write the replies waiting for their loop pass now: the writer calls
        this once it has settled a round, so the round's replies leave in one
        write per connection at once (an on-loop writer's next round, whose
        commit blocks the loop, must not hold them back)."""
        for conn in list(self.unflushed):
            conn._flush()  # noqa: SLF001 - the service owns its connections

    async def close(self) -> None:
        """Stop listening, drop every connection, remove the socket."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn._abort()  # noqa: SLF001 - the service owns its connections
        self.connections.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(OSError):
            os.unlink(wire.SERVICE_NAME, dir_fd=self._dir_fd)
        os.close(self._dir_fd)
        log.info("writer_service_stopped", requests=self.requests,
                 commits=self.writer.commits, committed=self.writer.requests)
