"""The single writer (a thread, or the event loop) and its group commit.

Design (after the LMDB rule "one writer at a time", and group commit as in
databases' WALs):

* Every write request is a function ``fn(ctx, *args)`` queued with the asyncio
  future its caller awaits.  One thread takes requests off the queue.
* When the thread is idle it starts at once with the first request (no fixed
  waiting window); while it is committing (the fsync), new requests queue up
  and the next round takes *all* of them.  One synced commit then covers many
  requests: many messages, one fsync.
* Each request runs in a nested (child) write transaction, so a request that
  raises (QuotaExceeded, MailboxNotFound, or a bug) is rolled back alone and
  the others in the round still commit.
* Results and exceptions travel back with one ``loop.call_soon_threadsafe``
  per round (not per request: each is a self-pipe write and a loop wake-up);
  a future is resolved only after the round's commit returned, i.e. after the
  change is on disk.  Peers are told first: other processes by the change
  feed's datagrams (sent from this thread), then, in the same loop callback
  that resolves the futures, this process's waiters, so a caller that hears
  "done" knows every waiter has been woken.

On-loop mode (``on_loop=True``): no thread; rounds run on the event loop
itself, scheduled with ``call_soon`` when the first request of a round
arrives.  The commit then blocks the loop, and what arrives meanwhile (in
socket buffers) is read after it and makes the next round: the same
grouping, without two thread hand-overs and a self-pipe wake-up per round.
Only for a loop that serves nothing but writes (the supervisor's writer
service); a loop that serves clients keeps the thread.

Request functions run holding the GIL, so their Python work stalls the event
loop as surely as code on it: they patch raw records rather than decode and
re-encode them, and take their candidates from the caller where that is exact
(``messages.expunge``'s hint).

With ``workers > 1`` the daemon has one ``Writer``, in the supervisor; the
workers' stores send their requests to it over a unix socket
(``writer_service.py``, ``remote_writer.py``), so requests from every worker
share one round and one fsync.  ``enqueue_call`` is the service's entry: its
``on_done`` gets an ``Outcome`` that also carries every mailbox id the round
changed; they travel back with the reply and wake
the caller's process, which the round's change-feed datagram then skips
(one wake-up per process and round, not two).

Invariant: nothing outside this thread opens a write transaction, and request
functions read every value they change (counters, UIDNEXT, MODSEQ) inside
their transaction, so concurrent writers in other processes are safe too
(LMDB serialises them with its lock file).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import lmdb

from mailserver.errors import MailserverError, TemporaryFailure
from mailserver.metrics import instruments
from mailserver.store import headroom, keys
from mailserver.store.ahead import Ahead
from mailserver.store.kv import Dbs

T = TypeVar("T")

#: Most requests folded into one transaction (bounds the latency of the first one).
MAX_BATCH = 1000
#: Most message octets folded into one transaction: an LMDB write transaction
#: holds a bounded number of dirty pages (MDB_TXN_FULL past ~512 MiB).
MAX_BATCH_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class WriteCtx:
    """What a request function gets: its (child) transaction, the database
    handles, the set of mailbox ids it changed (for the change feed), and the
    round's headroom (``headroom.Room``: the octets of live data new mail may
    fill, measured once per round)."""

    txn: Any
    dbs: Dbs
    changed: set[int] = field(default_factory=set)
    room: headroom.Room = field(default_factory=headroom.Room)

    def need_room(self, octets: int) -> None:
        """Called by requests that add mail: ``StoreFull`` when the store is
        above its new-mail limit (flag changes and deletes never call it)."""
        self.room.require(self.txn, self.dbs, octets)


@dataclass(slots=True)
class _Request:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any] | None  # None: ``on_done`` takes the outcome
    weight: int = 0
    #: Pid of the process the outcome goes back to (0: none): the round's
    #: change-feed datagram skips it, its reply carries the ids.
    origin: int = 0
    #: Takes the ``Outcome`` on the loop, in the pass that settles the round
    #: (the writer service's requests, ``enqueue_call``).
    on_done: Callable[[Outcome], None] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``enqueue_call``'s ``on_done`` gets."""

    ok: bool
    value: Any  # the request's result, or the exception it failed with
    changed: frozenset[int]  # every mailbox id the round changed


_STOP = object()


class Writer:
    """Owns the write side of one environment.

    ``on_commit(changed_ids, told_pids)`` runs in the writer thread after each
    successful commit (the change feed's cross-process broadcast, skipping the
    processes whose replies carry the ids); ``on_commit_loop``
    runs on the event loop (waking local waiters).  ``headroom`` measures
    the store once per round that adds mail and refuses what would pass its
    new-mail limit (``WriteCtx.need_room``; None: no limit), and hears each
    round's measure (its fill warnings).  ``on_loop``: rounds run on
    ``loop`` instead of a thread (see the module docstring).  ``ahead``
    keeps zeros written ahead of LMDB's last page (``ahead.py``), checked
    after each round, once its replies are on their way.
    """

    def __init__(
        self,
        env: lmdb.Environment,
        dbs: Dbs,
        loop: asyncio.AbstractEventLoop,
        *,
        on_commit: Callable[[frozenset[int], frozenset[int]], None] | None = None,
        on_commit_loop: Callable[[frozenset[int]], None] | None = None,
        headroom: headroom.Headroom | None = None,
        on_loop: bool = False,
        ahead: Ahead | None = None,
    ) -> None:
        self._env = env
        self._dbs = dbs
        self._loop = loop
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._on_commit = on_commit
        self._on_commit_loop = on_commit_loop
        self._headroom = headroom
        self._ahead = ahead
        self._closed = False
        # Metrics (``mailserver.metrics``), observed once per round, not per request.
        m = instruments()
        self._commit_seconds = m.store_commit_seconds
        self._commit_batch = m.store_commit_batch
        self._commit_failures = m.store_commit_failures
        #: Number of synced commits made (for tests and the benchmark).
        self.commits = 0
        #: Number of requests committed.
        self.requests = 0
        self._on_loop = on_loop
        #: On-loop mode: requests not yet taken by a round, and whether a round is due.
        self._pending: list[_Request] = []
        self._round_due = False
        self._extend_due = False
        self._idle: asyncio.Future[None] | None = None
        #: Called on the loop after each round's outcomes were handed out (the
        #: writer service writes the round's replies then, in one pass).
        self.after_settle: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        if not on_loop:
            self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
            self._thread.start()

    async def submit(self, fn: Callable[..., T], *args: Any, weight: int = 0) -> T:
        """Run ``fn(ctx, *args)`` in the next group commit; return its result
        once committed and synced, or raise what it raised.

        ``weight`` is the octets the request writes (message size), so one
        transaction does not grow without bound.
        """
        result: T = await self.enqueue(fn, args, weight=weight)
        return result

    def enqueue(self, fn: Callable[..., Any], args: tuple[Any, ...], *,
                weight: int = 0) -> asyncio.Future[Any]:
        """``submit`` without the ``await``: the future of the request (call
        on the loop).  Raises ``MailserverError`` once closed."""
        fut = self._loop.create_future()
        self._put(_Request(fn, args, fut, weight))
        return fut

    def enqueue_call(self, fn: Callable[..., Any], args: tuple[Any, ...], *, weight: int,
                     origin: int, on_done: Callable[[Outcome], None]) -> None:
        """The writer service's entry: ``on_done(outcome)`` runs on the loop in
        the pass that settles the round (before ``after_settle``), also when
        the request failed; the ``Outcome``'s ids are all the round changed.
        The process ``origin`` (a pid) learns them from it, so the round's
        change-feed datagram skips that process.  Raises ``MailserverError``
        once closed."""
        self._put(_Request(fn, args, None, weight, origin, on_done))

    def _put(self, req: _Request) -> None:
        if self._closed:
            raise MailserverError("store is closed")
        if self._on_loop:
            self._pending.append(req)
            if not self._round_due:
                self._round_due = True
                self._loop.call_soon(self._loop_round)
        else:
            self._queue.put(req)

    async def close(self) -> None:
        """Let queued requests finish, then stop the thread (on-loop: wait for
        the last round)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            if self._round_due:
                self._idle = self._loop.create_future()
                await self._idle
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    # -- on-loop mode -----------------------------------------------------------------

    def _loop_round(self) -> None:
        """One round on the event loop: everything that arrived since the last
        one (up to the batch limits; the rest gets the next round)."""
        pending = self._pending
        count, weight = 0, 0
        while count < len(pending) and count < MAX_BATCH and weight < MAX_BATCH_BYTES:
            weight += pending[count].weight
            count += 1
        batch, self._pending = pending[:count], pending[count:]
        if self._pending:
            self._loop.call_soon(self._loop_round)
        else:
            self._round_due = False
        self._round(batch)
        if self._ahead is not None and not self._extend_due:
            # Next loop pass: the replies of this round are written at the
            # end of this one, not after the extension.
            self._extend_due = True
            self._loop.call_soon(self._extend)
        if not self._round_due and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _extend(self) -> None:
        self._extend_due = False
        if self._ahead is not None and not self._closed:
            with contextlib.suppress(Exception):  # only an optimisation
                self._ahead.after_round()

    # -- writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[_Request] = []
            if first is _STOP:
                break
            batch.append(first)
            weight = first.weight
            while len(batch) < MAX_BATCH and weight < MAX_BATCH_BYTES:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
                weight += nxt.weight
            self._round(batch)
            if self._ahead is not None and self._queue.empty():
                with contextlib.suppress(Exception):  # only an optimisation
                    self._ahead.after_round()

    def _round(self, batch: list[_Request]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        changed: set[int] = set()
        room = headroom.Room(self._headroom)
        started = time.perf_counter()
        committed = 0.0  # when the commit returned (0: it failed)
        try:
            with self._env.begin(write=True) as txn:
                for req in batch:
                    outcomes.append(self._one(txn, req, changed, room))
            # Leaving the ``with`` committed and, with sync=True, fsynced.
        except BaseException as exc:  # the commit itself failed: nothing is written
            failure = _wrap(exc)
            if (self._headroom is not None and type(failure) is TemporaryFailure
                    and self._headroom.disk_full(sum(req.weight for req in batch))):
                # LMDB reports ENOSPC as a short write (EIO): see headroom.py.
                failure = headroom.StoreFull("Not enough disk space: no new mail accepted "
                                             "until space is freed")
                self._tick()
            outcomes = [(False, failure)] * len(batch)
            changed = set()
            if self._headroom is not None:
                self._headroom.drop_carry()
            self._commit_failures.inc()
        else:
            self.commits += 1
            self.requests += len(batch)
            committed = time.perf_counter()
            if self._headroom is not None:
                self._headroom.carry(room)
                if room.space is not None:
                    with contextlib.suppress(Exception):  # a log line must not strand the round
                        self._headroom.observe(room.space)
        # Peers first, then the callers: once a caller hears "done", every
        # waiter (here and in other processes) has been told.  A process that
        # gets a reply this round hears the ids in it instead of a datagram.
        ids = frozenset(changed)
        if ids and self._on_commit is not None:
            told = frozenset(req.origin for req in batch if req.origin)
            with contextlib.suppress(Exception):
                self._on_commit(ids, told)
        # One hand-over to the loop per round, not per request: each
        # ``call_soon_threadsafe`` is a self-pipe write and a loop wake-up.
        self._call_soon(self._settle, ids, batch, outcomes)
        # The round's metrics after its outcomes are handed out (on the
        # loop: after the replies are written), not before.
        if committed:
            self._commit_seconds.observe(committed - started)
            self._commit_batch.observe(len(batch))

    def _tick(self) -> None:
        """One tiny commit after a round failed on a full disk.  LMDB reuses
        the pages a commit freed only from the commit after the next one (the
        previous snapshot stays whole), so after a big EXPUNGE the next round
        may find its space still held; this commit releases it (and fails
        harmlessly when not even its two pages are free)."""
        with contextlib.suppress(Exception), self._env.begin(write=True) as txn:
            txn.put(keys.DISK_TICK_KEY, keys.U64.pack(int(time.time() * 1000)),
                    db=self._dbs.meta)

    def _settle(self, ids: frozenset[int], batch: list[_Request],
                outcomes: list[tuple[bool, Any]]) -> None:
        """On the loop: wake this process's waiters, then resolve the callers."""
        if ids and self._on_commit_loop is not None:
            # A waiter's trouble must not strand the callers.
            with contextlib.suppress(Exception):
                self._on_commit_loop(ids)
        for req, (ok, value) in zip(batch, outcomes, strict=True):
            if req.on_done is not None:
                try:
                    req.on_done(Outcome(ok, value, ids))
                except Exception as exc:  # one caller's trouble must not strand the others
                    self._loop.call_exception_handler(
                        {"message": "write request callback failed", "exception": exc})
                continue
            fut = req.future
            if fut is None or fut.done():  # cancelled by its caller meanwhile
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        if self.after_settle is not None:
            try:
                self.after_settle()
            except Exception as exc:
                self._loop.call_exception_handler(
                    {"message": "after_settle failed", "exception": exc})

    def _one(self, txn: Any, req: _Request, changed: set[int],
             room: headroom.Room) -> tuple[bool, Any]:
        if req.future is not None and req.future.cancelled():  # gave up before we started
            return False, asyncio.CancelledError()
        child = self._env.begin(write=True, parent=txn)
        ctx = WriteCtx(child, self._dbs, set(), room)
        try:
            result = req.fn(ctx, *req.args)
        except BaseException as exc:
            child.abort()
            return False, _wrap(exc)
        child.commit()
        changed |= ctx.changed
        return True, result

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._on_loop:
            fn(*args)
            return
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(fn, *args)


def _wrap(exc: BaseException) -> BaseException:
    """LMDB's own failures (map full, I/O error) are transient server trouble.
    A full map is ``StoreFull`` (452 4.3.1): even below the new-mail limit a
    big message may find no run of free pages long enough (``headroom.py``)."""
    if isinstance(exc, lmdb.MapFullError):
        return headroom.StoreFull("Mail store is full: no new mail accepted until space is freed")
    if isinstance(exc, lmdb.Error):
        return TemporaryFailure(f"mail store error: {exc}")
    return exc
