"""The mail store's public face: accounts, mailboxes, messages, the change feed.

All ``async`` methods that write return only after the LMDB
transaction holding the change has been committed *and synced* (group commit:
see ``writer.py``).  Reads are cheap memory-mapped LMDB reads; the short ones
are plain methods that can be called on the event loop.

Errors: ``mailserver.errors`` — ``MailboxNotFound``, ``AccountNotFound``,
``DomainNotFound``, ``AlreadyExists``, ``InvalidName``, ``QuotaExceeded``,
``Cannot``; ``StoreNotFound`` from ``Store.open(create=False)``.  Everything
else is a server fault.

Layout of the pieces: ``kv.py`` opens the environment, ``keys.py``/``codec.py``
define the records, ``tx.py`` reads and writes them inside a transaction.
``Store`` is assembled from one class per concern (``base.py`` holds what they
share): ``directory.py`` (domains, accounts, aliases, recipients),
``mailbox_store.py``, ``message_store.py``; this module adds opening, closing
and the outbound queue.  ``directory_writes.py``/``mailboxes.py``/
``messages.py``/``queue.py`` are the write requests the single writer thread
(``writer.py``) runs, ``feed.py`` wakes waiters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailserver.errors import MailserverError
from mailserver.store import fsck, headroom, keys, mapping
from mailserver.store import queue as queue_db
from mailserver.store.ahead import Ahead
from mailserver.store.base import content_address
from mailserver.store.directory import DirectoryStore, RecipientStatus
from mailserver.store.feed import ChangeFeed
from mailserver.store.junk_store import JunkStore
from mailserver.store.kv import DATA_FILE, Dbs, open_env
from mailserver.store.mailbox_store import MailboxStore
from mailserver.store.message_store import MessageStore
from mailserver.store.recordcache import RecordCache
from mailserver.store.remote_writer import RemoteWriter
from mailserver.store.writer import Writer
from mailserver.store.writer_service import WriterService
from mailserver.store.writer_wire import SERVICE_NAME

__all__ = ["RecipientStatus", "Store"]

#: Seconds between two measures of the fill by the process running the writer
#: (besides the one of each round that adds mail, ``headroom.py``).
FILL_WATCH_INTERVAL = 30.0


class Store(DirectoryStore, MailboxStore, MessageStore, JunkStore):
    """An open LMDB environment under ``data_dir / "store"``.

    One ``Store`` per process; several processes may open the same directory
    (LMDB serialises writers across processes; each process's change feed also
    hears commits made by the others).  A worker of a multi-process daemon
    opens it with ``remote_writer=True``: its writes go to the supervisor's
    writer service (``writer_service.py``), one group commit for every worker.
    """

    def __init__(self, env: Any, dbs: Dbs, writer: Writer | RemoteWriter, feed: ChangeFeed,
                 path: Path, room: headroom.Headroom | None = None) -> None:
        # Use ``Store.open``; this only assembles the parts.
        self._env = env
        self.headroom = room or headroom.Headroom(env, dbs, path, warn=False)
        self._dbs = dbs
        self._writer = writer
        self._feed = feed
        self.path = path
        self._closed = False
        self._watch: asyncio.TimerHandle | None = None
        if isinstance(writer, Writer):  # the writer's process watches the fill
            self._watch_fill()
        self._records = RecordCache(self._read, dbs, self.changes_since)

    @staticmethod
    def exists(data_dir: Path) -> bool:
        """Whether ``data_dir`` holds a store (what ``open(create=False)`` needs)."""
        return (Path(data_dir) / "store" / DATA_FILE).is_file()

    @classmethod
    async def open(cls, data_dir: Path, *, map_size: int = 1 << 34,
                   new_mail_limit: float = headroom.NEW_MAIL_LIMIT,
                   fill_warning_levels: Sequence[float] = headroom.WARN_LEVELS,
                   remote_writer: bool = False, writer_on_loop: bool = False,
                   create: bool = True, preallocate: bool = False) -> Store:
        """Open the store, creating it if needed unless ``create`` is False;
        check the schema version.

        ``map_size`` is the LMDB map size in bytes (sparse on disk).  New mail
        (deliver, APPEND, COPY, queueing) is refused with ``StoreFull`` once
        live data would pass ``new_mail_limit`` of the store's capacity (the
        map, or less when the file system has less room), keeping the rest
        for flag changes, EXPUNGE and deletes (``headroom.py``); the process
        that runs the writer logs a warning as the fill passes each of
        ``fill_warning_levels``.
        ``remote_writer``: send writes to the writer service of the daemon's
        supervisor (``data_dir/run/writer.stream``, see ``start_writer_service``)
        instead of running a writer thread here.  ``writer_on_loop``: run the
        group-commit rounds on this event loop instead of a thread, for a
        process whose loop does nothing but serve writes (the supervisor's
        writer service): each commit then blocks the loop (see ``writer.py``).
        ``create=False`` (the admin commands: they must not make a new, empty
        store in a wrong directory) raises ``StoreNotFound`` when there is none.
        ``preallocate`` (the daemon's writer): keep zeros written ahead of
        LMDB's last page, so commits do not grow the file (``ahead.py``).
        Raises ``MailserverError`` on a schema version this code does not know.
        Must be called from the running event loop (the change feed binds to it).
        """
        loop = asyncio.get_running_loop()
        data_dir = Path(data_dir)
        path = data_dir / "store"
        env, dbs = await asyncio.to_thread(open_env, path, map_size, create=create)
        try:
            feed = ChangeFeed(data_dir / "run", loop)
        except BaseException:
            env.close()
            raise
        room = headroom.Headroom(env, dbs, path, new_mail_limit, fill_warning_levels,
                                 warn=not remote_writer)
        writer: Writer | RemoteWriter
        if remote_writer:
            writer = RemoteWriter(feed.address(SERVICE_NAME), loop, feed.notify, feed.notify_all)
        else:
            writer = Writer(env, dbs, loop, on_commit=feed.broadcast,
                            on_commit_loop=feed.notify, headroom=room,
                            on_loop=writer_on_loop,
                            ahead=Ahead(env, path) if preallocate else None)
        return cls(env, dbs, writer, feed, path, room)

    async def start_writer_service(self) -> WriterService:
        """Serve this store's writer to the workers on ``data_dir/run/writer.stream``
        (``writer_service.py``); ``close`` the service before the store.
        Raises ``OSError``."""
        if not isinstance(self._writer, Writer):
            raise MailserverError("a store with a remote writer cannot serve writes")
        return await WriterService.start(self._writer, self.path.parent / "run")

    async def close(self) -> None:
        """Finish queued writes, stop the writer thread, close the environment."""
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
        await self._writer.close()
        self._feed.close()
        self._env.close()

    @property
    def commits(self) -> int:
        """Synced write transactions this process has committed (group-commit
        rounds; 0 with a remote writer: the service's process commits)."""
        return self._writer.commits

    # -- outbound queue --------------------------------------------------------------
    # Records are opaque bytes here (``mailserver.queue.model`` encodes them);
    # times are Unix seconds.  See ``queue.py`` for the layout and invariant.

    async def wait_for_queue_change(self) -> None:
        """Return at the next commit that queued or rescheduled outbound mail,
        in this process or another one on the same store (no polling).

        Raises MailserverError when the store is closed while waiting.
        """
        fut = self._feed.register(keys.QUEUE_FEED_ID)
        try:
            await fut
        finally:
            self._feed.unregister(keys.QUEUE_FEED_ID, fut)

    async def queue_add(
        self, queue_id: str, record: bytes, blob: bytes, next_attempt: float
    ) -> bytes:
        """Queue a message durably: record, schedule entry at ``next_attempt``,
        and a reference to the content-addressed blob (stored once).

        Returns the blob id (SHA-256).  RuntimeError if ``queue_id`` is taken.
        """
        blob = bytes(blob)
        blob_id = await content_address(blob)
        await self._writer.submit(
            queue_db.add, queue_id, bytes(record), blob, blob_id,
            queue_db.to_ms(next_attempt), weight=len(blob),
        )
        return blob_id

    async def queue_put(self, queue_id: str, record: bytes, next_attempt: float, *,
                        keep_hold: bool = False) -> bool:
        """Replace a queued record and move it to ``next_attempt``, or, with
        ``keep_hold``, leave a held message held (``queue_db.put``).  Returns
        whether it is held now.  Raises NotFound."""
        return bool(await self._writer.submit(
            queue_db.put, queue_id, bytes(record), queue_db.to_ms(next_attempt), keep_hold
        ))

    async def queue_lease(self, queue_id: str, record: bytes, until: float, *,
                          due_by: float) -> bool:
        """The scheduler's lease (``queue.storage.QueueStore``): replace the record
        and move it to ``until`` only while it is due at ``due_by`` and not
        held.  Returns whether it did."""
        return bool(await self._writer.submit(
            queue_db.lease, queue_id, bytes(record), queue_db.to_ms(until),
            queue_db.to_ms(due_by)))

    async def queue_reschedule(
        self, queue_ids: Sequence[str], next_attempt: float, *, only_later: bool = True
    ) -> list[str]:
        """Make messages due at ``next_attempt`` (retry/flush).  Returns the ids that exist."""
        return await self._writer.submit(
            queue_db.reschedule, list(queue_ids), queue_db.to_ms(next_attempt), only_later
        )

    async def queue_hold(self, queue_ids: Sequence[str]) -> list[str]:
        """Take messages off the schedule until ``queue_release`` (``mailserver
        queue hold``): their schedule entry moves to ``queue_db.HELD_MS``.
        Returns the ids that exist."""
        return await self._writer.submit(
            queue_db.reschedule, list(queue_ids), queue_db.HELD_MS, False)

    def queue_held(self) -> set[str]:
        """The ids of the held messages."""
        with self._read() as txn:
            return queue_db.held_ids(txn, self._dbs)

    async def queue_remove(self, queue_id: str) -> bool:
        """Delete a queued message and drop its blob reference.  False if absent."""
        return await self._writer.submit(queue_db.remove, queue_id)

    def queue_get(self, queue_id: str) -> bytes | None:
        """The record bytes, or None."""
        try:
            queue_id.encode("ascii")
        except UnicodeEncodeError:
            return None
        with self._read() as txn:
            return queue_db.get(txn, self._dbs, queue_id)

    def queue_list(self) -> list[bytes]:
        """Every queued record, in queue id order (creation time)."""
        with self._read() as txn:
            return queue_db.list_all(txn, self._dbs)

    def queue_due(self, now: float, limit: int = 1000) -> list[str]:
        """Ids of messages due at ``now`` or earlier, earliest first, at most ``limit``."""
        with self._read() as txn:
            return queue_db.due(txn, self._dbs, queue_db.to_ms(now), limit)

    def map_usage(self) -> tuple[int, int]:
        """``(live, map_size)`` in octets: the pages the databases use now (what
        ``headroom`` measures) and the LMDB map size.  For ``/metrics``."""
        with self._read() as txn:
            live = headroom.live_octets(txn, self._dbs)
        return live, int(self._env.info()["map_size"])

    def release_map_pages(self) -> int:
        """Drop the store's memory-map pages from this process's RSS (bulk
        jobs: ``import``, ``export``; see ``mapping.py``).  Returns the
        octets of address space advised.  Only while the store is open:
        after ``close`` the addresses may belong to another mapping.
        Raises OSError."""
        if self._closed:
            return 0
        return mapping.release_map_pages(self.path / DATA_FILE)

    async def copy_to(self, dest: Path) -> None:
        """Write a consistent, compacted copy of the environment into the
        directory ``dest`` (must exist and hold no ``data.mdb``): ``backup``.

        LMDB's copy runs in one read transaction (a snapshot; writers go on)
        and streams pages through a fixed buffer, so memory stays bounded
        whatever the store's size; free pages are left out (``compact``).
        Raises ``lmdb.Error`` (a ``MailserverError`` is not needed: the admin
        service reports it) or OSError.
        """
        if self._closed:
            raise MailserverError("store is closed")
        await asyncio.to_thread(self._env.copy, str(dest), compact=True)

    def check(self, decode_queue: fsck.QueueDecoder) -> fsck.FsckReport:
        """Check this open store for damage (``fsck.py``) in one read
        transaction: for a process that has the store open (LMDB forbids
        opening an environment twice in one process; ``fsck.check_path`` is
        for the others).  Blocking and long: run it in a thread."""
        if self._closed:
            raise MailserverError("store is closed")
        with self._env.begin(buffers=True) as txn:
            return fsck.check_txn(txn, self._dbs, decode_queue)

    def _watch_fill(self) -> None:
        """Measure now and every ``FILL_WATCH_INTERVAL`` seconds, so a file
        system filled by something else is noticed (and logged) without mail."""
        if self._closed:
            return
        try:
            self.headroom.space()
        except Exception:  # noqa: BLE001 - a watch must not end; the next one tries again
            pass
        self._watch = asyncio.get_running_loop().call_later(FILL_WATCH_INTERVAL,
                                                            self._watch_fill)

    def space(self) -> headroom.Space:
        """A fresh measure of the store's fill (``headroom.Space``: live octets,
        capacity from the map and the file system).  For ``/metrics``; the
        process running the writer also logs a crossed warning level."""
        return self.headroom.space()

    def queue_next_due(self) -> float | None:
        """The earliest scheduled attempt (Unix seconds), None for an empty queue."""
        with self._read() as txn:
            ms = queue_db.first_ms(txn, self._dbs)
        return None if ms is None else ms / 1000.0


