"""Key layout of the LMDB databases (one place, so every module agrees).

All integers are big-endian so that LMDB's byte-wise key order is numeric
order: a cursor over ``message_key(mbid, 0)..`` walks a mailbox by ascending
UID, and one over ``modseq_key(mbid, m)..`` walks its changes since MODSEQ m.

=============  ==============================================  =====================
database       key                                             value (``codec.py``)
=============  ==============================================  =====================
meta           b"schema_version", b"next_mailbox_id",           u32 / u64 counters
               b"last_uidvalidity"
meta           b"recent" mailbox id (u64)                       u32: highest UID a
                                                               read-write SELECT saw
meta           b"gonesub\0" account NUL name                   b"": a subscription
                                                               whose mailbox is gone
meta           b"counts" mailbox id (u64)                       unseen, deleted,
                                                               deleted octets (3 u64)
meta           b"sentto\0" account NUL recipient (lower-case)  b"": the account has
                                                               sent to it (limits)
domains        domain name (UTF-8, lower-case)                 b""
accounts       address (lower-case)                            account record
aliases        address or "@domain" (lower-case)               target address
mbnames        account NUL name                                mailbox id (u64)
mailboxes      mailbox id (u64)                                mailbox record
messages       mailbox id (u64) uid (u32)                      message record
modseq         mailbox id (u64) modseq (u64) uid (u32)         b""
expunged       mailbox id (u64) modseq (u64)                   uid (u32)
blobs          SHA-256 of the blob (32 bytes)                  the blob bytes
blobrefs       SHA-256 of the blob (32 bytes)                  refcount (u64) + facts
queue          queue id (ASCII)                                next ms (u64) blob id
                                                               (32) + queue record
queuesched     next attempt ms (u64) queue id                  b""
=============  ==============================================  =====================

The queue databases were added after schema version 1 without changing any
existing layout: ``open_env`` creates them empty in an older store, so the
version stays 1.
"""

from __future__ import annotations

import struct

DB_NAMES = (
    "meta",
    "domains",
    "accounts",
    "aliases",
    "mbnames",
    "mailboxes",
    "messages",
    "modseq",
    "expunged",
    "blobs",
    "blobrefs",
    "queue",
    "queuesched",
)

SCHEMA_VERSION_KEY = b"schema_version"
NEXT_MAILBOX_ID_KEY = b"next_mailbox_id"
#: Change-feed id that stands for the outbound queue (mailbox ids start at 1):
#: queueing or rescheduling wakes the scheduler, in whichever process it runs.
QUEUE_FEED_ID = 0
LAST_UIDVALIDITY_KEY = b"last_uidvalidity"
#: Meta key the writer rewrites after a commit failed on a full disk (its
#: value: Unix ms, of no use): one small commit, so that the pages the last
#: commit freed can be reused (``writer.py``, ``headroom.py``).
DISK_TICK_KEY = b"disk_tick"

U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
_MSG = struct.Struct(">QI")
_MODSEQ = struct.Struct(">QQI")
_EXPUNGED = struct.Struct(">QQ")


def mbname_key(account: str, name: str) -> bytes:
    """``account NUL name``: a prefix scan over ``account NUL`` lists an account's mailboxes.

    Addresses cannot contain NUL (``names.normalize_address`` refuses it), so
    the prefix is unambiguous.
    """
    return account.encode() + b"\0" + name.encode()


def mbname_prefix(account: str) -> bytes:
    """``account NUL``: the mbnames prefix of every mailbox of the account."""
    return account.encode() + b"\0"


def mailbox_key(mailbox_id: int) -> bytes:
    """The mailboxes key (and messages/modseq/expunged prefix): mailbox id as u64."""
    return U64.pack(mailbox_id)


def message_key(mailbox_id: int, uid: int) -> bytes:
    """``mailbox id u64 | uid u32``: 12 bytes, ordered by UID within the mailbox."""
    return _MSG.pack(mailbox_id, uid)


def unpack_message_key(key: bytes) -> tuple[int, int]:
    """``(mailbox id, uid)`` of a messages key; ``struct.error`` unless 12 bytes."""
    return _MSG.unpack(key)


def modseq_key(mailbox_id: int, modseq: int, uid: int) -> bytes:
    """``mailbox id u64 | modseq u64 | uid u32``: a mailbox's changes in MODSEQ order (RFC 7162)."""
    return _MODSEQ.pack(mailbox_id, modseq, uid)


def unpack_modseq_key(key: bytes) -> tuple[int, int, int]:
    """``(mailbox id, modseq, uid)`` of a modseq key; ``struct.error`` unless 20 bytes."""
    return _MODSEQ.unpack(key)


def expunged_key(mailbox_id: int, modseq: int) -> bytes:
    """``mailbox id u64 | modseq u64``: the expunged log, walked from a MODSEQ (RFC 7162 §3.2.5)."""
    return _EXPUNGED.pack(mailbox_id, modseq)


def unpack_expunged_key(key: bytes) -> tuple[int, int]:
    """``(mailbox id, modseq)`` of an expunged key; ``struct.error`` unless 16 bytes."""
    return _EXPUNGED.unpack(key)


def recent_key(mailbox_id: int) -> bytes:
    """Meta key of a mailbox's \\Recent boundary (RFC 3501 §2.3.2; IMAP ``selected.py``).

    Added after schema version 1 without changing any layout: a missing key reads as 0.
    """
    return b"recent" + U64.pack(mailbox_id)


def counts_key(mailbox_id: int) -> bytes:
    """Meta key of a mailbox's flag counters (``codec.encode_counts``): kept by
    every write that changes them (``messages._Box``), so STATUS and SELECT
    answer without walking the messages.  Added after schema version 1 without
    changing any layout: a mailbox without the key is counted by a walk, and
    its first write stores the result."""
    return b"counts" + U64.pack(mailbox_id)


_GONE_SUB = b"gonesub\0"


def gone_sub_key(account: str, name: str) -> bytes:
    """Meta key of a subscription that outlived its mailbox (RFC 3501 §6.3.6: a
    server MUST NOT remove a name from the subscriptions because the mailbox
    went; RFC 5258 §3.1 lists it ``\\NonExistent``).  The subscriptions of
    existing mailboxes stay a bit of their record.  Added after schema version
    1 without changing any layout: no key, no such subscription."""
    return _GONE_SUB + mbname_key(account, name)


def sent_to_key(account: str, recipient: str) -> bytes:
    """The mark that ``account`` has sent mail to ``recipient`` (both lower-cased;
    first-time recipient limits, ``checks/limits.py``)."""
    return b"sentto\0" + account.lower().encode() + b"\0" + recipient.lower().encode()


def gone_sub_prefix(account: str) -> bytes:
    """The prefix of every subscription of ``account`` whose mailbox is gone (RFC 5258 §3.1)."""
    return _GONE_SUB + mbname_prefix(account)


def mailbox_prefix(mailbox_id: int) -> bytes:
    """The 8-byte prefix shared by a mailbox's keys in messages, modseq and expunged."""
    return U64.pack(mailbox_id)


def queue_sched_key(next_ms: int, queue_id: str) -> bytes:
    """``next ms (u64) queue id``: a cursor from the start walks due work in time order."""
    return U64.pack(next_ms) + queue_id.encode("ascii")


def unpack_queue_sched_key(key: bytes) -> tuple[int, str]:
    """``(next attempt in ms since the epoch, queue id)`` of a queuesched key."""
    return U64.unpack_from(key)[0], bytes(key[8:]).decode("ascii")
