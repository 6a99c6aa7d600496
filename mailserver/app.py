"""Composition root: builds the store, TLS, the outbound queue and listeners from a ``Config``.

The only module that wires concrete pieces together.  ``App`` is used by the
daemon (``serve``) and by the tests, which run it on ephemeral ports.

Order of life: store → queue (resumes what the store holds) → listeners; on
the way down the reverse: listeners (transactions in flight finish), queue
(rounds in flight are cancelled; their next attempt was saved before they
began, so they are retried after the restart), store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from mailserver import analytics, metrics
from mailserver import log as logsetup
from mailserver.admin import AdminService
from mailserver.admin.views import ListenerView, Runtime
from mailserver.analytics import FlowEvent
from mailserver.analytics.hub import FlowHub
from mailserver.analytics.remote import BatchSink, FlowSource, LocalFlow, RemoteFlow
from mailserver.auth.login import Authenticator
from mailserver.auth.scram import ScramLogins
from mailserver.checks import rules
from mailserver.checks.authentication import SenderAuthentication
from mailserver.checks.dmarc_log import DmarcLog
from mailserver.checks.dnsbl import DnsblCheck
from mailserver.checks.limits import FirstTimeRecipients, SenderRate
from mailserver.checks.stage import Pipeline
from mailserver.config import Config, Listener, worker_count
from mailserver.counters import STATE_FILE, Counters, LocalCounters
from mailserver.counters.client import RemoteCounters
from mailserver.counters.pg import PgSharedCounters
from mailserver.delivery.forward import Forwarder, SrsDirectory, load_secret
from mailserver.delivery.postmaster import PostmasterDirectory
from mailserver.delivery.route import RoutedDelivery, deliver_report
from mailserver.dkim.keys import DkimKey, DkimKeyring
from mailserver.dns.resolver import DnsPythonResolver, Resolver
from mailserver.junk.filter import JunkFilter
from mailserver.listeners.kinds import start_listener
from mailserver.protocol.dsn_params import RcptDsn
from mailserver.protocol.mime.facts import prepare_casemap
from mailserver.protocol.srs import SrsCodec
from mailserver.queue import dsn as reports
from mailserver.queue.manager import QueueManager
from mailserver.queue.reporting import ReportSender, report_sender
from mailserver.queue.settings import OutboundSettings
from mailserver.queue.stspolicy import StsPolicies
from mailserver.queue.tlspolicy import OutboundTls
from mailserver.queue.tlsrpt import TlsReportLog
from mailserver.services import (
    Backend,
    ListenerHandle,
    Services,
    build_authenticator,
    build_scram,
    close_node,
    ensure_domains,
    lmdb_backend,
    node_backend,
    open_node,
)
from mailserver.smtp.handler import SmtpHooks
from mailserver.store.store import Store
from mailserver.tls import reload_context, server_context, server_end_point

if TYPE_CHECKING:
    from mailserver.store.pg.node import PgNode

log = structlog.get_logger("mailserver.app")


def build_resolver(config: Config) -> Resolver:
    """The process's one DNS resolver, shared by the outbound queue and the SMTP
    stages: dnspython at ``outbound.resolver_address`` (the system's when None)."""
    return resolver_for(config.outbound)


def resolver_for(out: OutboundSettings) -> Resolver:
    """dnspython at ``out.resolver_address``/``resolver_port`` with ``out.dns_timeout``
    (seconds); the system's nameservers when the address is None."""
    return DnsPythonResolver(out.resolver_address, out.resolver_port, timeout=out.dns_timeout)


#: The configuration sections SIGHUP reloads (``App.reload``); the rest needs a restart.
RELOADED = ("tls", "dkim", "limits", "checks", "log")


def build_queue(config: Config, backend: Backend, resolver: Resolver,
                keyring: DkimKeyring | None = None) -> QueueManager:
    """The outbound queue of ``backend`` as ``config`` describes it (not started).

    ``resolver``: the process's one resolver (``build_resolver``).

    Greets with ``config.hostname``; signs with the DKIM keys under
    ``data_dir/dkim`` whose algorithm ``config.dkim.algorithms`` lists; DSNs
    for local senders go straight into their INBOX.
    """
    settings = dataclasses.replace(config.outbound, hostname=config.hostname)
    keyring = keyring or DkimKeyring(config.data_dir)
    algorithms = config.dkim.algorithms

    def keys_for(domain: str) -> Sequence[DkimKey]:
        return [k for k in keyring.keys_for(domain) if k.algorithm in algorithms]

    async def is_local(address: str) -> bool:
        return await backend.directory.recipient_account(address) is not None

    async def deliver_local(message: bytes, address: str) -> None:
        await deliver_report(backend.delivery, message, address, time.time())

    return QueueManager(
        backend.queue, settings, resolver=resolver, dkim_keys=keys_for,
        is_local=is_local, deliver_local=deliver_local,
        tls_policy=build_tls_policy(settings, resolver, config.data_dir),
    )


def build_report_sender(config: Config, resolver: Resolver,
                        queue: QueueManager) -> ReportSender | None:
    """The daily DMARC and TLS-RPT report sender (``queue/reporting.py``), or None
    when neither ``checks.dmarc_report_send`` nor ``outbound.tlsrpt_send`` is on.
    Report mail goes through ``queue`` from ``outbound.report_from``."""
    out = config.outbound
    if not (config.checks.dmarc_report_send or out.tlsrpt_send):
        return None
    sender = report_sender(out.report_from, config.domains, config.hostname)

    async def enqueue(reverse_path: str, recipients: Sequence[str], message: bytes) -> str:
        return await queue.enqueue(reverse_path, recipients, message)

    return ReportSender(
        resolver, enqueue, sender=sender, org_name=config.hostname,
        dmarc_dir=config.data_dir / "dmarc" if config.checks.dmarc_report_send else None,
        tlsrpt_dir=config.data_dir / "tlsrpt" if out.tlsrpt_send else None,
        https_ca=out.mta_sts_ca_file)


def build_tls_policy(settings: OutboundSettings, resolver: Resolver,
                     data_dir: Path) -> OutboundTls:
    """MTA-STS policies (cached under ``data_dir/mta-sts``) and the TLS-RPT log
    (``data_dir/tlsrpt``), each when ``settings`` turns it on."""
    sts = (StsPolicies(resolver, data_dir / "mta-sts", port=settings.mta_sts_port,
                       ca_file=settings.mta_sts_ca_file) if settings.mta_sts else None)
    reports = TlsReportLog(data_dir / "tlsrpt") if settings.tlsrpt else None
    return OutboundTls(sts, reports)


def build_stages(config: Config, listener: Listener, backend: Backend, *,
                 outbound: bool, authentication: object | None = None,
                 counters: Counters | None = None,
                 resolver: Resolver | None = None) -> list[object]:
    """The check stages of ``listener`` (``mailserver.checks``), in order.

    ``outbound``: remote recipients can be queued (a queue exists).  The order
    decides which reply a command that breaks two rules gets (``checks.rules``).
    ``authentication``: the smtp listeners' shared sender-authentication stage
    (SPF, DKIM, ARC, DMARC; None: ``checks.verify`` is off).  ``counters``: where
    message and recipient rates are counted (None: no rate stage).
    ``resolver``: for the DNSBL stage (None: none, whatever the configuration).
    """
    limits = config.limits
    stages: list[object] = [rules.PathSyntax()]
    if listener.protocol == "submission":
        stages += [rules.SubmissionAuth(), rules.SenderOwnership(backend.directory)]
    if counters is not None:
        stages.append(SenderRate(counters, limits))
    stages.append(rules.MessageSize(limits.max_message_size))
    if backend.room is not None:
        stages.append(rules.StoreRoom(backend.room))
    stages += [
        rules.RecipientLimit(limits.max_recipients),
        rules.Relay(outbound=outbound),
        rules.KnownRecipient(),
    ]
    if listener.protocol == "submission" and counters is not None:
        stages.append(FirstTimeRecipients(backend.directory, counters, limits))
    checks = config.checks
    if listener.protocol == "smtp" and resolver is not None and (
            checks.dnsbl_reject or checks.dnsbl_mark):
        stages.append(DnsblCheck(resolver, reject=checks.dnsbl_reject, mark=checks.dnsbl_mark,
                                 trusted=limits.trusted_networks))
    if listener.protocol == "smtp":  # the MX: loops and verdicts (submission skips them)
        stages.append(rules.ReceivedLoop(config.checks.max_received))
        if authentication is not None:
            stages.append(authentication)
    return stages


def delivered_report(*, reporting_mta: str, reverse_path: str,
                     recipients: Sequence[tuple[str, RcptDsn]], original: bytes,
                     arrival_date: float, queue_id: str, envid: str | None) -> bytes:
    """A "delivered" DSN (RFC 3461 §6.2, RFC 3464 action "delivered") for local
    recipients that asked for one: ``delivery.interface.DeliveredReport``."""
    return reports.build_dsn(
        reporting_mta=reporting_mta,
        reverse_path=reverse_path,
        recipients=[
            reports.DsnRecipient(address, "delivered", "2.0.0", "250 2.0.0 delivered to mailbox",
                                 orcpt=dsn.orcpt)
            for address, dsn in recipients
        ],
        original=original,
        arrival_date=arrival_date,
        queue_id=queue_id,
        envid=envid,
    )


def build_smtp_hooks(config: Config, *, backend: Backend, queue: QueueManager | None,
                     counters: Counters, resolver: Resolver,
                     authenticator: Authenticator,
                     scram: ScramLogins | None = None,
                     keys_for: Callable[[str], Sequence[DkimKey]] | None = None,
                     junk: JunkFilter | None = None,
                     srs_secret: bytes | None = None,
                     ) -> dict[str, SmtpHooks]:
    """One ``SmtpHooks`` (check pipeline + delivery) per SMTP/submission listener, by name.
    ``authenticator``: the one IMAP uses too (one cache, one hashing pool);
    ``scram``: SCRAM logins (IMAP's too; None: not offered); ``keys_for``:
    a domain's DKIM keys, for the ARC seal of forwarded mail (None: none);
    ``junk``: the process's junk filter, scoring local copies (None: off);
    ``srs_secret``: the SRS key (None: ``data_dir``'s, made when missing; on
    PostgreSQL every node's, from the database).  Raises OSError (the SRS
    secret)."""
    hooks: dict[str, SmtpHooks] = {}
    forwarder = Forwarder(SrsCodec(srs_secret or load_secret(config.data_dir)),
                          None if queue is None else queue.enqueue,
                          keys_for or (lambda domain: ()), config.hostname)
    delivery = RoutedDelivery(backend.delivery, queue, make_report=delivered_report,
                              reporting_mta=config.hostname, forwarder=forwarder,
                              junk=junk)
    check_login = authenticator.authenticate

    # One stage (and thread pool) for every smtp listener.
    authentication = (SenderAuthentication(config.checks, hostname=config.hostname,
                                           dmarc_log=DmarcLog(config.data_dir / "dmarc"))
                      if config.checks.verify else None)
    directory = SrsDirectory(
        PostmasterDirectory(backend.directory, account=config.checks.postmaster,
                            first_domain=config.domains[0] if config.domains else None),
        forwarder)
    for listener in config.listeners:
        if listener.protocol not in ("smtp", "submission"):
            continue
        stages = build_stages(config, listener, backend, outbound=queue is not None,
                              authentication=authentication, counters=counters,
                              resolver=resolver)
        hooks[listener.name] = SmtpHooks(
            config=config, submission=listener.protocol == "submission",
            pipeline=Pipeline(stages, listener.name), directory=directory,
            authenticator=check_login, delivery=delivery, counters=counters, resolver=resolver,
            listener=listener.name, scram=scram,
            sent_to=backend.directory if listener.protocol == "submission"
            and config.limits.first_time_recipients_per_day else None,
        )
    return hooks


class App:
    """The running server: store, outbound queue, TLS context, listeners.

    ``await start()`` opens everything and binds every listener (port 0 → an
    ephemeral port, see ``port(name)``); ``await stop()`` shuts down gracefully.

    In a worker process of a multi-process daemon (``process/``):
    ``listen_sockets`` are this worker's sockets, bound by the supervisor, by
    listener name (served instead of binding), and ``run_queue`` says whether this process
    runs the outbound queue's scheduler (one process only: the queue does not
    support several schedulers on one store).  Every process may *enqueue*.
    ``remote_writer``: the store's writes go to the supervisor's writer
    service (one group commit for all workers, ``store/writer_service.py``);
    ``shared_counters``: connection slots and failed logins are counted by the
    supervisor's counter service (``counters/``), so limits hold across workers.
    """

    def __init__(
        self,
        config: Config,
        *,
        listen_sockets: dict[str, socket.socket] | None = None,
        run_queue: bool = True,
        remote_writer: bool = False,
        shared_counters: bool = False,
    ) -> None:
        self.config = config
        self.services: Services | None = None
        self.listeners: dict[str, ListenerHandle] = {}
        self._listen_sockets = dict(listen_sockets or {})
        self._run_queue = run_queue
        self._remote_writer = remote_writer
        self._shared_counters = shared_counters
        self._flusher: asyncio.Task[None] | None = None
        #: When ``start`` ran (Unix seconds): the daemon's uptime in ``status``.
        self.started = time.time()
        #: The DKIM keys the queue signs with (``reload`` re-reads them).
        self.keyring = DkimKeyring(config.data_dir)
        self._ssl_context: ssl.SSLContext | None = None
        self._resolver: Resolver | None = None
        #: SMTP hooks a reload replaced: connections made before it still use
        #: them, so their stages' threads are closed only at stop.
        self._retired_hooks: list[dict[str, SmtpHooks]] = []
        self._flow_task: asyncio.Task[None] | None = None
        self._flow_sink: BatchSink | None = None
        self._flow_add: Callable[[FlowEvent], None] | None = None  # the sink we set
        #: The daily report sender, in the process that runs the queue (None: off).
        self.reports: ReportSender | None = None
        self._junk_task: asyncio.Task[None] | None = None
        #: This node's PostgreSQL store (``[store] backend = "postgresql"``), else None.
        self._node: PgNode | None = None
        #: The SRS key shared by every node (PostgreSQL); None: data_dir's.
        self._srs_secret: bytes | None = None

    @property
    def store(self) -> Store:
        assert self.services is not None, "App not started"
        return self.services.store

    @property
    def queue(self) -> QueueManager:
        assert self.services is not None and self.services.queue is not None, "App not started"
        return self.services.queue

    def admin(self) -> AdminService:
        """The admin service inside this process (for the HTTP admin API): its store
        and configuration, and the queue scheduler when it runs here, so that a
        retry is looked at at once and a deletion stops a round in flight."""
        assert self.services is not None, "App not started"
        control = self.services.queue if self._run_queue else None
        return AdminService(self.services.store, self.config, queue_control=control,
                            runtime=self.runtime)

    async def reload(self, new: Config) -> list[str]:
        """SIGHUP: take the reloadable sections (``RELOADED``) of ``new`` (the
        file read again) without dropping a connection; returns what was
        reloaded.

        * ``log``: level and format (``log.configure``); lines of connections
          already open keep the level their logger was bound with;
        * ``tls``: the certificate and key, loaded into the listeners' one
          context: the next handshake presents them (``tls.reload_context``),
          and SCRAM's ``tls-server-end-point`` follows;
        * ``dkim``: the signing keys under ``data_dir/dkim`` are read again;
        * ``limits`` and ``checks``: new connections get the new limits and a
          new SMTP check pipeline; open ones keep what they started with.

        The counters' own limits (connection rate, trusted networks, AUTH
        delays) are set here with ``workers = 1`` and by the supervisor's
        reload otherwise.  Listeners, workers, store, auth and outbound take
        a restart.  Raises ``ConfigError`` / ``OSError``
        (TLS files): what came before the failing part is applied, the rest
        is as it was."""
        config = dataclasses.replace(self.config, **{k: getattr(new, k) for k in RELOADED})
        done = []
        logsetup.configure(config.log)
        done.append("log")
        services = self.services
        if self._ssl_context is not None:
            await asyncio.to_thread(reload_context, self._ssl_context, config)
            if services is not None and services.scram is not None:
                services.scram.end_point = await asyncio.to_thread(server_end_point, config)
            done.append("tls")
        self.keyring.reload()
        done.append("dkim")
        if services is not None and self._resolver is not None:
            self._retired_hooks.append(services.smtp_hooks)
            services.config = config
            services.smtp_hooks = build_smtp_hooks(
                config, backend=services.backend, queue=services.queue,
                counters=services.counters,
                resolver=self._resolver, authenticator=services.authenticator,
                scram=services.scram, keys_for=self.keyring.keys_for, junk=services.junk,
                srs_secret=self._srs_secret)
            for handle in self.listeners.values():
                reconfigure = getattr(handle, "reconfigure", None)
                if reconfigure is not None:
                    reconfigure()
            services.counters.reconfigure(config.limits)
            done += ["limits", "checks"]
        self.config = config
        return done

    def runtime(self) -> Runtime:
        """This daemon as ``status`` shows it: pid, start, workers, the listeners
        bound so far (asked at each ``status``: the admin service is made
        before the listeners are bound)."""
        cfg = self.config
        return Runtime(
            # A worker (remote writer) answers for the daemon: its supervisor.
            pid=os.getppid() if self._remote_writer else os.getpid(),
            started=self.started, workers=worker_count(cfg),
            listeners=tuple(ListenerView(lst.name, lst.protocol, lst.address,
                                         self.port(lst.name), lst.tls)
                            for lst in cfg.listeners if lst.name in self.listeners))

    async def start(self) -> None:
        """Open the store, ensure configured domains, make TLS, bind listeners.

        Raises ``MailserverError`` (store), ``OSError`` (bind, TLS files).
        """
        cfg = self.config
        self.started = time.time()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        store: Store | None = None
        if cfg.store.backend == "postgresql":
            self._node = await open_node(cfg)
            backend = node_backend(self._node)
        else:
            store = await Store.open(cfg.data_dir, map_size=cfg.store.map_size,
                                     new_mail_limit=cfg.store.new_mail_limit,
                                     fill_warning_levels=cfg.store.fill_warning_levels,
                                     remote_writer=self._remote_writer,
                                     preallocate=not self._remote_writer)
            backend = lmdb_backend(store)
        queue: QueueManager | None = None
        counters: Counters | None = None
        authenticator = build_authenticator(cfg, backend.directory)
        try:
            if self._node is not None:
                # One SRS key for every node: a bounce may reach another node
                # than the one that rewrote the address (delivery/forward.py).
                self._srs_secret = await self._node.shared_secret("srs")
            await ensure_domains(backend.directory, cfg.domains)
            ssl_context = await asyncio.to_thread(server_context, cfg)
            self._ssl_context = ssl_context
            scram = None if store is None else await asyncio.to_thread(
                lambda: build_scram(cfg, store, server_end_point(cfg)))
            await asyncio.to_thread(prepare_casemap)
            resolver = self._resolver = build_resolver(cfg)
            queue = build_queue(cfg, backend, resolver, self.keyring)
            if self._run_queue:
                await queue.start()
                self.reports = build_report_sender(cfg, resolver, queue)
                if self.reports is not None:
                    self.reports.start()
            if self._shared_counters:
                counters = await RemoteCounters.open(cfg.data_dir / "run", cfg.limits)
            elif self._node is not None:  # rates shared by every node, in the database
                counters = PgSharedCounters(cfg.limits, self._node.pool,
                                            cfg.data_dir / "state" / STATE_FILE)
            else:
                counters = LocalCounters(cfg.limits, cfg.data_dir / "state" / STATE_FILE)
            junk = None
            if cfg.junk.enabled and store is not None:
                junk = JunkFilter(store, cfg.junk)
            elif cfg.junk.enabled:  # issue #17: the model's tables are not used yet
                log.warning("junk_filter_unavailable", backend=cfg.store.backend)
            self.services = Services(config=cfg, backend=backend, ssl_context=ssl_context,
                                     queue=queue, counters=counters,
                                     listen_sockets=self._listen_sockets,
                                     authenticator=authenticator, scram=scram,
                                     smtp_hooks=build_smtp_hooks(cfg, backend=backend,
                                                                 queue=queue,
                                                                 counters=counters,
                                                                 resolver=resolver,
                                                                 authenticator=authenticator,
                                                                 scram=scram,
                                                                 keys_for=self.keyring.keys_for,
                                                                 junk=junk,
                                                                 srs_secret=self._srs_secret))
            if store is not None:
                self.services.admin = self.admin()  # the http listener's /api/v1
            self.services.junk = junk  # IMAP's Junk moves train it
            if junk is not None:
                junk.apply_soon()  # trainings a crash left in the journal
                self._junk_task = asyncio.create_task(self._junk_loop(junk), name="junk-stats")
            self.services.flow = self._start_flow(counters)
            self._flusher = asyncio.create_task(_flush_metrics(), name="metrics-flush")
            for listener in cfg.listeners:
                handle = await start_listener(listener, self.services)
                self.listeners[listener.name] = handle
                log.info(
                    "listener_started",
                    listener=listener.name,
                    protocol=listener.protocol,
                    address=listener.address,
                    port=handle.port,
                    tls=listener.tls,
                )
        except BaseException:
            await self._close_listeners(0)
            await self._stop_flusher()
            await self._stop_flow()
            await self._stop_reports()
            await self._stop_junk()
            if queue is not None:
                await queue.stop()
            if counters is not None:
                await counters.close()
            authenticator.close()
            self.services = None
            await self._close_store(store)
            raise

    async def _close_store(self, store: Store | None) -> None:
        """Close the LMDB store, or this node's PostgreSQL store and object store."""
        if store is not None:
            await store.close()
        node, self._node = self._node, None
        if node is not None:
            await close_node(node)

    def _start_flow(self, counters: Counters) -> FlowSource | None:
        """The mail-flow sink of this process and what the API reads (``analytics/``):
        the supervisor's hub when counters are shared, else one of our own."""
        cfg = self.config
        if not cfg.analytics.enabled:
            return None
        if isinstance(counters, RemoteCounters):
            self._flow_sink = BatchSink(counters.send)
            self._flow_add = self._flow_sink
            analytics.set_sink(self._flow_sink)
            return RemoteFlow(cfg.data_dir / "run")
        hub = FlowHub(cfg.data_dir / "analytics", retention_days=cfg.analytics.retention_days,
                      raw_days=cfg.analytics.raw_days)
        self._flow_add = hub.add
        analytics.set_sink(hub.add)
        self._flow_task = asyncio.create_task(hub.run(), name="analytics-flush")
        return LocalFlow(hub)

    async def _stop_flow(self) -> None:
        if self._flow_add is not None:
            analytics.clear_sink(self._flow_add)
            self._flow_add = None
        if self._flow_sink is not None:
            self._flow_sink.flush()  # the last events, before the counter link closes
            self._flow_sink = None
        if self._flow_task is not None:
            self._flow_task.cancel()  # it flushes once more on its way out
            with contextlib.suppress(asyncio.CancelledError):
                await self._flow_task
            self._flow_task = None

    def port(self, name: str) -> int:
        """The bound port of the listener called ``name`` in the config."""
        return self.listeners[name].port

    async def _close_listeners(self, grace: float) -> None:
        handles = list(self.listeners.values())
        self.listeners.clear()
        await asyncio.gather(*(h.shutdown(grace) for h in handles), return_exceptions=True)

    async def _stop_flusher(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        metrics.flush_all()  # the last tallies of this process

    async def _junk_loop(self, junk: JunkFilter) -> None:
        """Every ``JUNK_FLUSH_INTERVAL`` seconds: the training journal applied
        (entries another process left), the junk filter's counts of use into
        the store; in the process that runs the queue (one per daemon), the
        drift check too."""
        while True:
            await asyncio.sleep(JUNK_FLUSH_INTERVAL)
            try:
                junk.apply_soon()  # another process's journal entries, a failed try
                await junk.flush()
                if self._run_queue:
                    await asyncio.to_thread(junk.check_drift)
            except Exception as exc:  # statistics: never worth stopping for
                log.warning("junk_stats_failed", error=str(exc))

    async def _stop_junk(self) -> None:
        task, self._junk_task = self._junk_task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        junk = self.services.junk if self.services is not None else None
        if junk is not None:
            with contextlib.suppress(Exception):
                await junk.settle()  # a journal batch in flight: the store closes next
                await junk.flush()  # the last counts

    async def _stop_reports(self) -> None:
        if self.reports is not None:
            await self.reports.stop()
            self.reports = None

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let work in flight finish for up to ``grace`` seconds, stop
        the queue, close the store."""
        await self._close_listeners(grace)
        await self._stop_flusher()
        if self.services is None:
            await self._stop_flow()
        else:
            every = [h for old in self._retired_hooks for h in old.values()]
            for hooks in every + list(self.services.smtp_hooks.values()):
                for stage in hooks.pipeline.stages:  # stages with threads of their own
                    close = getattr(stage, "close", None)
                    if close is not None:
                        close()
            await self._stop_reports()
            await self._stop_junk()
            if self.services.queue is not None:
                await self.services.queue.stop()
            await self._stop_flow()  # the last events, before the counter link closes
            await self.services.counters.close()
            self.services.authenticator.close()
            await self._close_store(self.services.backend.lmdb)
            self.services = None


#: Seconds between two flushes of the junk filter's counts of use.
JUNK_FLUSH_INTERVAL = 10.0

#: Seconds between two flushes of the metric tallies (``metrics.Tally``).
METRICS_FLUSH_INTERVAL = 1.0


#: Seconds between two event-loop lag probes.
LAG_PROBE_INTERVAL = 0.1


async def _flush_metrics() -> None:
    """Add this process's tallies to the shared counters, once a second; and
    probe the event loop's lag every ``LAG_PROBE_INTERVAL`` (how late a timer
    fires: the longest step another connection waited behind), into
    ``mailserver_event_loop_lag_seconds``."""
    loop = asyncio.get_running_loop()
    lag = metrics.instruments().event_loop_lag_seconds
    next_flush = loop.time() + METRICS_FLUSH_INTERVAL
    while True:
        due = loop.time() + LAG_PROBE_INTERVAL
        await asyncio.sleep(LAG_PROBE_INTERVAL)
        now = loop.time()
        lag.observe(max(0.0, now - due))
        if now >= next_flush:
            metrics.flush_all()
            next_flush = now + METRICS_FLUSH_INTERVAL
