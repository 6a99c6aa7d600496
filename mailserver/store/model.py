"""Typed records the store hands out.  Frozen and slotted; no I/O here."""

from __future__ import annotations

from dataclasses import dataclass

#: Hierarchy delimiter of mailbox names (RFC 3501 §5.1.1).
DELIMITER = "/"

#: Mailboxes every new account starts with, and their RFC 6154 special-use attribute.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
)


@dataclass(frozen=True, slots=True)
class Domain:
    """A local domain: mail to it is delivered here."""

    name: str  # lower-case, IDNA A-label or ASCII


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """What SCRAM-SHA-256 needs of a password (RFC 5802 §3, §9; RFC 7677), kept
    beside the argon2id hash: ``salt`` (octets), ``iterations`` (PBKDF2 count),
    ``stored_key`` = H(ClientKey) and ``server_key`` (32 octets each).  Not the
    password, but a stolen pair lets the thief pose as the server (RFC 5802
    §9): kept as closely as the hash."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True, slots=True)
class Account:
    """A mailbox account: its login address, password hash and quota (bytes).

    ``scram``: the SCRAM-SHA-256 keys of the same password, None for an
    account whose password was set before they existed (made at its next
    password change or successful PLAIN/LOGIN login, ``auth.login``).
    """

    address: str  # "local@domain", domain lower-case; the account's login name
    password_hash: str  # argon2id PHC string (auth.passwords)
    quota: int  # bytes; 0 = unlimited
    used: int  # bytes of messages currently stored across all mailboxes
    #: A disabled account keeps its mail and still receives it but cannot log in.
    disabled: bool = False
    scram: ScramKeys | None = None


@dataclass(frozen=True, slots=True)
class Alias:
    """An address (or ``@domain`` catch-all) delivered to one or more
    targets: local accounts, and addresses elsewhere it is forwarded to."""

    address: str  # "local@domain" or "@domain" (catch-all)
    targets: tuple[str, ...]  # account addresses and remote addresses, in order

    @property
    def target(self) -> str:
        """The first target (an alias of one account: that account)."""
        return self.targets[0]


#: Most targets one alias may have (a mailing list belongs in a list manager).
MAX_ALIAS_TARGETS = 1000


def encode_targets(targets: tuple[str, ...] | list[str]) -> bytes:
    """An alias record's value: the targets, one per line (one target: the
    address alone, the format of aliases written before several were allowed)."""
    return "\n".join(targets).encode()


def decode_targets(value: bytes) -> tuple[str, ...]:
    """Inverse of ``encode_targets``."""
    return tuple(t for t in bytes(value).decode().split("\n") if t)


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    """One mailbox of an account, as committed.

    ``name`` is the UTF-8 name with ``DELIMITER`` between levels; ``INBOX`` is
    always spelt ``INBOX``.  ``id`` is unique in the store and never reused;
    message keys are built from it, so RENAME changes only the name.
    """

    id: int
    account: str
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int  # number of messages
    size: int  # sum of RFC822.SIZE, octets
    subscribed: bool
    special_use: str | None  # "\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", ... or None
    noselect: bool = False  # a hierarchy level only (left by DELETE of a parent, RFC 3501 §6.3.4)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message in one mailbox (RFC 3501 §2.3).

    The message's bytes are ``prefix + blob``: ``prefix`` holds the per-delivery
    trace fields (``Return-Path:``, ``Delivered-To:``; CRLF-terminated lines, may
    be empty) and the blob, shared by every copy, is stored once under
    ``blob_id`` (SHA-256 of the blob bytes).  ``size`` is ``len(prefix) +
    len(blob)`` (RFC822.SIZE).  ``internal_date`` is POSIX seconds and
    ``tz_offset`` the minutes east of UTC it was received in.
    """

    mailbox_id: int
    uid: int
    flags: frozenset[str]  # system flags spelt "\\Seen" etc., keywords as given
    internal_date: int
    tz_offset: int
    size: int
    modseq: int
    blob_id: bytes  # 32 bytes
    prefix: bytes


@dataclass(frozen=True, slots=True)
class Changes:
    """What happened in a mailbox after a given MODSEQ (RFC 7162 §3.1.4 style).

    ``updated`` holds every message whose MODSEQ is above the asked one, new
    arrivals included (a UID above the caller's last known UIDNEXT is new);
    ``expunged`` the UIDs removed after it, ascending.
    """

    mailbox: MailboxInfo
    updated: tuple[MessageRecord, ...]
    expunged: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WriteSpan:
    """A mailbox's HIGHESTMODSEQ just before and just after one write request
    (read inside its transaction): every change with a MODSEQ in
    ``before+1 .. after`` is that request's, so a reader that was current at
    ``before`` can apply the request's own result instead of reading it back."""

    mailbox_id: int
    before: int
    after: int


@dataclass(frozen=True, slots=True)
class RecentClaim:
    """A move of a mailbox's ``\\Recent`` boundary (RFC 3501 §2.3.2) made in
    the same transaction as the write that added messages: UIDs ``old+1 ..
    upto`` are recent for the session that asked, and for no other."""

    mailbox_id: int
    old: int
    upto: int


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to put into one mailbox: used by ``Store.deliver``."""

    account: str
    mailbox: str  # e.g. "INBOX"
    prefix: bytes = b""
    flags: frozenset[str] = frozenset()
