"""The messages of a selected-mailbox view, stored compactly (issue #5).

Design notes
------------
Every idle selected session holds one of these for its mailbox, so its size
per message is what 10,000 IDLE connections cost.  A ``list[int]`` of UIDs
plus a ``{uid: flags}`` dict spent ~70 bytes per message (an int object per
UID, a pointer in the list, a hash-table slot); here a UID is 4 bytes in an
``array('I')`` (UIDs are 32-bit, RFC 3501 §2.3.1.1) and its flags one pointer
in a parallel list, to a frozenset shared by every message with those flags:
the store codec interns the sets it decodes, and ``_intern`` does the same for
sets built elsewhere (a STORE's result), so a ``STORE 1:* +FLAGS`` does not
leave one set per message behind.

Invariants
----------
* ``_uids`` ascends strictly; ``_flags[i]`` belongs to ``_uids[i]``; the
  message sequence number of ``_uids[i]`` is ``i + 1`` (RFC 3501 §2.3.1.2).
* New messages only ever come with UIDs above the largest (§2.3.1.1), so
  ``append`` is the only way in; lookups by UID are ``bisect``: O(log n).
* Removal (reported EXPUNGEs) rebuilds both sequences once per batch.
"""

from __future__ import annotations

import bisect
import builtins  # the class has a set() method: annotations inside it say builtins.set
from array import array
from collections.abc import Iterable, Iterator

#: Distinct flag sets kept for sharing; mailboxes use few, the bound is
#: against a client spraying keywords (as the codec's cache).
_INTERN_LIMIT = 4096
_interned: dict[frozenset[str], frozenset[str]] = {}


def _intern(flags: frozenset[str]) -> frozenset[str]:
    got = _interned.get(flags)
    if got is not None:
        return got
    if len(_interned) < _INTERN_LIMIT:
        _interned[flags] = flags
    return flags


class MessageView:
    """Ascending UIDs, each with its flag set; a UID's position is its sequence
    number minus one.  Iterating yields the UIDs."""

    __slots__ = ("_uids", "_flags")

    def __init__(self, uids: Iterable[int] = (), flags: Iterable[frozenset[str]] = ()) -> None:
        """``uids`` ascending, ``flags`` parallel to them (as ``Store.list_flags``)."""
        self._uids = array("I", uids)
        self._flags = [_intern(f) for f in flags]
        if len(self._flags) != len(self._uids):
            raise ValueError("uids and flags differ in length")

    def __len__(self) -> int:
        return len(self._uids)

    def __iter__(self) -> Iterator[int]:
        return iter(self._uids)

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self._index(uid) is not None

    def _index(self, uid: int) -> int | None:
        i = bisect.bisect_left(self._uids, uid)
        if i < len(self._uids) and self._uids[i] == uid:
            return i
        return None

    @property
    def largest(self) -> int:
        """The largest UID, 0 when empty."""
        return self._uids[-1] if self._uids else 0

    def uid_at(self, seq: int) -> int:
        """The UID of message sequence number ``seq`` (1-based, in range)."""
        if not 1 <= seq <= len(self._uids):
            raise IndexError(seq)
        return self._uids[seq - 1]

    def seq_of(self, uid: int) -> int | None:
        i = self._index(uid)
        return None if i is None else i + 1

    def pairs(self, seqs: Iterable[int]) -> list[tuple[int, int]]:
        """``(seq, uid)`` for sequence numbers known to be in 1..len."""
        uids = self._uids
        return [(n, uids[n - 1]) for n in seqs]

    def get(self, uid: int) -> frozenset[str] | None:
        i = self._index(uid)
        return None if i is None else self._flags[i]

    def set(self, uid: int, flags: frozenset[str], seq: int | None = None) -> bool:
        """Replace the flags of a UID in the view; False (nothing done) when absent.

        ``seq``, the UID's sequence number when the caller has it (FETCH and
        STORE walk ``(seq, uid)`` pairs), saves the search: O(1) per message."""
        uids = self._uids
        if seq is not None and 0 < seq <= len(uids) and uids[seq - 1] == uid:
            i: int | None = seq - 1
        else:
            i = self._index(uid)
        if i is None:
            return False
        if self._flags[i] is not flags:
            self._flags[i] = _intern(flags)
        return True

    def set_ascending(self, items: Iterable[tuple[int, frozenset[str]]]) -> None:
        """``set`` for ``(uid, flags)`` in ascending UID order (a STORE's
        result): each search starts where the last one ended."""
        uids, flag_list = self._uids, self._flags
        lo, n = 0, len(uids)
        for uid, flags in items:
            i = bisect.bisect_left(uids, uid, lo, n)
            if i < n and uids[i] == uid:
                if flag_list[i] is not flags:
                    flag_list[i] = _intern(flags)
                lo = i + 1
            else:
                lo = i

    def append(self, uid: int, flags: frozenset[str]) -> None:
        """Add a message above the largest UID (RFC 3501 §2.3.1.1: UIDs ascend)."""
        if self._uids and uid <= self._uids[-1]:
            raise ValueError(f"UID {uid} not above {self._uids[-1]}")
        self._uids.append(uid)
        self._flags.append(_intern(flags))

    def remove(self, uids: builtins.set[int] | frozenset[int]) -> None:
        """Drop these UIDs (those absent are ignored), rebuilding once: O(n)."""
        if not uids:
            return
        keep = [i for i, u in enumerate(self._uids) if u not in uids]
        if len(keep) == len(self._uids):
            return
        old_uids, old_flags = self._uids, self._flags
        self._uids = array("I", [old_uids[i] for i in keep])
        self._flags = [old_flags[i] for i in keep]

    def index_of(self, uid: int) -> int | None:
        """The position of ``uid`` (its sequence number minus one), None when absent."""
        return self._index(uid)

    def columns(self) -> tuple[array[int], list[frozenset[str]]]:
        """The UIDs and their flag sets, position ``i`` being sequence number
        ``i + 1``: the view's own sequences, for a whole-mailbox pass at C
        speed (``flag_answers``).  Read-only for the caller, and only until
        the view next changes (``append``/``remove`` may replace them)."""
        return self._uids, self._flags

    def flag_sets(self) -> Iterator[frozenset[str]]:
        """The flags of every message in sequence order (shared sets repeat)."""
        return iter(self._flags)

    def between(self, low: int, high: int) -> list[int]:
        """The UIDs ``u`` with ``low < u <= high``, ascending."""
        start = bisect.bisect_right(self._uids, low)
        stop = bisect.bisect_right(self._uids, high)
        return self._uids[start:stop].tolist()
