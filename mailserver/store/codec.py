"""Compact binary records (``struct``), not JSON: SELECT decodes every message
record of a mailbox, so the message record is a fixed 65-byte header plus two
short variable parts, and decoding interns the flag sets.

Message record::

    internal_date q | tz_offset h | size Q | modseq Q | blob_id 32s |
    system flags B | keywords length H | prefix length I | keywords | prefix

System flags are a bit set (RFC 3501 §2.3.2); keywords are joined by a space
(``flag-keyword`` is an atom, which cannot contain one).
"""

from __future__ import annotations

import struct

from mailserver.errors import Cannot
from mailserver.store.model import Account, MailboxInfo, MessageRecord, ScramKeys

# -- flags -------------------------------------------------------------------------

#: RFC 3501 §2.3.2 system flags we store, in bit order.  ``\Recent`` is a
#: session property (the IMAP layer computes it) and is never stored.
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
_BIT = {f.lower(): 1 << i for i, f in enumerate(SYSTEM_FLAGS)}
_CANON = {f.lower(): f for f in SYSTEM_FLAGS}
DELETED_BIT = _BIT["\\deleted"]
SEEN_BIT = _BIT["\\seen"]
# atom-specials (RFC 3501 §9) and the space that separates stored keywords.
_NOT_ATOM = set('(){ %*"\\]')


def normalize_flags(flags: frozenset[str] | set[str] | tuple[str, ...]) -> frozenset[str]:
    """System flags spelt canonically (they are case-insensitive), ``\\Recent`` dropped,
    keywords kept as given."""
    out = set()
    for f in flags:
        low = f.lower()
        if low == "\\recent":
            continue
        canon = _CANON.get(low)
        if canon is None:
            # A flag-keyword is an atom (RFC 3501 §9); the encoding joins them by spaces.
            if not f or f.startswith("\\") or any(c in f for c in _NOT_ATOM) or not f.isprintable():
                raise Cannot(f"invalid flag {f!r}")
            canon = f
        out.add(canon)
    if sum(len(f) + 1 for f in out) > 8192:
        raise Cannot("too many keywords")
    return frozenset(out)


def encode_flags(flags: frozenset[str]) -> tuple[int, bytes]:
    """``(system bits, keywords bytes)`` of already normalised flags."""
    bits = 0
    keywords = []
    for f in flags:
        bit = _BIT.get(f.lower())
        if bit is None:
            keywords.append(f)
        else:
            bits |= bit
    return bits, " ".join(sorted(keywords)).encode()


_flag_cache: dict[tuple[int, bytes], frozenset[str]] = {}


def decode_flags(bits: int, keywords: bytes) -> frozenset[str]:
    """Interned: mailboxes share few distinct flag sets, so SELECT allocates few sets."""
    key = (bits, keywords)
    got = _flag_cache.get(key)
    if got is None:
        out = [f for i, f in enumerate(SYSTEM_FLAGS) if bits & (1 << i)]
        if keywords:
            out.extend(keywords.decode().split(" "))
        got = frozenset(out)
        if len(_flag_cache) < 4096:  # bound the cache against keyword-spraying clients
            _flag_cache[key] = got
    return got


# -- messages ----------------------------------------------------------------------

_MSG = struct.Struct(">qhQQ32sBHI")
MSG_HEADER_SIZE = _MSG.size
_unpack_msg = _MSG.unpack_from
_BITS_OFFSET = struct.calcsize(">qhQQ32s")


def encode_message(rec: MessageRecord) -> bytes:
    """The message record as bytes (layout in the module docstring); flags must be normalised."""
    bits, keywords = encode_flags(rec.flags)
    return (
        _MSG.pack(
            rec.internal_date,
            rec.tz_offset,
            rec.size,
            rec.modseq,
            rec.blob_id,
            bits,
            len(keywords),
            len(rec.prefix),
        )
        + keywords
        + rec.prefix
    )


def decode_message(mailbox_id: int, uid: int, data: bytes) -> MessageRecord:
    """``data`` must be ``bytes`` (read transactions use ``buffers=False``)."""
    date, tz, size, modseq, blob_id, bits, klen, plen = _unpack_msg(data)
    h = MSG_HEADER_SIZE
    if klen:
        flags = decode_flags(bits, data[h : h + klen])
    else:
        flags = _flag_cache.get((bits, b"")) or decode_flags(bits, b"")
    return MessageRecord(
        mailbox_id,
        uid,
        flags,
        date,
        tz,
        size,
        modseq,
        blob_id,
        data[h + klen : h + klen + plen] if plen else b"",
    )


def restamped_record(mailbox_id: int, uid: int, data: bytes, modseq: int,
                     flags: frozenset[str]) -> MessageRecord:
    """The record ``restamp_message(data, modseq, flags)`` encodes, built from
    ``data`` (the record before) without decoding its flags again."""
    date, tz, size, _, blob_id, _, klen, plen = _unpack_msg(data)
    start = MSG_HEADER_SIZE + klen
    return MessageRecord(mailbox_id, uid, flags, date, tz, size, modseq, blob_id,
                         data[start:start + plen] if plen else b"")


_FLAGS_PART = struct.Struct(">BH")  # system flags, keywords length
_SIZE_AT = struct.calcsize(">qh")
_U64 = struct.Struct(">Q")
_TAIL = struct.Struct(">BHI")  # system flags, keywords length, prefix length
_MODSEQ_AT = struct.calcsize(">qhQ")
_BLOB_AT = _MODSEQ_AT + 8
_encoded: dict[frozenset[str], tuple[int, bytes]] = {}


def message_modseq(data: bytes) -> int:
    """The MODSEQ of a record without decoding the rest (STORE's UNCHANGEDSINCE)."""
    modseq: int = _U64.unpack_from(data, _MODSEQ_AT)[0]
    return modseq


def restamp_message(data: bytes, modseq: int, flags: frozenset[str]) -> bytes:
    """The record ``data`` with new flags (already normalised) and MODSEQ,
    everything else copied as is: STORE's write without a decode and encode."""
    got = _encoded.get(flags)
    if got is None:
        got = encode_flags(flags)
        if len(_encoded) < 4096:  # bounded like ``_flag_cache``
            _encoded[flags] = got
    bits, keywords = got
    _, klen, plen = _TAIL.unpack_from(data, _BITS_OFFSET)
    start = MSG_HEADER_SIZE + klen
    return b"".join((
        data[:_MODSEQ_AT], _U64.pack(modseq), data[_BLOB_AT:_BITS_OFFSET],
        _TAIL.pack(bits, len(keywords), plen), keywords, data[start:start + plen],
    ))


def decode_message_flags(data: bytes) -> frozenset[str]:
    """The flag set of a record without decoding the rest (SELECT's scan)."""
    bits, klen = _FLAGS_PART.unpack_from(data, _BITS_OFFSET)
    if klen:
        return decode_flags(bits, data[MSG_HEADER_SIZE : MSG_HEADER_SIZE + klen])
    return _flag_cache.get((bits, b"")) or decode_flags(bits, b"")


def message_bits_and_size(data: bytes) -> tuple[int, int]:
    """``(system flag bits, RFC822.SIZE)`` of a record (STATUS counts)."""
    return data[_BITS_OFFSET], _U64.unpack_from(data, _SIZE_AT)[0]


def message_is_deleted(data: bytes) -> bool:
    """Whether the record has ``\\Deleted`` without decoding all of it (EXPUNGE scans)."""
    return bool(data[_BITS_OFFSET] & DELETED_BIT)


_COUNTS = struct.Struct(">QQQ")


def encode_counts(unseen: int, deleted: int, deleted_size: int) -> bytes:
    """A mailbox's flag counters (``keys.counts_key``): messages without
    ``\\Seen``, with ``\\Deleted``, and the octets of the latter; 3 u64."""
    return _COUNTS.pack(unseen, deleted, deleted_size)


def decode_counts(data: bytes) -> tuple[int, int, int]:
    """``(unseen, deleted, deleted octets)``; ``struct.error`` unless 24 bytes."""
    unseen, deleted, deleted_size = _COUNTS.unpack(data)
    return unseen, deleted, deleted_size


# -- accounts ----------------------------------------------------------------------

_ACCOUNT = struct.Struct(">QQ")


# A disabled account's hash is stored behind "!" (as /etc/shadow locks one):
# no PHC string starts with it, so records written before the flag existed
# read as enabled and need no migration.
_DISABLED = "!"
# The SCRAM keys follow the hash behind a NUL, which no PHC string contains:
# records written before them end with the hash and read back without keys.
_SCRAM_MARK = b"\0"
_SCRAM = struct.Struct(">BIB")  # kind (1: SCRAM-SHA-256), iterations, salt length
_SCRAM_SHA_256 = 1
_SCRAM_KEY = 32


def encode_account(acc: Account) -> bytes:
    """``quota u64 | used u64 | ["!"] password hash (UTF-8) | [NUL scram]``; "!"
    marks a disabled account; scram is ``kind u8 | iterations u32 | salt
    length u8 | salt | StoredKey 32 | ServerKey 32``; the address is the key,
    not stored.  Raises ValueError for a hash that would read back as the
    disabled mark or holds a NUL, or malformed keys."""
    if acc.password_hash.startswith(_DISABLED) or "\0" in acc.password_hash:
        raise ValueError("a password hash must not start with '!' nor hold a NUL")
    stored = _DISABLED + acc.password_hash if acc.disabled else acc.password_hash
    out = _ACCOUNT.pack(acc.quota, acc.used) + stored.encode()
    keys = acc.scram
    if keys is not None:
        out += _SCRAM_MARK + encode_scram(keys)
    return out


def encode_scram(keys: ScramKeys) -> bytes:
    """``kind u8 | iterations u32 | salt length u8 | salt | StoredKey 32 |
    ServerKey 32``: SCRAM-SHA-256 keys as both backends store them.  Raises
    ValueError for keys that are not 32 octets."""
    if len(keys.stored_key) != _SCRAM_KEY or len(keys.server_key) != _SCRAM_KEY:
        raise ValueError("SCRAM-SHA-256 keys are 32 octets")
    return (_SCRAM.pack(_SCRAM_SHA_256, keys.iterations, len(keys.salt))
            + keys.salt + keys.stored_key + keys.server_key)


def decode_scram(data: bytes) -> ScramKeys | None:
    """``encode_scram`` read back; None for a kind a newer version wrote."""
    return _decode_scram(data)


def _decode_scram(data: bytes) -> ScramKeys | None:
    kind, iterations, salt_len = _SCRAM.unpack_from(data)
    if kind != _SCRAM_SHA_256:  # written by a newer version: not ours to use
        return None
    at = _SCRAM.size
    salt = data[at : at + salt_len]
    at += salt_len
    return ScramKeys(salt, iterations, data[at : at + _SCRAM_KEY],
                     data[at + _SCRAM_KEY : at + 2 * _SCRAM_KEY])


def decode_account(address: str, data: bytes) -> Account:
    """The account record read back; ``address`` is its key.  ``data``: bytes or a buffer."""
    quota, used = _ACCOUNT.unpack_from(data)
    raw = bytes(data[_ACCOUNT.size :])
    text, mark, scram_part = raw.partition(_SCRAM_MARK)
    scram = _decode_scram(scram_part) if mark else None
    stored = text.decode()
    if stored.startswith(_DISABLED):
        return Account(address, stored[1:], quota, used, disabled=True, scram=scram)
    return Account(address, stored, quota, used, scram=scram)


# -- mailboxes ---------------------------------------------------------------------

_MAILBOX = struct.Struct(">IIQQQBHH")
_SUBSCRIBED = 1
_NOSELECT = 2


def encode_mailbox(mb: MailboxInfo) -> bytes:
    """The mailbox record: counters, subscribed/noselect bits, special-use, account, name."""
    special = (mb.special_use or "").encode()
    account = mb.account.encode()
    bits = (_SUBSCRIBED if mb.subscribed else 0) | (_NOSELECT if mb.noselect else 0)
    return (
        _MAILBOX.pack(
            mb.uidvalidity,
            mb.uidnext,
            mb.highestmodseq,
            mb.messages,
            mb.size,
            bits,
            len(special),
            len(account),
        )
        + special
        + account
        + mb.name.encode()
    )


def mailbox_highestmodseq(data: bytes) -> int:
    """HIGHESTMODSEQ of an encoded mailbox record, without decoding the rest."""
    return int(_MAILBOX.unpack_from(data)[2])


def decode_mailbox(mailbox_id: int, data: bytes) -> MailboxInfo:
    """The mailbox record read back; ``mailbox_id`` is its key.  ``data``: bytes or a buffer."""
    uidvalidity, uidnext, hms, messages, size, bits, slen, alen = _MAILBOX.unpack_from(data)
    data = bytes(data)
    h = _MAILBOX.size
    special = data[h : h + slen].decode() or None
    account = data[h + slen : h + slen + alen].decode()
    name = data[h + slen + alen :].decode()
    return MailboxInfo(
        id=mailbox_id,
        account=account,
        name=name,
        uidvalidity=uidvalidity,
        uidnext=uidnext,
        highestmodseq=hms,
        messages=messages,
        size=size,
        subscribed=bool(bits & _SUBSCRIBED),
        special_use=special,
        noselect=bool(bits & _NOSELECT),
    )


# -- blob references ---------------------------------------------------------------


def encode_blobref(refcount: int, facts: bytes) -> bytes:
    """A blobrefs value: ``refcount u64`` then the blob's facts bytes as they are."""
    return _U64.pack(refcount) + facts


def decode_blobref(data: bytes) -> tuple[int, bytes]:
    """``(refcount, facts bytes)`` of a blobrefs value."""
    return _U64.unpack_from(data)[0], bytes(data[8:])
