"""``SmtpHooks``: what the connection calls at MAIL, RCPT and DATA (``handle_*``).

The hooks know no rule: they run the listener's check pipeline
(``mailserver.checks``; the stages are built from the configuration in
``app.build_stages``) and turn its outcome into a reply, then hand accepted
transactions to delivery:

* MAIL: the connect and HELO stages (once per connection, see
  ``checks.stage``), then the MAIL stages; the reverse-path is set on the
  transaction while they run (``ctx.mail_from``) and taken back on refusal.
* RCPT: the forward-path is looked up once (``RecipientFacts``), the RCPT
  stages judge it, and an accepted one is routed: a local account or, on
  authenticated submission, a remote recipient for the queue.
* DATA: the DATA stages; then trace fields (and the stages' header fields),
  the local recipients' synced store transaction and the outbound queue's
  synced commit (the ``delivery`` target, ``delivery.interface``); the 250 is sent only after both
  (RFC 5321 §4.1.1.4: the reply means we took responsibility for the message).

DSN parameters (RFC 3461): the adapter parses them into
``envelope.dsn_offered``; the MAIL and RCPT hooks keep them only when they
accept the command, and hand them to the delivery (the queue
for remote recipients, a "delivered" report for local ones).

A hook that returns a reply string must record the accepted value in the
envelope itself (the connection only does so when there is no hook).

Every exception becomes a reply in one place: ``errors.smtp_reply``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from mailserver import analytics
from mailserver.analytics import FlowEvent, Kind, domain_of, result_of
from mailserver.checks.rules import store_form
from mailserver.checks.stage import Outcome, Pipeline, RecipientFacts
from mailserver.config import Config
from mailserver.counters import Counters, LocalCounters
from mailserver.counters.logins import LoginGuard
from mailserver.delivery.interface import DeliveryTarget, LocalRecipient
from mailserver.errors import MailserverError, UserError, smtp_reply
from mailserver.metrics import instruments
from mailserver.protocol.dsn_params import MailDsn, RcptDsn
from mailserver.protocol.line_endings import to_crlf
from mailserver.protocol.queue_id import new_queue_id
from mailserver.protocol.smtp import replies
from mailserver.protocol.smtp.trace import (
    received_field,
    submission_fixups,
    with_protocol,
)
from mailserver.smtp.adapter import SmtpConnection, Transaction

if TYPE_CHECKING:
    from mailserver.auth.scram import ScramLogins
    from mailserver.dns.resolver import Resolver


class RecipientStatus(Protocol):
    """The directory's answer for one forward-path (``store.RecipientStatus``)."""

    @property
    def local_domain(self) -> bool:
        """True when the forward-path's domain is one of ours."""
        ...

    @property
    def account(self) -> str | None:
        """The account it delivers to; None: nobody (or not a local domain)."""
        ...

    @property
    def full(self) -> bool:
        """True when that account is at or over its quota."""
        ...

    @property
    def accounts(self) -> tuple[str, ...]:
        """Every account an alias of several targets reaches."""
        ...

    @property
    def forwards(self) -> tuple[str, ...]:
        """The remote addresses an alias forwards to."""
        ...


class SentToMemory(Protocol):
    """Whom an account has sent to (``Store.has_sent_to``/``remember_sent``)."""

    async def has_sent_to(self, account: str, recipient: str) -> bool:
        """Whether ``account`` sent mail to ``recipient`` before."""
        ...

    async def remember_sent(self, account: str, recipients: Sequence[str]) -> None:
        """Mark ``recipients`` as sent to by ``account``."""
        ...


class RecipientDirectory(Protocol):
    """What RCPT needs of the directory: one read per forward-path (domain in
    A-labels); a coroutine, as ``store.api.Directory``."""

    async def recipient_status(self, address: str) -> RecipientStatus:
        """The directory's answer for ``address`` (``local@domain``, domain in A-labels)."""
        ...


#: Checks credentials (RFC 4954): the account, or None.
Authenticator = Callable[[str, str], Awaitable["str | None"]]

log = structlog.get_logger("mailserver.smtp")


def _tls_info(server: Any) -> tuple[str, str, int] | None:
    """``(version, cipher, secret bits)`` of the session's TLS, None in clear."""
    transport = getattr(server, "transport", None)
    ssl_object = None if transport is None else transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    if not cipher:
        return None
    name, version, bits = cipher
    return (ssl_object.version() or version or "TLS", name, int(bits or 0))


def _header_fields(outcome: Outcome) -> bytes:
    """The stages' header fields, one ``Name: value`` CRLF each (RFC 5322 §2.2)."""
    return "".join(f"{name}: {value}\r\n" for name, value in outcome.headers).encode()


def _reply_labels(head: str) -> tuple[str, str]:
    """``("2xx", "2.0.0")`` for ``"250 2.0.0"``; the enhanced code (RFC 3463 §2)
    is "" when the reply has none."""
    code, _, rest = head.partition(" ")
    enhanced = rest if rest.count(".") == 2 and rest.replace(".", "").isdigit() else ""
    return (code[:1] + "xx" if code[:1].isdigit() else "other"), enhanced


class SmtpHooks:
    """The hooks of one listener: runs its check ``pipeline``, then delivers.

    Stateless: per-connection state lives on the connection, per-transaction
    state on the ``Transaction`` envelope.  Narrow collaborators, wired in
    ``app.py``: ``directory`` (RCPT lookups), ``authenticator`` (AUTH),
    ``delivery`` (``delivery.interface.DeliveryTarget``), ``resolver`` (the
    shared DNS resolver, for stages: ``CheckContext.resolver``).
    """

    def __init__(
        self,
        *,
        config: Config,
        submission: bool,
        pipeline: Pipeline,
        directory: RecipientDirectory,
        authenticator: Authenticator,
        delivery: DeliveryTarget,
        counters: Counters | None = None,
        resolver: Resolver | None = None,
        listener: str = "",
        scram: ScramLogins | None = None,
        sent_to: SentToMemory | None = None,
    ) -> None:
        self.config = config
        #: Whom each account has sent to (the first-time recipient limit);
        #: None: not remembered.
        self.sent_to = sent_to
        self.submission = submission
        self.pipeline = pipeline
        self.directory = directory
        self.authenticator = authenticator
        #: SCRAM-SHA-256(-PLUS) logins (``auth.scram``); None: not offered.
        self.scram = scram
        self.delivery = delivery
        self.resolver = resolver
        self.counters = counters or LocalCounters(config.limits)
        self.logins = LoginGuard(self.counters, config.limits)  # blocks after failed AUTHs
        # Metrics, bound once (``mailserver.metrics``): the transaction
        # counter's children by the reply's first 9 characters ("250 2.0.0").
        m = instruments()
        self.listener = listener
        self._data_seconds = m.smtp_data_seconds.labels(listener)
        self._auth_failures = m.auth_failures.labels("smtp")
        self._transactions = m.smtp_transactions
        self._by_reply: dict[str, Any] = {}
        self._direction = "out" if submission else "in"  # of mail-flow events

    # -- AUTH ----------------------------------------------------------------------

    async def authenticate(self, conn: SmtpConnection, username: str, password: str) -> str | None:
        """The account for these credentials, or None (RFC 4954 §4)."""
        return await self.authenticator(username, password)

    async def login_blocked(self, conn: SmtpConnection, username: str) -> bool:
        """``counters/logins.py``: too many failed logins from the IP or for ``username``."""
        return await self.logins.blocked(conn.peer_ip, username)

    async def auth_failed(self, conn: SmtpConnection, username: str = "") -> float:
        """Count a failure of ``conn``'s client IP and of ``username``; the
        delay before the 535 (seconds)."""
        self._auth_failures.inc()
        await self.logins.failed(conn.peer_ip, username)
        analytics.emit(FlowEvent(Kind.AUTH_FAILURE, time.time(), self._direction,
                                 result="perm", code="535", reason="smtp",
                                 source=conn.peer_ip))
        return await self.counters.auth_failure(conn.peer_ip)

    # -- sender --------------------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SmtpConnection,
        session: Any,
        envelope: Transaction,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Sender stage (RFC 5321 §4.1.1.2): the connect/HELO stages on the first MAIL,
        then the MAIL stages."""
        pipeline = self.pipeline
        envelope.mail_from = address  # what the stages see as ctx.mail_from
        envelope.mail_options.extend(mail_options)
        outcome = None
        if server.first_transaction() and (pipeline.connect or pipeline.helo):
            outcome = await pipeline.run(pipeline.connect, server)
            if outcome.verdict.reply is None:
                outcome = await pipeline.run(pipeline.helo, server)
        if outcome is None or outcome.verdict.reply is None:
            outcome = await pipeline.run(pipeline.mail, server)
        reply = outcome.verdict.reply
        if reply is not None:
            envelope.mail_from = None
            del envelope.mail_options[len(envelope.mail_options) - len(mail_options):]
            server.log.info("mail_rejected", reason=outcome.verdict.reason, stage=outcome.stage,
                            reply=reply.code)
            self._refused(server, domain_of(address), reply, outcome.verdict.reason)
            return str(reply)
        if isinstance(envelope.dsn_offered, MailDsn):
            envelope.mail_dsn = envelope.dsn_offered
        args = envelope.mail_args
        envelope.delivery = self.delivery.begin(
            "" if address == "<>" else address, envelope.mail_dsn,
            requiretls=args is not None and args.requiretls)  # RFC 8689 §4.1
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
        """Recipient stage (RFC 5321 §4.1.1.3): one directory lookup, the RCPT stages,
        then the route (local account or queue)."""
        facts = await self._recipient_facts(address)
        outcome = await self.pipeline.run(self.pipeline.rcpt, server, facts)
        reply = outcome.verdict.reply
        if reply is not None:
            server.log.info("rcpt_rejected", rcpt=address, reply=reply.code,
                            reason=outcome.verdict.reason, stage=outcome.stage)
            self._refused(server, domain_of(address), reply, outcome.verdict.reason)
            return str(reply)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        dsn = envelope.dsn_offered if isinstance(envelope.dsn_offered, RcptDsn) else None
        if dsn is not None:
            envelope.rcpt_dsn.setdefault(address, dsn)
        assert envelope.delivery is not None  # begun at MAIL (commands.py: no RCPT before MAIL)
        delivery = envelope.delivery
        if facts.forwards or len(facts.accounts) > 1:  # an alias of several targets
            for account in facts.accounts:
                delivery.add_recipient(address, account, dsn)
                envelope.local_recipients.append(LocalRecipient(address, account))
            if facts.forwards:
                delivery.add_forward(address, facts.forwards)
            return str(replies.RCPT_OK)
        delivery.add_recipient(address, facts.account, dsn)
        if facts.account is None:
            envelope.remote_recipients.append(address)
        else:
            envelope.local_recipients.append(
                LocalRecipient(forward_path=address, account=facts.account)
            )
        return str(replies.RCPT_OK)

    async def _recipient_facts(self, address: str) -> RecipientFacts:
        """What the directory knows of ``address``, in one read (``Store.recipient_status``)."""
        local, at, domain = address.rpartition("@")
        if not at and address.lower() == "postmaster" and self.config.domains:
            # RFC 5321 §4.5.1: "postmaster" without a domain must be accepted.
            local, domain = "postmaster", self.config.domains[0]
        if not local or not domain:
            return RecipientFacts(address, "", local_domain=False, account=None)
        found = await self.directory.recipient_status(store_form(f"{local}@{domain}"))
        return RecipientFacts(address, domain, found.local_domain, found.account, found.full,
                              found.accounts, found.forwards)

    # -- body ----------------------------------------------------------------------

    async def handle_DATA(self, server: SmtpConnection, session: Any, envelope: Transaction) -> str:
        """Body stage: check From:, add trace fields, deliver locally and queue the
        rest, and only then say 250 (RFC 5321 §4.1.1.4).  Counted by reply
        (``mailserver_smtp_transactions_total``) and timed from the end of DATA
        to the reply (``mailserver_smtp_data_seconds``).

        The bookkeeping of an accepted message (its log line, mail-flow events,
        metrics) runs in the loop's next pass (``call_soon``), after the reply
        is written: with one client sending one message after another it
        would otherwise add to every message's wait for its 250."""
        started = time.perf_counter()
        reply = await self._data(server, session, envelope)
        elapsed = time.perf_counter() - started
        asyncio.get_running_loop().call_soon(self._counted, server, envelope, reply, elapsed)
        return reply

    def _counted(self, server: SmtpConnection, envelope: Transaction, reply: str,
                 elapsed: float) -> None:
        """``handle_DATA``'s metrics and ``received`` event (after its reply)."""
        self._data_seconds.observe(elapsed)
        if reply[:1] == "2" and analytics.enabled():  # refusals have their own event
            analytics.emit(FlowEvent(
                Kind.RECEIVED, time.time(), self._direction, _first_domain(envelope),
                server.auth_user or "", "ok", reply[:9],
                size=len(envelope.original_content or b""), latency=elapsed,
                source=server.peer_ip, sender=domain_of(envelope.mail_from or "")))
        key = reply[:9]
        child = self._by_reply.get(key)
        if child is None:
            child = self._by_reply[key] = self._transactions.labels(
                self.listener, *_reply_labels(key))
        child.inc()

    async def _data(self, server: SmtpConnection, session: Any, envelope: Transaction) -> str:
        queue_id = new_queue_id()
        # Bare LF -> CRLF before any stage sees it (RFC 5322 §2.3, and DKIM
        # verifies the CRLF form, RFC 6376 §5.3): stored and relayed octets,
        # sizes and offsets all count CRLF (``protocol.line_endings``).  The
        # DATA decoder still ends the content at CRLF "." CRLF only.
        content = envelope.original_content or b""
        args = envelope.mail_args
        if args is None or args.body != "BINARYMIME":
            # BODY=BINARYMIME content (RFC 3030 §3) is octets, not lines: kept as sent.
            content = to_crlf(content)
        delivery = envelope.delivery
        assert delivery is not None  # begun at MAIL (commands.py: no DATA before RCPT)
        outcome = await self.pipeline.run(self.pipeline.data, server, content)
        refusal = outcome.verdict.reply
        if refusal is not None:
            delivery.abort()
            server.log.info("data_rejected", reason=outcome.verdict.reason, stage=outcome.stage,
                            reply=refusal.code)
            self._refused(server, _first_domain(envelope), refusal, outcome.verdict.reason)
            return str(refusal)
        if outcome.content is not None:  # a stage removed forged fields (RFC 8601 §5)
            content = outcome.content
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
            tls=_tls_info(server),
        )
        fixups = (
            submission_fixups(content, hostname=self.config.hostname, when=now)
            if self.submission
            else b""
        )
        blob = received + _header_fields(outcome) + fixups + content
        dlog = server.log
        fields: dict[str, object] = {"queue_id": queue_id, "size": len(blob)}  # one line on success
        if outcome.quarantine:
            fields["quarantine"] = True
        try:
            await delivery.commit(
                blob,
                queue_id=queue_id,
                internal_date=int(now.timestamp()),
                tz_offset=int((now.utcoffset() or dt.timedelta()).total_seconds() // 60),
                quarantine=outcome.quarantine,
                score_junk=not self.submission,
            )
        except Exception as exc:  # mapped in one place; our faults get a traceback
            delivery.abort()
            reply = smtp_reply(exc)
            if isinstance(exc, UserError):
                dlog.info("delivery_failed", **fields, reply=reply.code, reason=str(exc))
            else:
                dlog.exception("delivery_failed", **fields, reply=reply.code)
            self._refused(server, _first_domain(envelope), reply, "delivery_failed")
            return str(reply)
        user = server.auth_user
        if self.sent_to is not None and user and envelope.remote_recipients:
            new = [r for r in envelope.remote_recipients
                   if not await self.sent_to.has_sent_to(user, r)]
            if new:  # the message is stored: a failure here only forgets the marks
                try:
                    await self.sent_to.remember_sent(user, new)
                except MailserverError as exc:
                    dlog.warning("sent_to_not_recorded", error=str(exc))
        # Accepted: ``delivered`` recipients are in their mailboxes, ``queued``
        # ones are in the outbound queue under this same queue_id.  Logged
        # after the 250 is written (``handle_DATA``).
        fields.update(delivered=len(recipients), queued=len(envelope.remote_recipients))
        asyncio.get_running_loop().call_soon(self._accepted, dlog, fields, envelope,
                                             len(blob), recipients)
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def _refused(self, server: SmtpConnection, domain: str, reply: Any, reason: str) -> None:
        """A ``refused`` mail-flow event for a stage's reply."""
        code = str(reply)[:9]
        analytics.emit(FlowEvent(Kind.REFUSED, time.time(), self._direction, domain,
                                 result=result_of(code), code=code, reason=reason or "",
                                 source=server.peer_ip))

    def _accepted(self, dlog: Any, fields: dict[str, object], envelope: Transaction,
                  size: int, recipients: list[LocalRecipient]) -> None:
        """The ``message_accepted`` log line; the mail-flow events ``delivered``
        per local account and ``queued`` per remote recipient."""
        dlog.info("message_accepted", **fields)
        if not analytics.enabled():
            return
        now = time.time()
        direction = self._direction
        for r in recipients:
            analytics.emit(FlowEvent(Kind.DELIVERED, now, direction, domain_of(r.forward_path),
                                     r.account, "ok", size=size))
        for address in envelope.remote_recipients:
            analytics.emit(FlowEvent(Kind.QUEUED, now, "out", domain_of(address),
                                     result="ok", size=size))

    async def handle_exception(self, error: Exception) -> str:
        """A command or a hook raised: log it, answer per ``errors.smtp_reply``."""
        reply = smtp_reply(error)
        if not isinstance(error, UserError):
            log.error("smtp_exception", exc_info=error, reply=reply.code)
        return str(reply)


def _first_domain(envelope: Transaction) -> str:
    """The domain of the first recipient (what a mail-flow event is counted under)."""
    return domain_of(envelope.rcpt_tos[0]) if envelope.rcpt_tos else ""
