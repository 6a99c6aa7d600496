"""One delivery attempt for one domain's recipients: route, connect, transact.

The attempt, along the seams of its modules: ``routing.py`` picks the hosts
(smart host, address literal or MX, RFC 5321 §5.1), ``connect.py`` opens a
session with one of them (EHLO, STARTTLS, AUTH), ``transaction.py`` runs
MAIL/RCPT/DATA on it, ``pipeline.py`` reads a pipelined envelope's replies.
These four are the only importers of aiosmtplib.  A host that cannot be
reached or refuses the session is left for the next address (and, after an
opportunistic STARTTLS failure, the same address once more in plain text).

Connection limit: with a pool, each delivery holds a place under the limit
of its route (``routing.route_key``: the smart host, shared by every
recipient domain, or else the recipient domain) from before it takes or
opens a session until the session is pooled or closed.

REQUIRETLS (RFC 8689, ``requiretls.py``): such a message only goes over a
new session with a verified host that offers REQUIRETLS, never in clear;
``TLS-Required: No`` turns a ``require_tls`` domain opportunistic for it.

MTA-STS (RFC 8461, ``mtasts.py``, ``stspolicy.py``): for MX delivery the
recipient domain's policy is looked up first.  ``enforce``: only MX hosts
the policy names are tried, each over STARTTLS with a certificate verified
for the MX name (§4.2, PKIX against ``ca_file`` or the system's store), no
pooled session is reused, and when no host qualifies the message waits
(4.7.5) and at the queue's ``max_age`` bounces (§5).  ``testing``: the same
verified attempt first; when it fails the failure is recorded and the host
is tried as without a policy (§5: deliver anyway).  Every MX session's TLS
outcome goes to the TLS-RPT log (RFC 8460, ``tlsrpt.py``) when it is on.

DANE (RFC 7672, ``dane.py``; ``outbound.dane``): before anything else, each
MX host's TLSA records at ``_25._tcp.<host>`` are asked; when the resolver
marks the answer validated (AD bit) and a record is usable, that host is
only used over STARTTLS with a certificate matching a record (§2.2, §3.1),
and MTA-STS does not apply to it (RFC 8461 §2).  Python 3.11's ``ssl`` gives
us the leaf certificate only, so DANE-TA(2) records match only a leaf that
is itself the trust anchor; DANE-EE(3) works fully.  A REQUIRETLS message
still needs a PKIX-valid certificate.

With a ``ConnectionPool`` a session that finished a transaction cleanly is
kept for the next message on the same route (RSET before reuse, RFC 5321
§4.1.1.5); a reused session that fails before any recipient was accepted is
dropped and a fresh connection made.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import aiosmtplib

from mailserver.dns.resolver import DnsError, Resolver
from mailserver.protocol.dsn_params import DsnRequest
from mailserver.queue import dane
from mailserver.queue.connect import HostFailed, OutboundSession, close_session, open_session
from mailserver.queue.mtasts import Policy
from mailserver.queue.outcome import Outcome, RcptResult
from mailserver.queue.pool import ConnectionPool, Lease
from mailserver.queue.requiretls import NO_DEMAND, NOT_SUPPORTED, TlsDemand
from mailserver.queue.routing import NoRoute, Route, resolve_route, route_key
from mailserver.queue.settings import OutboundSettings
from mailserver.queue.tlspolicy import NO_TLS_POLICY, OutboundTls
from mailserver.queue.tlsrpt import TlsAttempt
from mailserver.queue.transaction import run_transaction, valid_path

# Names other modules import from here.
__all__ = [
    "OutboundSession",
    "Outcome",
    "RcptResult",
    "close_session",
    "deliver_domain",
    "new_pool",
    "route_key",
    "valid_path",
]


def _all(rcpts: Sequence[str], outcome: Outcome, reply: str, mta: str = "") -> list[RcptResult]:
    return [RcptResult(r, outcome, reply, mta) for r in rcpts]


def new_pool(settings: OutboundSettings) -> ConnectionPool:
    """The sessions ``deliver_domain`` shares: at most ``max_connections_per_domain``
    open per route (``route_key``), idle ones kept ``reuse_idle`` seconds."""
    return ConnectionPool(close_session, settings.reuse_idle, settings.max_connections_per_domain)


async def deliver_domain(
    settings: OutboundSettings,
    resolver: Resolver,
    domain: str,
    reverse_path: str,
    recipients: Sequence[str],
    message: bytes,
    *,
    pool: ConnectionPool | None = None,
    dsn: DsnRequest | None = None,
    log: Any = None,
    tls: TlsDemand = NO_DEMAND,
    tls_policy: OutboundTls = NO_TLS_POLICY,
) -> list[RcptResult]:
    """Try to deliver ``message`` to ``recipients`` (all at ``domain``).

    Never raises for delivery trouble: every failure becomes a TEMPORARY or
    PERMANENT result.  Returns one result per recipient, in order.  With
    ``pool``, this waits for a place under the route's connection limit, an
    idle session to the same route is reused and the session is left there
    afterwards (the caller closes the pool).  ``dsn``: the message's DSN
    parameters, passed on to a next hop that offers DSN (RFC 3461 §5.2.1).
    ``log``: the caller's logger, bound to the message's ``queue_id``.
    ``tls``: what the message asks of TLS (REQUIRETLS, ``TLS-Required: No``).
    ``tls_policy``: MTA-STS policies and the TLS-RPT log (both off by default).
    """
    if not valid_path(reverse_path):
        return _all(recipients, Outcome.PERMANENT,
                    "553 5.1.7 the reverse-path cannot be sent on an SMTP command line")
    bad = [r for r in recipients if not valid_path(r)]
    if bad:
        good = [r for r in recipients if r not in bad]
        done = {r.address: r for r in _all(
            bad, Outcome.PERMANENT, "553 5.1.3 address cannot be sent on an SMTP command line")}
        if good:
            done.update((r.address, r) for r in await deliver_domain(
                settings, resolver, domain, reverse_path, good, message, pool=pool, dsn=dsn,
                log=log, tls=tls, tls_policy=tls_policy))
        return [done[r] for r in recipients]
    if pool is None:
        return await _deliver(settings, resolver, domain, reverse_path, recipients, message,
                              None, dsn, log, tls, tls_policy)
    async with pool.lease(route_key(settings, domain)) as lease:
        return await _deliver(settings, resolver, domain, reverse_path, recipients, message,
                              lease, dsn, log, tls, tls_policy)


async def _deliver(
    settings: OutboundSettings, resolver: Resolver, domain: str, reverse_path: str,
    recipients: Sequence[str], message: bytes, lease: Lease | None, dsn: DsnRequest | None,
    log: Any, tls: TlsDemand, tls_policy: OutboundTls,
) -> list[RcptResult]:
    policy: Policy | None = None
    # RFC 8689 §4.2.1: "TLS-Required: No" asks that the recipient domain's
    # policies (MTA-STS, DANE) be ignored too, e.g. for a TLS-RPT report about
    # that very domain (RFC 8460 §5.3).
    if settings.smart_host is None and not domain.startswith("[") and not tls.tls_optional:
        found = await tls_policy.policy(domain)
        if found.policy is not None and found.policy.mode != "none":
            policy = found.policy
    enforce = policy is not None and policy.mode == "enforce"
    # A pooled session may have been opened without verifying the host: a
    # REQUIRETLS message (RFC 8689 §4.2.2) or an enforced MTA-STS policy
    # (RFC 8461 §4.2) always gets a session of its own.
    if not tls.requiretls and not enforce:
        reused = await _reuse(settings, lease, reverse_path, recipients, message, dsn)
        if reused is not None:
            return reused
    try:
        route = await resolve_route(settings, resolver, domain, log)
    except NoRoute as exc:
        return _all(recipients, exc.outcome, exc.reply)
    if enforce and route.smart_host is None:
        assert policy is not None
        allowed = [t for t in route.targets if policy.matches(t[0])]
        if not allowed:
            # RFC 8461 §4.1: an MX host the policy does not name is not tried.
            return _all(recipients, Outcome.TEMPORARY,
                        f"451 4.7.5 no MX host of {domain} matches its MTA-STS policy")
        route = dataclasses.replace(route, targets=allowed)
    if tls.tls_optional and route.smart_host is None:
        # RFC 8689 §4.2.1: the sender waives our TLS policy for this message.
        route = dataclasses.replace(route, require_tls=False)
    if tls.requiretls:
        return await _try_targets_requiretls(settings, route, reverse_path, recipients,
                                             message, lease=lease, dsn=dsn)
    return await _try_targets(settings, route, reverse_path, recipients, message,
                              lease=lease, dsn=dsn, domain=domain, policy=policy,
                              tls_policy=tls_policy,
                              resolver=resolver if settings.dane and not tls.tls_optional
                              else None)


async def _reuse(
    settings: OutboundSettings, lease: Lease | None,
    reverse_path: str, recipients: Sequence[str], message: bytes, dsn: DsnRequest | None,
) -> list[RcptResult] | None:
    """Deliver over an idle pooled session, or None when there is none that works."""
    if lease is None:
        return None
    while (session := lease.take()) is not None:
        try:
            async with asyncio.timeout(settings.command_timeout):
                await session.smtp.rset()  # RFC 5321 §4.1.1.5; also: is the line alive?
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            session.smtp.close()
            continue
        try:
            results, reusable = await run_transaction(settings, session, reverse_path,
                                                      recipients, message, dsn)
        except HostFailed:
            # Nothing was accepted (e.g. a per-connection message limit answered
            # MAIL with 421): a fresh session decides.
            session.smtp.close()
            continue
        await _release(lease, session, reusable)
        return results
    return None


async def _release(lease: Lease | None, session: OutboundSession, reusable: bool) -> None:
    if lease is not None and reusable and session.smtp.is_connected:
        lease.keep(session)
    else:
        await close_session(session)


async def _try_targets_requiretls(
    settings: OutboundSettings,
    route: Route,
    reverse_path: str,
    recipients: Sequence[str],
    message: bytes,
    *,
    lease: Lease | None,
    dsn: DsnRequest | None,
) -> list[RcptResult]:
    """``_try_targets`` for a REQUIRETLS message (RFC 8689 §4.2.2, see ``requiretls``):
    STARTTLS with a verified certificate and REQUIRETLS offered, or the host
    counts as failed; when every host failed for these reasons the message
    bounces with ``5.7.30`` (§5), when some could not be reached it waits."""
    last = "451 4.4.1 no host could be reached"
    unqualified = 0
    for host, addr, port in route.targets:
        try:
            session = await open_session(settings, host, addr, port, use_tls=True,
                                         require_tls=True, smart_host=route.smart_host,
                                         authenticate=True)
        except HostFailed as exc:
            last = exc.reply
            unqualified += exc.tls
            continue
        if not session.smtp.supports_extension("requiretls"):
            unqualified += 1
            last = f"{NOT_SUPPORTED}: {session.where} does not offer REQUIRETLS"
            await close_session(session)
            continue
        try:
            results, reusable = await run_transaction(settings, session, reverse_path,
                                                      recipients, message, dsn, requiretls=True)
        except HostFailed as exc:
            session.smtp.close()
            if exc.permanent:
                return _all(recipients, Outcome.PERMANENT, exc.reply, host)
            last = exc.reply
            continue
        await _release(lease, session, reusable)
        return results
    if route.targets and unqualified == len(route.targets):
        if not last.startswith(NOT_SUPPORTED):
            last = f"{NOT_SUPPORTED}: {last}"
        return _all(recipients, Outcome.PERMANENT, last)
    return _all(recipients, Outcome.TEMPORARY, last)


async def _send(
    settings: OutboundSettings, session: OutboundSession, host: str, reverse_path: str,
    recipients: Sequence[str], message: bytes, lease: Lease | None, dsn: DsnRequest | None,
) -> tuple[list[RcptResult] | None, str]:
    """Run the transaction on ``session``: ``(results, "")``, or ``(None, reply)`` when
    the host failed temporarily (the caller tries the next one)."""
    try:
        results, reusable = await run_transaction(settings, session, reverse_path,
                                                  recipients, message, dsn)
    except HostFailed as exc:
        session.smtp.close()
        if exc.permanent:
            return _all(recipients, Outcome.PERMANENT, exc.reply, host), exc.reply
        return None, exc.reply
    await _release(lease, session, reusable)
    return results, ""


async def _try_targets(
    settings: OutboundSettings,
    route: Route,
    reverse_path: str,
    recipients: Sequence[str],
    message: bytes,
    *,
    lease: Lease | None,
    dsn: DsnRequest | None,
    domain: str = "",
    policy: Policy | None = None,
    tls_policy: OutboundTls = NO_TLS_POLICY,
    resolver: Resolver | None = None,
) -> list[RcptResult]:
    """Try ``route``'s hosts in order.  ``resolver``: given when DANE is on."""
    last = "451 4.4.1 no host could be reached"
    require_tls, smart_host = route.require_tls, route.smart_host
    record = smart_host is None and tls_policy.reports is not None
    for host, addr, port in route.targets:
        if resolver is not None and smart_host is None and host != addr:
            try:
                records = await _tlsa(resolver, host)
            except HostFailed as exc:
                last = exc.reply
                continue
            if records:
                done, last = await _try_dane(settings, records, domain, host, addr, port,
                                             reverse_path, recipients, message, lease, dsn,
                                             tls_policy)
                if done is not None:
                    return done
                continue
        if policy is not None:
            # MTA-STS (RFC 8461 §4.2): STARTTLS, certificate verified for the MX name.
            try:
                session = await open_session(settings, host, addr, port, use_tls=True,
                                             require_tls=True, smart_host=None,
                                             authenticate=True)
            except HostFailed as exc:
                last = exc.reply
                if not exc.tls:
                    continue  # not reached: the next host
                await tls_policy.session(domain, policy, host, addr,
                                         exc.result or "validation-failure")
                if policy.mode == "enforce":
                    last = f"451 4.7.5 MTA-STS policy of {domain}: {exc.reply}"
                    continue
                # "testing" (RFC 8461 §5): deliver anyway, as without a policy.
            else:
                if record:
                    await tls_policy.session(domain, policy, host, addr, "success")
                done, last = await _send(settings, session, host, reverse_path, recipients,
                                         message, lease, dsn)
                if done is not None:
                    return done
                continue
        # Opportunistic STARTTLS: if the handshake fails, one more try in plain text.
        for use_tls in (True, False) if not require_tls else (True,):
            try:
                session = await open_session(settings, host, addr, port, use_tls=use_tls,
                                             require_tls=require_tls, smart_host=smart_host)
            except HostFailed as exc:
                last = exc.reply
                if record and policy is None and exc.tls and use_tls:
                    await tls_policy.session(domain, None, host, addr,
                                             exc.result or "validation-failure")
                if "STARTTLS" in exc.reply:
                    continue
                break
            if record and policy is None and use_tls:
                await tls_policy.session(domain, None, host, addr,
                                         "success" if session.tls else "starttls-not-supported")
            done, last = await _send(settings, session, host, reverse_path, recipients,
                                     message, lease, dsn)
            if done is not None:
                return done
            break
    return _all(recipients, Outcome.TEMPORARY, last)


async def _tlsa(resolver: Resolver, host: str) -> list[dane.Tlsa]:
    """The usable TLSA records of MX ``host`` (RFC 7672 §2.2, §3.1.3): [] when there
    are none or the answer is not validated (no AD bit).  Raises ``HostFailed``
    when the lookup fails temporarily (§2.2: the host is not to be used then)."""
    try:
        texts, secure = await resolver.tlsa(f"_25._tcp.{host}")
    except DnsError as exc:
        if exc.temporary:
            raise HostFailed(f"451 4.4.3 TLSA lookup for {host} failed: {exc}") from None
        return []
    if not secure:
        return []
    records = []
    for text in texts:
        try:
            records.append(dane.Tlsa.from_text(text))
        except ValueError:
            continue  # a malformed record is not usable
    return dane.usable(records)


def _peer_certificate(session: OutboundSession) -> bytes | None:
    """The DER certificate the next hop presented, None without TLS."""
    transport = session.smtp.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der if isinstance(der, bytes) else None


async def _try_dane(
    settings: OutboundSettings, records: list[dane.Tlsa], domain: str, host: str, addr: str,
    port: int, reverse_path: str, recipients: Sequence[str], message: bytes,
    lease: Lease | None, dsn: DsnRequest | None, tls_policy: OutboundTls,
) -> tuple[list[RcptResult] | None, str]:
    """Deliver to a host with usable TLSA records (RFC 7672 §2.2): STARTTLS is
    required and the certificate must match a record (§3.1), else the host is
    skipped: ``(None, reply)``."""
    lines = tuple(f"{r.usage} {r.selector} {r.mtype} {r.data.hex()}" for r in records)

    async def note(result: str) -> None:
        await tls_policy.record(TlsAttempt(domain, "tlsa", result, host, addr, lines))

    try:
        # Not PKIX: the TLSA records authenticate the host (RFC 7672 §3.1).
        session = await open_session(settings, host, addr, port, use_tls=True,
                                     require_tls=True, smart_host=None)
    except HostFailed as exc:
        if exc.tls:
            await note("dane-required" if exc.result == "starttls-not-supported"
                       else "validation-failure")
        return None, exc.reply
    der = _peer_certificate(session)
    if der is None or not dane.verify(records, [der], [host]):
        await note("tlsa-invalid")
        await close_session(session)
        return None, (f"451 4.7.5 {session.where}: certificate does not match "
                      "its TLSA records (DANE, RFC 7672 §3)")
    await note("success")
    return await _send(settings, session, host, reverse_path, recipients, message, lease, dsn)
