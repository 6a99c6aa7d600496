"""The writer service and the remote writer (``store/writer_service.py``,
``store/remote_writer.py``) over a real unix socket, with a proxy that cuts
the line where a test needs the connection to break."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailserver.errors import AlreadyExists, MailserverError, TemporaryFailure
from mailserver.store import directory_writes, messages
from mailserver.store import writer_wire as wire
from mailserver.store.feed import ChangeFeed
from mailserver.store.model import NewMessage
from mailserver.store.remote_writer import RemoteWriter
from mailserver.store.store import Store
from mailserver.store.writer import Outcome
from mailserver.store.writer_service import WriterService, peer_uid

ACCOUNT = "alice@example.test"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Store, WriterService]]:
    store = await Store.open(tmp_path)
    service = await store.start_writer_service()
    try:
        await store.add_domain("example.test")
        await store.add_account(ACCOUNT, "x")
        yield store, service
    finally:
        await service.close()
        await store.close()


def address(tmp_path: Path) -> str:
    return str(tmp_path / "run" / wire.SERVICE_NAME)


class CuttingProxy:
    """Passes bytes between a client and the service; while ``cut`` is set it
    drops both connections when the first reply comes back instead."""

    def __init__(self, target: str, path: str) -> None:
        self.target, self.path = target, path
        self.cut = True
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> CuttingProxy:
        self.server = await asyncio.start_unix_server(self._serve, self.path)
        return self

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_unix_connection(self.target)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, cutting: bool) -> None:
            while data := await r.read(65536):
                if cutting and self.cut:
                    break
                w.write(data)
            cw.transport.abort()
            sw.transport.abort()

        await asyncio.gather(pump(cr, sw, False), pump(sr, cw, True), return_exceptions=True)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def deliver_args(n: int) -> tuple[object, ...]:
    blob = f"Subject: {n}\r\n\r\nhi\r\n".encode()
    return ([NewMessage(ACCOUNT, "INBOX")], blob, hashlib.sha256(blob).digest(), b"facts", n, 0)


async def test_requests_commit_in_the_services_writer_and_wake_local_waiters_first(
    served: tuple[Store, WriterService], tmp_path: Path
) -> None:
    store, service = served
    loop = asyncio.get_running_loop()
    events: list[object] = []
    remote = RemoteWriter(address(tmp_path), loop, lambda ids: events.append(set(ids)))
    try:
        inbox = store.get_mailbox(ACCOUNT, "INBOX")
        before = store.commits
        results = await asyncio.gather(
            *(remote.submit(messages.deliver, *deliver_args(n), weight=10) for n in range(20)))
        events.append("done")
        assert sorted(r[0].uid for r in results) == list(range(1, 21))
        # Waiters heard of the change before the caller resumed.
        assert events[0] == {inbox.id} and events[-1] == "done"
        assert store.commits - before <= 20 and service.requests == 20
        assert remote.commits == 0 and remote.requests == 20
        with pytest.raises(AlreadyExists) as info:
            await remote.submit(directory_writes.add_domain, "example.test")
        assert info.value.imap_code == "ALREADYEXISTS"
    finally:
        await remote.close()
    with pytest.raises(MailserverError):
        await remote.submit(directory_writes.add_domain, "other.test")


async def test_a_cut_line_fails_the_pending_requests_and_the_next_one_reconnects(
    served: tuple[Store, WriterService], tmp_path: Path
) -> None:
    store, _ = served
    proxy = await CuttingProxy(address(tmp_path), str(tmp_path / "proxy.sock")).start()
    remote = RemoteWriter(proxy.path, asyncio.get_running_loop(), lambda ids: None)
    try:
        with pytest.raises(TemporaryFailure):
            await remote.submit(directory_writes.add_domain, "one.test")
        # The request may well have committed (here it did): nobody was told OK.
        assert store.is_local_domain("one.test")
        proxy.cut = False
        assert (await remote.submit(directory_writes.add_domain, "two.test")).name == "two.test"
    finally:
        await remote.close()
        await proxy.close()


async def test_a_service_that_is_gone_is_a_temporary_failure(tmp_path: Path) -> None:
    remote = RemoteWriter(str(tmp_path / "nobody.stream"), asyncio.get_running_loop(),
                          lambda ids: None)
    with pytest.raises(TemporaryFailure):
        await remote.submit(directory_writes.add_domain, "x.test")
    await remote.close()


async def test_dead_and_broken_peers_are_dropped_and_the_others_served(
    served: tuple[Store, WriterService], tmp_path: Path
) -> None:
    store, _ = served
    loop = asyncio.get_running_loop()
    # A peer that sends a request and dies before the reply.
    _, w = await asyncio.open_unix_connection(address(tmp_path))
    w.writelines(wire.encode_request(1, directory_writes.add_domain, ("dead.test",), 0))
    await w.drain()
    w.transport.abort()
    # A peer whose frame announces more than the limit.
    r2, w2 = await asyncio.open_unix_connection(address(tmp_path))
    w2.write(struct.pack(">I", wire.MAX_FRAME + 1))
    assert await r2.read() == b""  # the service hung up
    w2.close()
    # A request for a function that is not a request: refused, connection kept.
    r3, w3 = await asyncio.open_unix_connection(address(tmp_path))
    w3.writelines(wire.encode_request(5, os.getcwd, (), 0))
    (size,) = struct.unpack(">I", await r3.readexactly(4))
    reply = wire.decode_reply(await r3.readexactly(size))
    assert reply.rid == 5 and isinstance(reply.value, TemporaryFailure)
    w3.close()
    remote = RemoteWriter(address(tmp_path), loop, lambda ids: None)
    try:
        assert (await remote.submit(directory_writes.add_domain, "alive.test")).name == "alive.test"
    finally:
        await remote.close()
    assert store.is_local_domain("alive.test")


async def test_the_run_directory_and_the_socket_are_private(
    served: tuple[Store, WriterService], tmp_path: Path
) -> None:
    assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(address(tmp_path)).st_mode) == 0o600
    a, b = socket.socketpair(socket.AF_UNIX)
    with contextlib.closing(a), contextlib.closing(b):
        assert peer_uid(a) == os.geteuid()


async def test_a_round_tells_each_process_once(tmp_path: Path) -> None:
    """Every outcome of a round carries all the ids the round changed (a
    failure's too), and the round's datagram skips the processes that get one."""
    store = await Store.open(tmp_path, writer_on_loop=True)
    try:
        await store.add_domain("example.test")
        await store.add_account(ACCOUNT, "x")
        await store.create_mailbox(ACCOUNT, "Other")
        inbox = store.get_mailbox(ACCOUNT, "INBOX")
        other = store.get_mailbox(ACCOUNT, "Other")
        writer = store._writer
        told: list[tuple[frozenset[int], frozenset[int]]] = []
        writer._on_commit = lambda ids, pids: told.append((ids, pids))  # type: ignore[union-attr]

        def deliver_to(mailbox: str, n: int) -> tuple[object, ...]:
            blob = f"Subject: {n}\r\n\r\nhi\r\n".encode()
            return ([NewMessage(ACCOUNT, mailbox)], blob, hashlib.sha256(blob).digest(),
                    b"", n, 0)

        # Queued before the round runs: one round (the writer runs on this loop).
        outcomes: list[Outcome] = []
        settled = asyncio.get_running_loop().create_future()
        writer.after_settle = lambda: settled.done() or settled.set_result(None)
        for origin, mailbox, n in ((101, "INBOX", 1), (202, "Other", 2), (303, "Nowhere", 3)):
            writer.enqueue_call(messages.deliver, deliver_to(mailbox, n), weight=0,
                                origin=origin, on_done=outcomes.append)
        await settled
        assert [o.ok for o in outcomes] == [True, True, False]
        assert {o.changed for o in outcomes} == {frozenset({inbox.id, other.id})}
        assert told == [(frozenset({inbox.id, other.id}), frozenset({101, 202, 303}))]
    finally:
        await store.close()


def test_the_feed_skips_the_told_processes(tmp_path: Path) -> None:
    async def main() -> dict[str, bytes | None]:
        feed = ChangeFeed(tmp_path / "run", asyncio.get_running_loop())
        peers = {}
        for name in ("4242-aa.sock", "4343-bb.sock"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(tmp_path / "run" / name))
            sock.setblocking(False)
            peers[name] = sock
        try:
            feed.broadcast(frozenset({7}), told=frozenset({4242}))
            got: dict[str, bytes | None] = {}
            for name, sock in peers.items():
                try:
                    got[name] = sock.recv(64)
                except BlockingIOError:
                    got[name] = None
            return got
        finally:
            feed.close()
            for sock in peers.values():
                sock.close()

    got = asyncio.run(main())
    assert got == {"4242-aa.sock": None, "4343-bb.sock": struct.pack(">Q", 7)}
