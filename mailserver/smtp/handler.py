"""Policy and delivery hooks called by the adapter (aiosmtpd's ``handle_*`` protocol).

Checks run in named stages, after maddy:

* sender (``handle_MAIL``): on submission listeners the client must be
  authenticated (RFC 6409 §4.3) and the reverse-path must be one of its own
  addresses (RFC 6409 §6.1: the account or an alias resolving to it).
* recipient (``handle_RCPT``): the recipient limit (RFC 5321 §4.5.3.1.8),
  local domain or relay refusal (no open relay), known user, mailbox not full.
* body (``handle_DATA``): trace fields, then one synced store transaction;
  the 250 is sent only after it (RFC 5321 §4.1.1.4: the reply means we took
  responsibility for the message).

A hook that returns a reply string must record the accepted value in the
envelope itself (aiosmtpd only does so when a hook returns nothing).

Every exception becomes a reply in one place: ``errors.smtp_reply``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from mailserver.auth.login import authenticate
from mailserver.config import Config
from mailserver.delivery.local import LocalRecipient, deliver_local
from mailserver.errors import SmtpReply, UserError, smtp_reply
from mailserver.smtp import replies
from mailserver.smtp.adapter import SmtpConnection, Transaction
from mailserver.smtp.trace import (
    new_queue_id,
    received_field,
    submission_fixups,
    with_protocol,
)
from mailserver.store.store import Store

#: RCPT reply when the account is already at or over its quota: temporary,
#: space may be freed (RFC 5321 §4.5.3.1.10 treats a 552 at RCPT as 452 anyway).
log = structlog.get_logger("mailserver.smtp")

MAILBOX_FULL = SmtpReply(452, "4.2.2", "Mailbox full, try again later")


def _ascii_domain(domain: str) -> str:
    """The domain as the store keys it: lower-case, IDNA A-labels (RFC 5891)."""
    domain = domain.lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


class Handler:
    """aiosmtpd hooks for one listener.  Stateless: per-connection state lives on
    the connection, per-transaction state on the ``Transaction`` envelope."""

    def __init__(self, *, store: Store, config: Config, submission: bool) -> None:
        self.store = store
        self.config = config
        self.submission = submission

    # -- AUTH ----------------------------------------------------------------------

    async def authenticate(self, conn: SmtpConnection, username: str, password: str) -> str | None:
        """The account for these credentials, or None (RFC 4954 §4)."""
        return await authenticate(self.store, username, password)

    # -- sender --------------------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SmtpConnection,
        session: Any,
        envelope: Transaction,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Sender stage (RFC 5321 §4.1.1.2; RFC 6409 §4.3, §6.1 on submission)."""
        if self.submission:
            account: str | None = session.auth_data if session.authenticated else None
            if account is None:
                server.log.info("mail_rejected", reason="not authenticated")
                return str(replies.AUTH_REQUIRED)
            owner = (
                None if address == "<>" else self.store.resolve_recipient(self._store_form(address))
            )
            if owner is None or owner.lower() != account.lower():
                server.log.info("mail_rejected", reason="sender not owned", sender=address)
                return str(replies.SENDER_NOT_OWNED)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return str(replies.SENDER_OK)

    # -- recipients ----------------------------------------------------------------

    async def handle_RCPT(
        self,
        server: SmtpConnection,
        session: Any,
        envelope: Transaction,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Recipient stage (RFC 5321 §4.1.1.3)."""
        reply, account = self._check_recipient(session, envelope, address)
        if account is None:
            server.log.info("rcpt_rejected", rcpt=address, reply=reply.code)
            return str(reply)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.local_recipients.append(LocalRecipient(forward_path=address, account=account))
        return str(reply)

    def _store_form(self, address: str) -> str:
        local, _, domain = address.rpartition("@")
        return f"{local}@{_ascii_domain(domain)}"

    def _check_recipient(
        self, session: Any, envelope: Transaction, address: str
    ) -> tuple[SmtpReply, str | None]:
        if len(envelope.rcpt_tos) >= self.config.limits.max_recipients:
            return replies.TOO_MANY_RCPTS, None
        local, at, domain = address.rpartition("@")
        if not at and address.lower() == "postmaster" and self.config.domains:
            # RFC 5321 §4.5.1: "postmaster" without a domain must be accepted.
            local, domain = "postmaster", self.config.domains[0]
        if not local or not domain:
            return replies.RCPT_UNKNOWN, None
        if not self.store.is_local_domain(_ascii_domain(domain)):
            if self.submission and session.authenticated:
                return replies.NO_OUTBOUND, None
            return replies.RELAY_DENIED, None
        account = self.store.resolve_recipient(f"{local}@{_ascii_domain(domain)}")
        if account is None:
            return replies.RCPT_UNKNOWN, None
        record = self.store.get_account(account)
        if record is not None and record.quota and record.used >= record.quota:
            return MAILBOX_FULL, None
        return replies.RCPT_OK, account

    # -- body ----------------------------------------------------------------------

    async def handle_DATA(self, server: SmtpConnection, session: Any, envelope: Transaction) -> str:
        """Body stage: add trace fields, deliver, and only then say 250 (RFC 5321 §4.1.1.4)."""
        queue_id = new_queue_id()
        content = envelope.original_content or b""
        now = dt.datetime.now().astimezone()
        recipients = list(envelope.local_recipients)
        received = received_field(
            helo=session.host_name or "",
            peer_ip=server.peer_ip,
            hostname=self.config.hostname,
            protocol=with_protocol(
                esmtp=session.extended_smtp,
                tls=server.is_tls,
                auth=bool(session.authenticated),
                utf8=envelope.smtp_utf8,
            ),
            queue_id=queue_id,
            recipients=[r.forward_path for r in recipients],
            when=now,
        )
        fixups = (
            submission_fixups(content, hostname=self.config.hostname, when=now)
            if self.submission
            else b""
        )
        blob = received + fixups + content
        reverse_path = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        dlog = server.log.bind(queue_id=queue_id, size=len(blob))
        try:
            await deliver_local(
                self.store,
                reverse_path=reverse_path,
                recipients=recipients,
                blob=blob,
                internal_date=int(now.timestamp()),
                tz_offset=int((now.utcoffset() or dt.timedelta()).total_seconds() // 60),
            )
        except Exception as exc:  # mapped in one place; our faults get a traceback
            reply = smtp_reply(exc)
            if isinstance(exc, UserError):
                dlog.info("delivery_failed", reply=reply.code, reason=str(exc))
            else:
                dlog.exception("delivery_failed", reply=reply.code)
            return str(reply)
        dlog.info("message_delivered", recipients=len(recipients))
        return f"250 2.0.0 Ok: queued as {queue_id}"

    async def handle_exception(self, error: Exception) -> str:
        """A hook or aiosmtpd itself raised: log it, answer per ``errors.smtp_reply``."""
        reply = smtp_reply(error)
        if not isinstance(error, UserError):
            log.error("smtp_exception", exc_info=error, reply=reply.code)
        return str(reply)
