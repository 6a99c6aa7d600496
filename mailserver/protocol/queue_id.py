"""Queue ids: the one id a message has, from the SMTP 250 reply to the last log line.

Like Postfix's queue id, it is chosen when the message is accepted, before
the ``Received:`` field is written (``id ...``, RFC 5321 §4.4), and then
names the message everywhere: the ``250 2.0.0 Ok: queued as ID`` reply, the
outbound queue record and its store key, ``mailserver queue show ID``, the
``X-Queue-ID`` of a DSN about it, and the ``queue_id`` field of every log
line (``mailserver.smtp``, ``mailserver.delivery``, ``mailserver.queue``).
Anything that queues a message of its own (a DSN, the bench, tests) takes a
fresh one from here too.

Format: 17 characters of the alphabet ``0-9`` plus the consonants
``BCDFGHJKLMNPQRSTVWXZ`` (base 30, no vowels so no words, no I/O/U/Y to
misread; every character is valid in a file name, a store key and an
RFC 5322 atom), in three fixed-width fields::

    MMMMMMMMM PPPPP SSS
    |         |     +-- sequence within the millisecond (30**3 per ms)
    |         +-------- process id (30**5 > Linux's pid_max 2**22)
    +------------------ Unix time in milliseconds (30**9 ms: until the year 2594)

Every field is big-endian in an alphabet in ASCII order, so ids sort by
creation time as plain strings (``queue list``, the store's key order).

Uniqueness: within a process the (time, sequence) pair only grows: the time
never goes backwards even if the wall clock does, and a millisecond whose
30**3 sequence numbers are used up borrows the next one.  Processes running
at the same time differ in their pid; a later process that reuses a pid
starts at a later millisecond (unless the clock was stepped back across a
restart, and even then the store refuses an id that is taken, so the worst
case is a ``451`` the client retries).  The state is reset in a forked child
(``os.register_at_fork``), so workers never share a pid field they did not
earn.  No system call per id: ingress calls this once per message.

Ids written by earlier versions (20 lower-case hex digits, or 12 characters)
are still valid keys: the queue treats an id as an opaque ASCII string.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXZ"
_BASE = len(ALPHABET)
_TIME_WIDTH, _PID_WIDTH, _SEQ_WIDTH = 9, 5, 3
#: Length of a new queue id.
LENGTH = _TIME_WIDTH + _PID_WIDTH + _SEQ_WIDTH
_SEQ_LIMIT = _BASE**_SEQ_WIDTH

#: What the queue accepts as an id (also those of earlier versions): 1-64
#: visible ASCII characters that are safe on a command line and in a header.
VALID = re.compile(r"[0-9A-Za-z]{1,64}")


def _encode(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, digit = divmod(n, _BASE)
        out.append(ALPHABET[digit])
    return "".join(reversed(out))


#: Every two-character string in order: encoding two digits per step makes an id
#: cost about as much as the 12-character random-prefix ids it replaced.
_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]
_PAIR = _BASE * _BASE


def _encode_time(ms: int) -> str:
    """``_encode(ms, 9)``, unrolled."""
    ms, d4 = divmod(ms, _PAIR)
    ms, d3 = divmod(ms, _PAIR)
    ms, d2 = divmod(ms, _PAIR)
    ms, d1 = divmod(ms, _PAIR)
    return ALPHABET[ms % _BASE] + _PAIRS[d1] + _PAIRS[d2] + _PAIRS[d3] + _PAIRS[d4]


class QueueIds:
    """A generator of queue ids (see the module docstring); ``ids()`` -> a new id.

    ``clock``: Unix seconds (tests); ``pid``: the process id (tests), else
    ``os.getpid()`` at creation and again in a forked child.
    """

    def __init__(self, clock: Callable[[], float] = time.time, pid: int | None = None) -> None:
        self._clock = clock
        self._fixed_pid = pid
        self._reset()

    def _reset(self) -> None:
        pid = os.getpid() if self._fixed_pid is None else self._fixed_pid
        self._pid_field = _encode(pid % _BASE**_PID_WIDTH, _PID_WIDTH)
        self._last_ms = -1
        self._seq = 0

    def __call__(self) -> str:
        """A new queue id: 17 ASCII characters that sort by creation time (module doc)."""
        ms = int(self._clock() * 1000)
        if ms > self._last_ms:
            self._last_ms, self._seq = ms, 0
        else:  # same millisecond, or the clock went back: keep counting up
            self._seq += 1
            if self._seq == _SEQ_LIMIT:
                self._last_ms, self._seq = self._last_ms + 1, 0
        seq = self._seq
        return (_encode_time(self._last_ms) + self._pid_field
                + ALPHABET[seq // _PAIR] + _PAIRS[seq % _PAIR])


def created_ms(queue_id: str) -> int | None:
    """The creation time (Unix milliseconds) of an id made here, None for another shape."""
    if len(queue_id) != LENGTH or any(c not in ALPHABET for c in queue_id):
        return None
    n = 0
    for c in queue_id[:_TIME_WIDTH]:
        n = n * _BASE + ALPHABET.index(c)
    return n


#: The process's generator: ``new_queue_id()`` -> a fresh queue id.
new_queue_id = QueueIds()
os.register_at_fork(after_in_child=new_queue_id._reset)
