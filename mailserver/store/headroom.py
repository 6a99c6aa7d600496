"""Headroom: new mail stops before the LMDB map or the file system is full.

LMDB writes copy-on-write: a flag change, an EXPUNGE or a mailbox DELETE
needs free pages too, so once the map is full *every* write fails
(``MDB_MAP_FULL``) and the store cannot even be emptied; the same holds once
the file system under the data directory is full (the commit's page writes
fail: LMDB reports a short write as ``EIO``).  Requests that add mail (SMTP
delivery, APPEND, COPY, queueing outbound mail) therefore ask for room first
(``Room.require``) and are refused with ``StoreFull`` once the live data
plus the request would pass ``new_mail_limit`` of the store's *capacity*:

    capacity = min(map_size, size of data.mdb + octets free on its file system
                             - half the pages freed inside data.mdb)

(pages inside the file that LMDB has freed are reused before the file grows,
so they are room, but only once no reader sees them any more: pages freed by
the last commits are often still held, so they count half).  Flag changes, EXPUNGE, MOVE and deletes never ask,
so they keep working in the reserve.  MOVE does not ask: it adds as much as it
frees, and it is how clients delete (to Trash).

Replies.  ``StoreFull`` is a temporary failure: SMTP ``452 4.3.1`` ("mail
system full", RFC 3463 §3.4 X.3.1; 452 "insufficient system storage" is a
reply RFC 5321 §4.3.2 allows to MAIL, RCPT and DATA, and RFC 1870 §6.1 the
one for a SIZE= that does not fit now).  IMAP ``NO [OVERQUOTA]`` (RFC 5530
§3): of the codes RFC 5530 has, OVERQUOTA says what the user can do about it
(delete mail, then retry), which is what clients show for it, and it is what
Dovecot answers on ENOSPC/EDQUOT ("Not enough disk space").  ``LIMIT`` is
for a fixed implementation limit of one object (flags per message) that no
deleting lifts, ``UNAVAILABLE`` for a subsystem that is down.

When a commit fails anyway (another program filled the disk between the
measure and the commit, or the estimate of a round was short) nothing of the
round is written and no request of it is acknowledged; with less than
``DISK_SLACK`` free on the file system the failure is ``StoreFull`` too.
LMDB stays usable (a failed page write aborts the transaction; the meta pages
are written in place, never allocated), so the store takes mail again as soon
as space is freed, without a restart.

The measure: live octets = the pages of every named database (branch +
leaf + overflow, ``txn.stat``, one call per database), plus one ``stat`` and
one ``statvfs``, read once per writer round (``Room``) in the transaction of
the round's first request that asks, so the requests committed before it in
that round count exactly; each later request of the round adds the octets
the requests before it asked for, rounded up to whole pages plus one (an
estimate of their pages, counted even when such a request then failed: the
error is on the safe side).  A
``txn.stat`` of every database per request was ~2 % of the CPU of SMTP
ingress; the next rounds carry a measure, counted up, for up to ``CARRY``
seconds while it says yes (``Room``).  Pages still held for old readers are what the reserve covers.

Warnings: the process that runs the writer logs ``store_fill_high`` (a
warning) when the fill ratio (live / capacity, the gauge
``mailserver_store_map_fill_ratio``) first passes each of ``[store]
fill_warning_levels`` (80 % and 90 % by default), once per crossing, and
``store_fill_normal`` once it is back below the lowest (with a hysteresis of
``HYSTERESIS`` so a ratio hovering at a level does not flood the log).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from mailserver.errors import SmtpReply, TemporaryFailure
from mailserver.store.kv import DATA_FILE, Dbs

log = structlog.get_logger("mailserver.store")

#: Fraction of the capacity that new mail may fill; the rest is the reserve for
#: flag changes, EXPUNGE and deletes.  The default of ``[store] new_mail_limit``
#: (``config.StoreSettings``), passed to ``Store.open(new_mail_limit=...)``.
NEW_MAIL_LIMIT = 0.95
#: Fill ratios at which a warning is logged (``[store] fill_warning_levels``).
WARN_LEVELS = (0.8, 0.9)
#: A level is crossed again only after the ratio went this far below it.
HYSTERESIS = 0.02
#: A failed commit with less than this free on the file system (octets, plus
#: the round's weight) is taken for ENOSPC: ``StoreFull``.
DISK_SLACK = 1 << 20
#: Octets assumed for a message of unknown size (SMTP MAIL without SIZE=):
#: a message record and the smallest blob take about a page.
MIN_MESSAGE = 4096
#: LMDB's page size (the OS page size on Linux/x86-64), for estimates.
PAGE = 4096
#: Seconds a measure stays good for ``Headroom.has_room`` (SMTP MAIL).
FRESH = 1.0
#: Seconds a writer round's measure, counted up by its requests, may stand
#: in for the next rounds' (``Room.require``).
CARRY = 0.5


class StoreFull(TemporaryFailure):
    """The mail store is nearly full: new mail is refused until space is freed."""

    imap_code = "OVERQUOTA"
    smtp = SmtpReply(452, "4.3.1", "Insufficient system storage, try again later")


@dataclasses.dataclass(frozen=True, slots=True)
class Space:
    """One measure of the store, in octets: ``live`` (pages the databases use),
    ``capacity`` (what live data can grow to: the map, or less when the file
    system has less room), ``map_size``, ``disk_free`` (available to us on the
    data file's file system)."""

    live: int
    capacity: int
    map_size: int
    disk_free: int

    @property
    def ratio(self) -> float:
        """``live / capacity`` (1.0 for no capacity at all)."""
        return self.live / self.capacity if self.capacity > 0 else 1.0


def live_octets(txn: Any, dbs: Dbs) -> int:
    """Octets of the pages the named databases use in ``txn``."""
    pages = 0
    psize = 4096
    for field in dataclasses.fields(dbs):
        st = txn.stat(getattr(dbs, field.name))
        psize = st["psize"]
        pages += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
    return pages * psize


def disk_free(path: Path) -> int:
    """Octets available to an unprivileged user on ``path``'s file system
    (``f_bavail``: what is left when root's reserve is not ours).  Raises OSError."""
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize


def measure(txn: Any, dbs: Dbs, path: Path, map_size: int, used: int | None = None) -> Space:
    """The ``Space`` of the environment in directory ``path`` as ``txn`` sees it.
    ``used``: octets of ``data.mdb`` up to LMDB's last page (None: the whole
    file); what lies past it is zeros written ahead (``ahead.py``), room
    like the free octets of the file system."""
    live = live_octets(txn, dbs)
    try:
        free = disk_free(path)
        size = os.stat(path / DATA_FILE).st_size
        pages = size if used is None else min(size, used)
        # Pages LMDB freed inside the file count half: those a reader still
        # sees (freed by the last commits) cannot be reused yet.
        capacity = min(map_size, size + free - max(0, pages - live) // 2)
    except OSError:  # cannot tell: the map is the limit
        free, capacity = map_size, map_size
    return Space(live, capacity, map_size, free)


def _full() -> StoreFull:
    return StoreFull("Mail store is nearly full: no new mail accepted until space is freed")


class FillWatch:
    """Sans-IO: which warning level a series of fill ratios has crossed.

    ``observe(ratio)`` returns the level newly passed upward (once per
    crossing), ``0.0`` when the ratio fell back below the lowest level (by
    ``HYSTERESIS``) after a warning, else None."""

    __slots__ = ("levels", "_at")

    def __init__(self, levels: Sequence[float] = WARN_LEVELS) -> None:
        self.levels = tuple(sorted(levels))
        self._at = 0  # how many levels are passed (and were reported)

    def observe(self, ratio: float) -> float | None:
        """See the class docstring."""
        passed = sum(1 for level in self.levels if ratio >= level)
        if passed > self._at:
            self._at = passed
            return self.levels[passed - 1]
        # Down only past the hysteresis; re-arms the levels left behind.
        below = sum(1 for level in self.levels if ratio >= level - HYSTERESIS)
        if below < self._at:
            self._at = below
            if below == 0:
                return 0.0
        return None


class Headroom:
    """The fill of one store: measures it, makes each writer round's ``Room``,
    answers ``has_room`` (SMTP MAIL) and logs the warnings (``warn``: only
    the process that runs the writer, so each crossing is logged once)."""

    def __init__(self, env: Any, dbs: Dbs, path: Path, new_mail_limit: float = NEW_MAIL_LIMIT,
                 warn_levels: Sequence[float] = WARN_LEVELS, *, warn: bool = True) -> None:
        self._env = env
        self._dbs = dbs
        self.path = path
        self.new_mail_limit = new_mail_limit
        self._watch = FillWatch(warn_levels) if warn else None
        self._latest: tuple[float, Space] | None = None
        #: The writer's last measure: when, what, and the live octets counted
        #: up by the requests of the rounds since (``carry``; writer only).
        self._carry: tuple[float, Space, int] | None = None

    def measure(self, txn: Any) -> Space:
        """The ``Space`` as ``txn`` sees it (one writer round's measure)."""
        # Another process may have opened the map bigger: LMDB then uses its size.
        info = self._env.info()
        return measure(txn, self._dbs, self.path, int(info["map_size"]),
                       (int(info["last_pgno"]) + 1) * int(self._env.stat()["psize"]))

    def space(self) -> Space:
        """A fresh measure, in a read transaction of its own (also observed)."""
        with self._env.begin(buffers=True) as txn:
            space = self.measure(txn)
        self.observe(space)
        return space

    def observe(self, space: Space) -> None:
        """Remember ``space`` for ``has_room``; log a crossed warning level.
        Called from the writer thread too (one tuple store: atomic)."""
        self._latest = (time.monotonic(), space)
        if self._watch is None:
            return
        level = self._watch.observe(space.ratio)
        if level is None:
            return
        fields = {"ratio": round(space.ratio, 4), "live_bytes": space.live,
                  "capacity_bytes": space.capacity, "disk_free_bytes": space.disk_free,
                  "new_mail_limit": self.new_mail_limit}
        if level:
            log.warning("store_fill_high", level=level, **fields)
        else:
            log.info("store_fill_normal", **fields)

    def carry(self, room: Room) -> None:
        """After a committed round: its measure (or the one it carried on),
        counted up by its requests, may serve the next rounds for ``CARRY``
        seconds from when it was taken."""
        if room.base is not None:
            self._carry = (room.taken, room.base, room.live)

    def drop_carry(self) -> None:
        """After a failed round: the next round measures afresh."""
        self._carry = None

    def carried(self) -> tuple[float, Space, int] | None:
        """``carry``'s measure while it is good, else None."""
        carry = self._carry
        if carry is None or time.monotonic() - carry[0] > CARRY:
            return None
        return carry

    def limit(self, space: Space) -> int:
        """Octets of live data new mail may fill, given ``space``."""
        return int(space.capacity * self.new_mail_limit)

    def has_room(self, octets: int = 0) -> bool:
        """Whether ``octets`` (at least ``MIN_MESSAGE``) of new mail fit below
        the limit, by a measure at most ``FRESH`` seconds old.  The writer's
        check is the exact one; this lets SMTP refuse at MAIL."""
        latest = self._latest
        if latest is None or time.monotonic() - latest[0] > FRESH:
            space = self.space()
        else:
            space = latest[1]
        return space.live + max(octets, MIN_MESSAGE) <= self.limit(space)

    def disk_full(self, weight: int) -> bool:
        """After a failed commit: whether the file system has too little room
        left for ``weight`` octets (the failure was ENOSPC, see the module
        docstring)."""
        try:
            return disk_free(self.path) < weight + DISK_SLACK
        except OSError:
            return False

    def room(self) -> Room:
        """The headroom of a new writer round."""
        return Room(self)


class Room:
    """The headroom of one writer round: the space measured once, at the
    first request that asks, then counted up by what each request asks for
    (see the module docstring).  ``space``: that measure (None: none asked,
    or the round carried on an earlier one).

    Carrying on: a measure costs ~13 ``txn.stat`` calls, a ``statvfs`` and a
    ``stat``; with one client sending one message after another, every round
    is one message and paid them all.  So a round whose first request fits
    under the limit by the previous round's measure, counted up by every
    request that asked since (``Headroom.carry``), uses that; it is taken
    again when it is ``CARRY`` seconds old, when a round failed, and
    whenever the counted-up figure says no (then the exact measure decides).
    Counting up only ever adds (what rounds freed is seen at the next
    measure), so within ``CARRY`` the limit is held as with a fresh
    measure; what another program takes of the disk meanwhile is the race
    the module docstring describes (the commit fails: ``StoreFull``)."""

    __slots__ = ("_headroom", "_limit", "base", "live", "space", "taken")

    def __init__(self, headroom: Headroom | None = None) -> None:
        self._headroom = headroom  # None: no limit
        self.live = -1  # live octets, counted up (-1: none asked yet in this round)
        self._limit = 0
        self.space: Space | None = None
        #: The measure the round counts from (its own or a carried one), and when taken.
        self.base: Space | None = None
        self.taken = 0.0

    def require(self, txn: Any, dbs: Dbs, octets: int) -> None:
        """Raise ``StoreFull`` unless ``octets`` more fit; else count them."""
        headroom = self._headroom
        if headroom is None:
            return
        # LMDB keeps a value past ~2 KiB in whole overflow pages, and the
        # record, index entries and copied branch pages take more: an estimate
        # short of the pages really written would let a round run into ENOSPC.
        octets = -(-octets // PAGE) * PAGE + PAGE
        if self.live < 0:
            carried = headroom.carried()
            if carried is not None:
                self.taken, self.base, self.live = carried
                self._limit = headroom.limit(self.base)
        if self.space is None and (self.live < 0 or self.live + octets > self._limit):
            # Nothing to count from, or the carried figure says no: measure
            # (in this transaction: the requests before this one count exactly).
            self.taken = time.monotonic()
            self.space = self.base = space = headroom.measure(txn)
            self.live = space.live
            self._limit = headroom.limit(space)
        if self.live + octets > self._limit:
            raise _full()
        self.live += octets
