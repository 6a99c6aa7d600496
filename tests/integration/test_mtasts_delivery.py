"""MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) in the outbound queue, end to end on loopback.

Our DNS server publishes ``_mta-sts.dest.test`` and maps ``mta-sts.dest.test``
and ``mx.dest.test`` to 127.0.0.1; a loopback aiohttp HTTPS server with its
own certificate (trusted through ``mta_sts_ca_file``) serves the policy; the
receiver's certificate is for ``mx.dest.test`` and verifies against
``ca_file`` (or does not, with the system's store)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from support.https import loopback_https
from support.outbound import OutboundEnv, outbound_env
from support.unbound import UNBOUND, validating_resolver

from mailserver.app import build_tls_policy, resolver_for
from mailserver.queue.manager import QueueManager
from mailserver.queue.stspolicy import StsPolicies
from mailserver.queue.tlsrpt import TlsReportLog

MSG = (b"From: <alice@example.test>\r\nTo: <bob@dest.test>\r\nSubject: sts\r\n"
       b"Message-ID: <sts@example.test>\r\n\r\nbody\r\n")


def policy(mode: str = "enforce", mx: str = "mx.dest.test") -> str:
    return f"version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n"


class StsEnv(OutboundEnv):
    policy_text = policy()
    fetches = 0
    sts_port = 0

    @property
    def sts_ca(self) -> str:
        return str(self.tmp / "sts.crt")

    async def start_manager(self, **kw: Any) -> QueueManager:
        settings = self.settings(**{
            "backoff": (3600.0,), "mta_sts": True, "mta_sts_port": self.sts_port,
            "mta_sts_ca_file": self.sts_ca, "tlsrpt": True, "ca_file": str(self.rx.cert_path),
            **kw})
        mgr = self.new_manager(settings, tls_policy=build_tls_policy(
            settings, resolver_for(settings), self.tmp))
        await mgr.start()
        return mgr

    def results(self) -> list[tuple[str, str]]:
        day = dt.datetime.now(dt.UTC).date()
        return [(r["type"], r["result"]) for r in TlsReportLog(self.tmp / "tlsrpt").read(day)]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[StsEnv]:
    async with outbound_env(tmp_path, StsEnv) as e:
        await e.rx.stop()
        e.rx.cert_path.unlink()
        e.rx.cert_name = "mx.dest.test"
        await e.rx.start()
        e.dns.add("_mta-sts.dest.test", "TXT", "v=STSv1; id=20261205a;")
        e.dns.add("mta-sts.dest.test", "A", "127.0.0.1")

        async def serve(_: web.Request) -> web.Response:
            e.fetches += 1
            return web.Response(text=e.policy_text, content_type="text/plain")

        app = web.Application()
        app.router.add_get("/.well-known/mta-sts.txt", serve)
        async with loopback_https(app, "mta-sts.dest.test", tmp_path / "sts.crt",
                                  tmp_path / "sts.key") as port:
            e.sts_port = port
            yield e


async def test_enforce_delivers_over_verified_tls_and_records(env: StsEnv) -> None:
    await env.start_manager()
    await env.mgr.enqueue("alice@example.test", ["bob@dest.test"], MSG)  # type: ignore[union-attr]
    (got,) = await env.rx.wait_for(1)
    assert got.tls
    assert env.fetches == 1
    assert ("sts", "success") in env.results()
    # The policy survives a restart (RFC 8461 §5): a new cache on the same
    # directory uses it while the TXT id is unchanged, without fetching.
    sts = StsPolicies(resolver_for(env.settings()), env.tmp / "mta-sts",
                      port=env.sts_port, ca_file=env.sts_ca)
    found = await sts.lookup("dest.test")
    assert found.policy is not None and found.policy.mode == "enforce"
    assert env.fetches == 1


@pytest.mark.parametrize("why", ["unverified", "mx-mismatch"])
async def test_enforce_defers_when_no_host_qualifies(env: StsEnv, why: str) -> None:
    if why == "mx-mismatch":
        env.policy_text = policy(mx="*.elsewhere.test")
        mgr = await env.start_manager()
    else:
        mgr = await env.start_manager(ca_file=str(env.tmp / "sts.crt"))  # not rx's CA
    qid = await mgr.enqueue("alice@example.test", ["bob@dest.test"], MSG)
    await mgr.wait_rounds(1)
    entry = await env.admin.queued(qid)
    (rcpt,) = entry.recipients
    assert rcpt.status == "deferred" and "4.7.5" in rcpt.last_error
    assert env.rx.received == []
    if why == "unverified":
        assert ("sts", "certificate-not-trusted") in env.results()


async def test_testing_mode_delivers_anyway_and_records_the_failure(env: StsEnv) -> None:
    env.policy_text = policy(mode="testing")
    await env.start_manager(ca_file=str(env.tmp / "sts.crt"))  # the MX does not verify
    await env.mgr.enqueue("alice@example.test", ["bob@dest.test"], MSG)  # type: ignore[union-attr]
    (got,) = await env.rx.wait_for(1)
    assert got.tls  # opportunistic STARTTLS after the failed verified attempt
    assert ("sts", "certificate-not-trusted") in env.results()


@pytest.mark.parametrize("why", ["sts-policy-invalid", "sts-webpki-invalid"])
async def test_fetch_failures_fall_back_and_are_recorded(env: StsEnv, why: str) -> None:
    if why == "sts-policy-invalid":
        env.policy_text = "not a policy"
        await env.start_manager()
    else:  # the policy server's certificate does not verify
        await env.start_manager(mta_sts_ca_file=str(env.rx.cert_path))
    await env.mgr.enqueue("alice@example.test", ["bob@dest.test"], MSG)  # type: ignore[union-attr]
    await env.rx.wait_for(1)  # no valid policy: delivered as without MTA-STS
    results = env.results()
    assert ("sts", why) in results
    assert ("no-policy-found", "success") in results


async def test_tls_required_no_waives_the_policy(env: StsEnv) -> None:
    # RFC 8689 §4.2.1 (and RFC 8460 §5.3: a TLS report about a domain whose
    # policy is broken must still reach it): no MX matches the enforced policy,
    # yet a message with "TLS-Required: No" is delivered.
    env.policy_text = policy(mx="*.elsewhere.test")
    mgr = await env.start_manager()
    waived = MSG.replace(b"Subject: sts", b"TLS-Required: No\r\nSubject: sts")
    await mgr.enqueue("alice@example.test", ["bob@dest.test"], waived)
    (got,) = await env.rx.wait_for(1)
    assert b"TLS-Required: No" in got.data


# -- DANE (RFC 7672): our DNS server sets the AD bit as a validating resolver would --


def _tlsa_of(cert_pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


@pytest.mark.parametrize("case", ["match", "mismatch", "not-validated"])
async def test_dane_ee_decides_before_mta_sts(env: StsEnv, case: str) -> None:
    name = "_25._tcp.mx.dest.test"
    cert = env.tmp / ("sts.crt" if case == "mismatch" else "rx.crt")
    env.dns.add(name, "TLSA", _tlsa_of(cert))
    if case != "not-validated":
        env.dns.secure.add(name)
    # The MX certificate does not verify by PKIX (ca_file is another CA), so under
    # the enforced MTA-STS policy only DANE can authenticate it.
    mgr = await env.start_manager(dane=True, ca_file=str(env.tmp / "sts.crt"))
    qid = await mgr.enqueue("alice@example.test", ["bob@dest.test"], MSG)
    if case == "match":
        (got,) = await env.rx.wait_for(1)
        assert got.tls and ("tlsa", "success") in env.results()
        return
    await mgr.wait_rounds(1)
    (rcpt,) = (await env.admin.queued(qid)).recipients
    assert rcpt.status == "deferred" and env.rx.received == []
    if case == "mismatch":
        assert "TLSA" in rcpt.last_error and ("tlsa", "tlsa-invalid") in env.results()
    else:  # no AD bit: the records do not count, MTA-STS decides
        assert all(t != "tlsa" for t, _ in env.results())
        assert ("sts", "certificate-not-trusted") in env.results()


@pytest.mark.parametrize("case", ["match", "mismatch"])
async def test_dane_through_a_validating_unbound(env: StsEnv, case: str) -> None:
    assert UNBOUND is not None, "./scripts/test installs unbound (Debian package)"
    cert = env.tmp / ("rx.crt" if case == "match" else "sts.crt")
    records = ["@ MX 10 mx.dest.test.", "mx A 127.0.0.1", f"_25._tcp.mx TLSA {_tlsa_of(cert)}"]
    with validating_resolver(env.tmp, "dest.test", records) as (address, port):
        mgr = await env.start_manager(dane=True, mta_sts=False, resolver_address=address,
                                      resolver_port=port, ca_file=str(env.tmp / "sts.crt"))
        qid = await mgr.enqueue("alice@example.test", ["bob@dest.test"], MSG)
        if case == "match":
            (got,) = await env.rx.wait_for(1)
            assert got.tls and ("tlsa", "success") in env.results()
        else:
            await mgr.wait_rounds(1)
            (rcpt,) = (await env.admin.queued(qid)).recipients
            assert rcpt.status == "deferred" and env.rx.received == []
            assert ("tlsa", "tlsa-invalid") in env.results()
        await mgr.stop()
