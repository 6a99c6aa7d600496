"""The delivery seam (after maddy): what the SMTP side may know of delivery.

One message's delivery is begun with the reverse-path, gets its recipients
one by one, and is then committed with the message bytes or aborted::

    delivery = target.begin(reverse_path, mail_dsn)     # MAIL accepted
    delivery.add_recipient(forward_path, account, dsn)  # each RCPT accepted
    message_id = await delivery.commit(blob, ...)       # DATA: 250 after this
    delivery.abort()                                    # RSET, refusal, hang-up

Invariant: nothing is persisted before ``commit``, and when ``commit``
returns the message is durable for every recipient (RFC 5321 §4.1.1.4); when
it raises, the client gets the mapped reply (``errors.smtp_reply``).

The SMTP code depends on these protocols only; ``delivery.route`` implements
them over the store (local recipients) and the outbound queue (the rest), and
``app.py`` wires the concrete pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mailserver.protocol.dsn_params import DsnRequest, MailDsn, RcptDsn
    from mailserver.store.model import MessageRecord, NewMessage


@dataclass(frozen=True, slots=True)
class LocalRecipient:
    """One accepted RCPT: the forward-path as the client gave it and the account it maps to."""

    forward_path: str
    account: str


class Delivery(Protocol):
    """One message on its way: recipients, then ``commit`` or ``abort``."""

    def add_recipient(self, forward_path: str, account: str | None, dsn: RcptDsn | None) -> None:
        """A recipient: ``account`` the local account it resolves to, None for a
        remote one (the outbound queue's).  ``dsn``: its RFC 3461 NOTIFY/ORCPT."""
        ...

    def add_forward(self, forward_path: str, targets: Sequence[str]) -> None:
        """An alias's remote ``targets`` for the accepted ``forward_path``: a
        copy is forwarded to them (``delivery/forward.py``) at ``commit``."""
        ...

    async def commit(self, blob: bytes, *, queue_id: str, internal_date: int, tz_offset: int,
                     quarantine: bool = False, score_junk: bool = False) -> str | None:
        """Store and queue ``blob`` durably; returns the outbound queue's id (None: no
        remote recipients).  ``queue_id``: the message's id in our logs and trace
        fields; ``internal_date`` POSIX seconds; ``tz_offset`` minutes east of UTC;
        ``quarantine``: a stage asked to keep it away from the inbox;
        ``score_junk``: the junk filter scores the local copies (mail from the
        MX, not submissions).  Raises
        ``MailserverError`` (mapped to a reply); then nothing local was stored."""
        ...

    def abort(self) -> None:
        """Forget the message (nothing was persisted)."""
        ...


class DeliveryTarget(Protocol):
    """Where accepted mail goes: begins one ``Delivery`` per transaction."""

    @property
    def outbound(self) -> bool:
        """Whether remote recipients can be taken (an outbound queue exists)."""
        ...

    def begin(self, reverse_path: str, mail_dsn: MailDsn | None, *,
              requiretls: bool = False) -> Delivery:
        """A delivery from ``reverse_path`` ("" for the null reverse-path);
        ``requiretls``: MAIL carried REQUIRETLS (RFC 8689 §4.1), the queue must
        send it to remote recipients over verified TLS only."""
        ...


class Outbound(Protocol):
    """What delivery needs of the outbound queue."""

    async def enqueue(self, reverse_path: str, recipients: Sequence[str], message: bytes, *,
                      dsn: DsnRequest | None = None, queue_id: str | None = None,
                      requiretls: bool = False) -> str:
        """Queue ``message`` (bytes, CRLF) for ``recipients`` in one synced commit
        under ``queue_id`` (the message's id; None: a new one); returns the id.
        ``requiretls``: the message came with REQUIRETLS (RFC 8689 §4.1).
        Raises ``ValueError`` (bad id or path), ``MailserverError`` (store)."""
        ...


class LocalStore(Protocol):
    """What delivery needs of the store (``store.api.StoreDelivery``):
    coroutines, so that a store across the network (PostgreSQL) fits too."""

    async def recipient_account(self, address: str) -> str | None:
        """The account ``address`` (domain in A-labels) delivers to, or None."""
        ...

    async def deliver(self, targets: Sequence[NewMessage], blob: bytes, facts: bytes, *,
                      internal_date: int, tz_offset: int) -> list[MessageRecord]:
        """Store ``blob`` in every target mailbox in one synced commit (seconds
        since the epoch, offset in minutes); one record per target.  Raises
        ``MailserverError`` (over quota, store full)."""
        ...


class DeliveredReport(Protocol):
    """Builds a "delivered" DSN (RFC 3461 §6.2, RFC 3464): the queue's DSN writer."""

    def __call__(self, *, reporting_mta: str, reverse_path: str,
                 recipients: Sequence[tuple[str, RcptDsn]], original: bytes,
                 arrival_date: float, queue_id: str, envid: str | None) -> bytes:
        """The DSN message (bytes, CRLF) for ``recipients`` (address, RCPT's DSN parameters).

        ``original``: the message as received; ``arrival_date``: seconds since the
        epoch; ``envid``: MAIL's ENVID= (RFC 3461 §4.4), None when not given.
        """
        ...
