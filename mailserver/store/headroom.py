"""Headroom in the LMDB map: new mail stops before the map is full.

LMDB writes copy-on-write: a flag change, an EXPUNGE or a mailbox DELETE
needs free pages too, so once the map is full *every* write fails
(``MDB_MAP_FULL``) and the store cannot even be emptied.  Requests that add
mail (SMTP delivery, APPEND, COPY, queueing outbound mail) therefore ask for
room first (``require``) and are refused with ``StoreFull`` once the live data
plus the request would pass ``NEW_MAIL_LIMIT`` of the map; flag changes,
EXPUNGE, MOVE and deletes never ask, so they keep working in the reserve.

MOVE does not ask: it adds as much as it frees, and it is how clients delete
(to Trash).  ``StoreFull`` is a temporary failure: SMTP ``452 4.3.1``
("mail system full", RFC 3463 §3.4 X.3.1; 452 per RFC 5321 §4.2.2),
IMAP ``NO [UNAVAILABLE]`` with a text that says why (RFC 5530 §3, via
``errors.imap_status``).

The measure: live octets = the pages of every named database (branch +
leaf + overflow, ``txn.stat``, one call per database), read once per writer
round (``Room``) in the transaction of the round's first request that asks,
so the requests committed before it in that round count exactly; each later
request of the round adds the octets the requests before it asked for (an
estimate of their pages, counted even when such a request then failed: the
error is on the safe side).  A ``txn.stat`` of every database per request
was ~2 % of the CPU of SMTP ingress.  Pages on LMDB's free list are free
(reused before the map grows); pages still held for old readers are what the
reserve covers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mailserver.errors import SmtpReply, TemporaryFailure
from mailserver.store.kv import Dbs

#: Fraction of the map that new mail may fill; the rest is the reserve for
#: flag changes, EXPUNGE and deletes.  The default of ``[store] new_mail_limit``
#: (``config.StoreSettings``), passed to ``Store.open(new_mail_limit=...)``.
NEW_MAIL_LIMIT = 0.95


class StoreFull(TemporaryFailure):
    """The mail store is nearly full: new mail is refused until space is freed."""

    smtp = SmtpReply(452, "4.3.1", "Insufficient system storage, try again later")


def live_octets(txn: Any, dbs: Dbs) -> int:
    """Octets of the pages the named databases use in ``txn``."""
    pages = 0
    psize = 4096
    for field in dataclasses.fields(dbs):
        st = txn.stat(getattr(dbs, field.name))
        psize = st["psize"]
        pages += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
    return pages * psize


def _full() -> StoreFull:
    return StoreFull("Mail store is nearly full: no new mail accepted until space is freed")


class Room:
    """The headroom of one writer round: live octets measured once, at the
    first request that asks, then counted up by what each request asks for
    (see the module docstring)."""

    __slots__ = ("limit", "_live")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # octets of live data new mail may fill; 0: no limit
        self._live = -1  # not measured yet in this round

    def require(self, txn: Any, dbs: Dbs, octets: int) -> None:
        """Raise ``StoreFull`` unless ``octets`` more fit; else count them."""
        if self.limit <= 0:
            return
        if self._live < 0:
            self._live = live_octets(txn, dbs)
        if self._live + octets > self.limit:
            raise _full()
        self._live += octets
