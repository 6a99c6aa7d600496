"""Policy and delivery hooks called by the adapter (aiosmtpd's ``handle_*`` protocol).

Checks run in named stages, after maddy:

* sender (``handle_MAIL``): on submission listeners the client must be
  authenticated (RFC 6409 §4.3) and the reverse-path must be one of its own
  addresses (RFC 6409 §6.1: the account or an alias resolving to it).
* recipient (``handle_RCPT``): the recipient limit (RFC 5321 §4.5.3.1.8),
  local domain or relay refusal (no open relay: other domains only for an
  authenticated submission client), known user, mailbox not full.
* body (``handle_DATA``): on submission every ``From:`` mailbox must be the
  user's too (RFC 6409 §6.1); trace fields; then the local recipients'
  synced store transaction and the outbound queue's synced commit
  (``delivery.route``); the 250 is sent only after both (RFC 5321 §4.1.1.4:
  the reply means we took responsibility for the message).

DSN parameters (RFC 3461): the adapter parses them into
``envelope.dsn_offered``; the MAIL and RCPT hooks keep them only when they
accept the command, and DATA hands them to ``delivery.route`` (the queue
for remote recipients, a "delivered" report for local ones).

A hook that returns a reply string must record the accepted value in the
envelope itself (aiosmtpd only does so when a hook returns nothing).

Every exception becomes a reply in one place: ``errors.smtp_reply``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import structlog

from mailserver.auth.login import authenticate
from mailserver.auth.throttle import AuthThrottle
from mailserver.config import Config
from mailserver.delivery.local import LocalRecipient
from mailserver.delivery.route import route_message
from mailserver.errors import SmtpReply, UserError, smtp_reply
from mailserver.protocol.dsn_params import DsnRequest, MailDsn, RcptDsn
from mailserver.protocol.smtp import replies
from mailserver.protocol.smtp.sender import from_addresses
from mailserver.protocol.smtp.trace import (
    new_queue_id,
    received_field,
    submission_fixups,
    with_protocol,
)
from mailserver.protocol.smtp_address import has_control_characters
from mailserver.smtp.adapter import SmtpConnection, Transaction
from mailserver.store.store import Store

if TYPE_CHECKING:
    from mailserver.queue.manager import QueueManager

#: RCPT reply when the account is already at or over its quota: temporary,
#: space may be freed (RFC 5321 §4.5.3.1.10 treats a 552 at RCPT as 452 anyway).
log = structlog.get_logger("mailserver.smtp")

MAILBOX_FULL = SmtpReply(452, "4.2.2", "Mailbox full, try again later")
#: DATA reply when a From: mailbox is not the user's (RFC 6409 §6.1; RFC 3463 5.7.1).
FROM_NOT_OWNED = SmtpReply(553, "5.7.1", "From: header address not owned by the authenticated user")
#: RCPT reply for an address literal (RFC 5321 §4.1.3) on submission: the
#: queue delivers by domain (MX lookup) only.
LITERAL_REFUSED = SmtpReply(550, "5.1.2", "Address literals are not accepted as destinations")


def _ascii_domain(domain: str) -> str:
    """The domain as the store keys it: lower-case, IDNA A-labels (RFC 5891)."""
    domain = domain.lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _dsn_request(envelope: Transaction) -> DsnRequest | None:
    """The transaction's DSN parameters (RFC 3461), None when it had none."""
    if envelope.mail_dsn is None and not envelope.rcpt_dsn:
        return None
    return DsnRequest(envelope.mail_dsn or MailDsn(), dict(envelope.rcpt_dsn))


class Handler:
    """aiosmtpd hooks for one listener.  Stateless: per-connection state lives on
    the connection, per-transaction state on the ``Transaction`` envelope."""

    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        submission: bool,
        queue: QueueManager | None = None,
        throttle: AuthThrottle | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.submission = submission
        self.queue = queue  # None: remote recipients are refused with 451 4.3.0
        limits = config.limits
        self.throttle = throttle or AuthThrottle(
            limits.auth_failure_delay, limits.auth_failure_delay_max
        )

    # -- AUTH ----------------------------------------------------------------------

    async def authenticate(self, conn: SmtpConnection, username: str, password: str) -> str | None:
        """The account for these credentials, or None (RFC 4954 §4)."""
        return await authenticate(self.store, username, password)

    def auth_failed(self, conn: SmtpConnection) -> float:
        """Count a failure of ``conn``'s client IP; the delay before the 535 (seconds)."""
        return self.throttle.record_failure(conn.peer_ip)

    # -- sender --------------------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SmtpConnection,
        session: Any,
        envelope: Transaction,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Sender stage (RFC 5321 §4.1.1.2; RFC 6409 §4.3, §6.1 on submission).

        A reverse-path with a control character is a syntax error (``501 5.1.7``,
        RFC 5321 §4.1.2): it would end up in the ``Return-Path:`` field."""
        if has_control_characters(address):
            server.log.info("mail_rejected", reason="control character in path")
            return str(replies.BAD_SENDER_SYNTAX)
        if self.submission:
            account: str | None = session.auth_data if session.authenticated else None
            if account is None:
                server.log.info("mail_rejected", reason="not authenticated")
                return str(replies.AUTH_REQUIRED)
            if not self._owns(account, address):
                server.log.info("mail_rejected", reason="sender not owned", sender=address)
                return str(replies.SENDER_NOT_OWNED)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        if isinstance(envelope.dsn_offered, MailDsn):
            envelope.mail_dsn = envelope.dsn_offered
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
        """Recipient stage (RFC 5321 §4.1.1.3).  A forward-path with a control
        character is a syntax error (``501 5.1.3``, RFC 5321 §4.1.2)."""
        if has_control_characters(address):
            server.log.info("rcpt_rejected", reason="control character in path")
            return str(replies.BAD_RCPT_SYNTAX)
        reply, account = self._check_recipient(session, envelope, address)
        if reply.code != 250:
            server.log.info("rcpt_rejected", rcpt=address, reply=reply.code)
            return str(reply)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        if isinstance(envelope.dsn_offered, RcptDsn):
            envelope.rcpt_dsn.setdefault(address, envelope.dsn_offered)
        if account is None:
            envelope.remote_recipients.append(address)
        else:
            envelope.local_recipients.append(LocalRecipient(forward_path=address, account=account))
        return str(reply)

    def _store_form(self, address: str) -> str:
        local, _, domain = address.rpartition("@")
        return f"{local}@{_ascii_domain(domain)}"

    def _owns(self, account: str, address: str) -> bool:
        """Whether ``address`` is ``account``'s own: the account itself or an alias
        (or ``+tag`` form) resolving to it.  The null path is nobody's."""
        if address in ("", "<>") or "@" not in address:
            return False
        owner = self.store.resolve_recipient(self._store_form(address))
        return owner is not None and owner.lower() == account.lower()

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
        found = self.store.lookup_recipient(f"{local}@{_ascii_domain(domain)}")
        if not found.local_domain:
            if not (self.submission and session.authenticated):
                return replies.RELAY_DENIED, None  # RFC 5321 §3.6.2: no open relay
            if self.queue is None:
                return replies.NO_OUTBOUND, None
            if domain.startswith("["):
                return LITERAL_REFUSED, None
            return replies.RCPT_OK, None  # queued for the remote domain at DATA
        if found.account is None:
            return replies.RCPT_UNKNOWN, None
        if found.full:
            return MAILBOX_FULL, None
        return replies.RCPT_OK, found.account

    # -- body ----------------------------------------------------------------------

    async def handle_DATA(self, server: SmtpConnection, session: Any, envelope: Transaction) -> str:
        """Body stage: check From:, add trace fields, deliver locally and queue the
        rest, and only then say 250 (RFC 5321 §4.1.1.4)."""
        queue_id = new_queue_id()
        content = envelope.original_content or b""
        if self.submission:
            refusal = self._check_from(session.auth_data, content)
            if refusal is not None:
                server.log.info("data_rejected", reason=refusal.text)
                return str(refusal)
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
            recipients=[r.forward_path for r in recipients] + list(envelope.remote_recipients),
            when=now,
        )
        fixups = (
            submission_fixups(content, hostname=self.config.hostname, when=now)
            if self.submission
            else b""
        )
        blob = received + fixups + content
        reverse_path = "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)
        dlog = server.log
        fields = {"queue_id": queue_id, "size": len(blob)}  # not a bind: one line on success
        try:
            outbound_id = await route_message(
                self.store,
                self.queue,
                reverse_path=reverse_path,
                local=recipients,
                remote=envelope.remote_recipients,
                blob=blob,
                internal_date=int(now.timestamp()),
                tz_offset=int((now.utcoffset() or dt.timedelta()).total_seconds() // 60),
                dsn=_dsn_request(envelope),
                reporting_mta=self.config.hostname,
            )
        except Exception as exc:  # mapped in one place; our faults get a traceback
            reply = smtp_reply(exc)
            if isinstance(exc, UserError):
                dlog.info("delivery_failed", **fields, reply=reply.code, reason=str(exc))
            else:
                dlog.exception("delivery_failed", **fields, reply=reply.code)
            return str(reply)
        dlog.info("message_delivered", **fields, recipients=len(recipients),
                  remote=len(envelope.remote_recipients), outbound_id=outbound_id)
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def _check_from(self, account: str | None, content: bytes) -> SmtpReply | None:
        """RFC 6409 §6.1: every From: mailbox must be the user's; None when fine."""
        if account is None:  # handle_MAIL makes this unreachable
            return replies.AUTH_REQUIRED
        # A message without From: (RFC 5322 §3.6 requires one) claims no author:
        # accepted as is, like the MAIL FROM check it cannot impersonate anyone;
        # the queue leaves it unsigned (RFC 6376 §5.4 signs From).
        authors = from_addresses(content)
        if not all(self._owns(account, a) for a in authors):
            return FROM_NOT_OWNED
        return None

    async def handle_exception(self, error: Exception) -> str:
        """A hook or aiosmtpd itself raised: log it, answer per ``errors.smtp_reply``."""
        reply = smtp_reply(error)
        if not isinstance(error, UserError):
            log.error("smtp_exception", exc_info=error, reply=reply.code)
        return str(reply)
