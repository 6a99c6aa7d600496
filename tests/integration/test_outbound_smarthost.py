"""All outbound mail through a smart host (relay with its own port, TLS and AUTH).

The smart host is an aiosmtpd receiver on loopback with AUTH PLAIN/LOGIN
and a self-signed certificate for "smarthost.test"; our DNS server maps that
name to 127.0.0.1 and the queue trusts the certificate through
``SmartHost.ca_file``.  The recipients' domains have no DNS records at all:
delivery must not look at MX.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from support.dnsserver import DnsServer
from support.outbound import outbound_settings, queue_admin, queued_or_none
from support.smtpreceiver import Receiver

from mailserver.admin import QueueEntry, QueueRecipient
from mailserver.app import resolver_for
from mailserver.queue.manager import QueueManager
from mailserver.queue.model import RcptStatus
from mailserver.queue.settings import SmartHost
from mailserver.store.api import LmdbQueue
from mailserver.store.store import Store

SENDER = "alice@example.test"
USER, PASSWORD = "relay-user", "relay-secret"
BODY = (b"From: alice@example.test\r\nTo: bob@far-away.test\r\nSubject: relayed\r\n"
        b"Message-ID: <relayed@example.test>\r\n\r\nvia the smart host\r\n")


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    server = DnsServer()
    server.start()
    server.add("smarthost.test", "A", "127.0.0.1")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "data")
    try:
        yield s
    finally:
        await s.close()


async def _relay(tmp_path: Path, **kw: object) -> Receiver:
    rx = Receiver(tls_dir=tmp_path / "relay", cert_name="smarthost.test",
                  auth={USER: PASSWORD}, **kw)  # type: ignore[arg-type]
    await rx.start()
    return rx


def _manager(store: Store, dns: DnsServer, smart_host: SmartHost) -> QueueManager:
    # smtp_port 9 (discard): were MX delivery tried, it would fail, not reach the relay.
    settings = outbound_settings(dns, 9, smart_host=smart_host)
    return QueueManager(LmdbQueue(store), settings, resolver=resolver_for(settings))


@asynccontextmanager
async def running(mgr: QueueManager, rx: Receiver) -> AsyncIterator[QueueManager]:
    """``mgr`` started; it and the relay ``rx`` stopped on exit."""
    try:
        await mgr.start()
        yield mgr
    finally:
        await mgr.stop()
        await rx.stop()


async def one_round(store: Store, mgr: QueueManager) -> tuple[QueueEntry, QueueRecipient]:
    """Queue ``BODY`` to bob, let one delivery round run: the entry and its recipient."""
    qid = await mgr.enqueue(SENDER, ["bob@far-away.test"], BODY)
    await mgr.wait_rounds(1)
    rec = await queued_or_none(queue_admin(store, mgr), qid)
    assert rec is not None
    (r,) = rec.recipients
    return rec, r


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_all_mail_goes_to_the_smart_host_with_tls_and_auth(
    tmp_path: Path, dns: DnsServer, store: Store, tls: str
) -> None:
    rx = await _relay(tmp_path, implicit_tls=tls == "implicit")
    mgr = _manager(store, dns, SmartHost("smarthost.test", rx.port, tls, USER, PASSWORD,
                                         ca_file=str(rx.cert_path)))
    async with running(mgr, rx):
        await mgr.enqueue(SENDER, ["bob@far-away.test", "carol@other.test"], BODY)
        got = await rx.wait_for(2)  # one transaction per recipient domain
        assert sorted(r for g in got for r in g.rcpt_tos) == ["bob@far-away.test",
                                                               "carol@other.test"]
        assert all(g.tls and g.data == BODY and g.mail_from == SENDER for g in got)
        assert rx.authenticated and set(rx.authenticated) == {USER}
        await mgr.wait_idle()
        assert await queue_admin(store, mgr).list_queue() == []
        # No MX (or address) lookups for the recipients' domains: only the relay's name.
        assert {name for name, _ in dns.queries} == {"smarthost.test"}
        if tls == "starttls":
            assert rx.reads[0][1] == b"STARTTLS\r\n"  # before AUTH, which needs TLS


async def test_wrong_credentials_defer_with_the_error_recorded(
    tmp_path: Path, dns: DnsServer, store: Store
) -> None:
    rx = await _relay(tmp_path)
    mgr = _manager(store, dns, SmartHost("smarthost.test", rx.port, "starttls", USER, "wrong",
                                         ca_file=str(rx.cert_path)))
    async with running(mgr, rx):
        rec, r = await one_round(store, mgr)
        assert r.status == RcptStatus.DEFERRED.value and r.attempts == 1
        assert r.last_error.startswith("535 ") and "smarthost.test" in r.last_error
        assert rx.received == [] and rx.authenticated == []
        assert rec.next_attempt > rec.created + 3000


async def test_untrusted_certificate_is_not_used(
    tmp_path: Path, dns: DnsServer, store: Store
) -> None:
    rx = await _relay(tmp_path)
    # No ca_file: the self-signed certificate does not chain to the system's trust store.
    mgr = _manager(store, dns, SmartHost("smarthost.test", rx.port, "starttls", USER, PASSWORD))
    async with running(mgr, rx):
        rec, r = await one_round(store, mgr)
        assert r.status == RcptStatus.DEFERRED.value and "STARTTLS" in r.last_error
        assert "CERTIFICATE_VERIFY_FAILED" in r.last_error
        assert rx.received == [] and rx.authenticated == []


async def test_plain_relay_without_tls_or_auth(
    tmp_path: Path, dns: DnsServer, store: Store
) -> None:
    rx = Receiver()  # tls = "none": a relay on a trusted network, no TLS, no AUTH
    await rx.start()
    mgr = _manager(store, dns, SmartHost("smarthost.test", rx.port, "none"))
    async with running(mgr, rx):
        await mgr.enqueue(SENDER, ["bob@far-away.test"], BODY)
        (got,) = await rx.wait_for(1)
        assert not got.tls and got.rcpt_tos == ["bob@far-away.test"]
        assert all(b"STARTTLS" not in c and b"AUTH" not in c for c in rx.reads[0])
