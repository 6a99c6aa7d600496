"""What the admin service returns: frozen, slotted records with plain fields,
ready to print (the command line) or to serialise (the HTTP API).

They carry no secrets: an account's password hash and a DKIM private key
never leave the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """A local domain as the admin API shows it."""

    name: str  # lower case, IDNA A-labels
    configured: bool  # listed under ``domains`` in the configuration (cannot be deleted here)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """An account as the admin API shows it (sizes in octets; no password hash)."""

    address: str  # the login name, "local@domain"
    quota: int  # octets; 0 = unlimited
    used: int  # octets stored across all mailboxes
    disabled: bool = False  # cannot log in (mail is still delivered)


@dataclass(frozen=True, slots=True)
class AliasInfo:
    """An alias as the admin API shows it."""

    address: str  # "local@domain", or "@domain" for a catch-all
    target: str  # the first target
    targets: tuple[str, ...] = ()  # every target: accounts and forwarded-to addresses


@dataclass(frozen=True, slots=True)
class QueueRecipient:
    """One recipient of a queued message and its delivery state."""

    address: str
    status: str  # "pending", "deferred", "delivered" or "failed"
    attempts: int
    last_error: str  # the last remote reply or our diagnosis; "" while none

    @property
    def to_go(self) -> bool:
        """Still to be delivered (pending or deferred)."""
        return self.status in ("pending", "deferred")


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One message of the outbound queue; times are Unix seconds."""

    id: str  # the queue id (opaque)
    sender: str  # the reverse-path, "" for the null one (a DSN)
    created: float
    size: int  # octets
    attempts: int  # delivery rounds so far
    next_attempt: float
    recipients: tuple[QueueRecipient, ...]
    held: bool = False  # taken off the schedule (``hold``) until ``release``
    bounce: str = ""  # the reply of a requested ``bounce``, "" when none

    @property
    def to_go(self) -> int:
        """How many recipients are still to be delivered."""
        return sum(1 for r in self.recipients if r.to_go)


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One resource record to publish, in zone-file terms (RFC 1035 §5.1)."""

    purpose: str  # what it is for, with its RFC: a comment in a zone file
    name: str  # owner name, fully qualified, without the final dot
    type: str  # "MX", "TXT", "SRV"
    value: str  # RDATA; for TXT the text itself, unquoted and unsplit
    ttl: int = 3600

    def zone_line(self) -> str:
        """The record as one zone-file line.  TXT text over 255 octets is split
        into several strings (RFC 1035 §3.3.14: one character-string holds 255)."""
        if self.type == "TXT":
            chunks = [self.value[i : i + 255] for i in range(0, len(self.value), 255)] or [""]
            data = " ".join(f'"{c}"' for c in chunks)
        else:
            data = self.value
        return f"{self.name}. {self.ttl} IN {self.type} {data}"


@dataclass(frozen=True, slots=True)
class DkimKeyInfo:
    """A DKIM signing key stored for a domain (the private key stays on disk)."""

    domain: str
    selector: str
    algorithm: str  # "rsa" or "ed25519"
    path: Path  # the private key file (mode 0600)
    record: DnsRecord  # the TXT record to publish (RFC 6376 §3.6.2.1)
    signing: bool  # the configuration's [dkim] algorithms include this algorithm
    retired: bool = False  # rotated out: signs no more, its record stays until deleted


@dataclass(frozen=True, slots=True)
class LimitCounter:
    """One live abuse-limit counter of the daemon (``limits show``)."""

    window: str  # "minute", "hour" or "day": the sliding window it counts in
    kind: str  # what it counts: ip/net (connections), msg, rcpt, acct, ...
    name: str  # the IP, network (a.b.c.0/24, x:y::/64) or account
    count: float  # the sliding estimate of events in the window


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A bearer token of the HTTP API (``admin.tokens``); the token itself is never kept."""

    name: str  # who the audit log names for the token's changes
    read_only: bool  # may only read (GET); a change is refused with 403
    created: float  # Unix seconds


@dataclass(frozen=True, slots=True)
class MailboxView:
    """One mailbox of an account (RFC 3501 §6.3.10 STATUS's figures, RFC 6154
    special use); sizes in octets."""

    name: str  # UTF-8, levels joined by "/"
    messages: int
    unseen: int
    size: int
    uidvalidity: int
    uidnext: int
    special_use: str | None
    subscribed: bool


@dataclass(frozen=True, slots=True)
class ListenerView:
    """A listener as the running daemon has bound it."""

    name: str
    protocol: str
    address: str
    port: int
    tls: str


@dataclass(frozen=True, slots=True)
class Runtime:
    """What only the running daemon knows about itself: ``pid``, ``started``
    (Unix seconds), ``workers`` and the bound listeners."""

    pid: int
    started: float
    workers: int
    listeners: tuple[ListenerView, ...]


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """``mailserver status`` / ``GET /api/v1/status``: the daemon
    (``runtime``), the outbound queue (messages, age of the oldest in
    seconds, None when empty), the store (octets used of the LMDB map,
    and their ratio) and the connections open now by protocol, across
    every worker."""

    runtime: Runtime
    queue_messages: int
    queue_oldest_age: float | None
    store_used: int
    store_map_size: int
    connections: Mapping[str, int] = field(default_factory=dict)
