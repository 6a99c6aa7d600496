"""The change feed: wakes IDLE/NOTIFY waiters when a mailbox changes.

In this process the writer hands the changed mailbox ids to ``notify`` on the
event loop.  Across processes each ``ChangeFeed`` binds a unix datagram socket
``data_dir/run/<pid>-<random>.sock``; after each commit the writer sends the
changed ids (u64 big-endian, packed) to every *other* socket in that
directory, except those of processes that learn the ids from the writer
service's reply to their own request in the same round (``told``).  A socket nobody listens on any more (a crashed process) answers
ECONNREFUSED and is removed.

The peer list is cached, not listed per commit (a ``getdents`` per commit):
it is read again when the directory's mtime changes (a new process binds its
socket, a closing one unlinks it).  A directory changed within the last
``_MTIME_SETTLE_NS`` of the listing is listed again each time: the kernel
stamps mtimes from a coarse clock, so a second socket bound in the same tick
as the listing would leave the mtime unchanged.  The receiving side is ``loop.add_reader``: no
polling anywhere.

Waiters hold a future per wait, registered *before* they read the current
HIGHESTMODSEQ, so a commit between the read and the wait still wakes them.

AF_UNIX paths are limited to 107 octets; a long ``data_dir`` is reached
through ``/proc/self/fd/<dirfd>/`` (Linux), which keeps the address short.

``data_dir/run`` is made 0700: it also holds the writer service's socket
(``writer_service.py``), which takes pickles and is for the daemon's user only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import struct
import time
from collections.abc import Iterable
from pathlib import Path

from mailserver.errors import MailserverError

_MAX_IDS_PER_DATAGRAM = 512
_SUN_PATH_MAX = 107
_SUFFIX = ".sock"
#: How old the run directory's mtime must be, when it is listed, for that
#: listing to be kept while the mtime stays the same (see the module docstring).
_MTIME_SETTLE_NS = 1_000_000_000


def _pid_of(name: str) -> int:
    """The pid in a feed socket's name (0 when it has none)."""
    head = name.partition("-")[0]
    return int(head) if head.isdigit() else 0


def unix_address(run_dir: Path, dir_fd: int, name: str) -> str:
    """The AF_UNIX address of ``name`` in ``run_dir`` (open as ``dir_fd``),
    short enough for ``sun_path`` however long ``run_dir`` is."""
    direct = os.path.join(run_dir, name)
    if len(os.fsencode(direct)) <= _SUN_PATH_MAX:
        return direct
    return f"/proc/self/fd/{dir_fd}/{name}"


class ChangeFeed:
    """Per-process waiter registry plus the cross-process datagram socket."""

    def __init__(self, run_dir: Path, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._run_dir = run_dir
        self._waiters: dict[int, set[asyncio.Future[None]]] = {}
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
        self._name = f"{os.getpid()}-{secrets.token_hex(6)}{_SUFFIX}"
        self._rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._rx.setblocking(False)
        self._rx.bind(self._addr(self._name))
        self._tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._tx.setblocking(False)
        loop.add_reader(self._rx.fileno(), self._on_readable)
        self._closed = False
        # Writer thread only: the other sockets' addresses and the directory
        # mtime they were listed at (-1: list again).
        self._peers: list[tuple[str, int]] = []
        self._peers_mtime = -1

    def _addr(self, name: str) -> str:
        return unix_address(self._run_dir, self._dir_fd, name)

    def address(self, name: str) -> str:
        """The AF_UNIX address of another socket ``name`` in the run directory
        (valid while this feed is open)."""
        return self._addr(name)

    # -- event loop side -------------------------------------------------------------

    def register(self, mailbox_id: int) -> asyncio.Future[None]:
        """A future resolved at the next change of the mailbox; ``unregister`` it after."""
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.setdefault(mailbox_id, set()).add(fut)
        return fut

    def unregister(self, mailbox_id: int, fut: asyncio.Future[None]) -> None:
        """Forget a future ``register`` returned (whether or not it is done)."""
        waiters = self._waiters.get(mailbox_id)
        if waiters is not None:
            waiters.discard(fut)
            if not waiters:
                del self._waiters[mailbox_id]

    def notify_all(self) -> None:
        """Wake every waiter (a change may have been missed: they look again)."""
        self.notify(list(self._waiters))

    def notify(self, mailbox_ids: Iterable[int]) -> None:
        """Wake everyone waiting on these mailboxes (call on the event loop)."""
        for mbid in mailbox_ids:
            for fut in self._waiters.pop(mbid, ()):
                if not fut.done():
                    fut.set_result(None)

    def _on_readable(self) -> None:
        while True:
            try:
                data = self._rx.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            n = len(data) // 8
            self.notify(struct.unpack(f">{n}Q", data[: n * 8]))

    # -- writer thread side ----------------------------------------------------------

    def broadcast(self, mailbox_ids: frozenset[int],
                  told: frozenset[int] = frozenset()) -> None:
        """Tell the other processes on this store which mailboxes changed,
        except the processes (pids) in ``told``, which hear it otherwise (the
        writer service's replies carry the ids).

        Runs in the writer thread.  Never blocks: a peer whose socket buffer is
        full misses this datagram (it is drowning in wake-ups already).
        """
        if self._closed:
            return
        ids = sorted(mailbox_ids)
        chunks = [
            struct.pack(f">{len(part)}Q", *part)
            for part in (
                ids[i : i + _MAX_IDS_PER_DATAGRAM]
                for i in range(0, len(ids), _MAX_IDS_PER_DATAGRAM)
            )
        ]
        for addr, pid in self._peer_addresses():
            if pid in told:
                continue
            for chunk in chunks:
                try:
                    self._tx.sendto(chunk, addr)
                except (ConnectionRefusedError, FileNotFoundError):
                    # A process that died without cleaning up: nobody reads this.
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.basename(addr), dir_fd=self._dir_fd)
                    self._peers_mtime = -1
                    break
                except OSError:  # EAGAIN (peer full), EPERM, ...: skip this peer
                    break

    def _peer_addresses(self) -> list[tuple[str, int]]:
        """The other processes' socket addresses with their pids (from the
        name, ``<pid>-<random>.sock``): the cached list unless the directory
        changed (one ``fstat`` per commit instead of a listing)."""
        try:
            mtime = os.fstat(self._dir_fd).st_mtime_ns
            if mtime == self._peers_mtime:
                return self._peers
            names = os.listdir(self._dir_fd)
        except OSError:
            return []
        self._peers = [(self._addr(name), _pid_of(name)) for name in names
                       if name != self._name and name.endswith(_SUFFIX)]
        settled = time.time_ns() - mtime > _MTIME_SETTLE_NS
        self._peers_mtime = mtime if settled else -1
        return self._peers

    def close(self) -> None:
        """Stop listening and remove our socket; waiters still pending fail with MailserverError.

        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._rx.fileno())
        with contextlib.suppress(OSError):
            os.unlink(self._name, dir_fd=self._dir_fd)
        self._rx.close()
        self._tx.close()
        os.close(self._dir_fd)
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(MailserverError("store is closed"))
        self._waiters.clear()
