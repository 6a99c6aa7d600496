"""The DNSBL stage (RFC 5782) against our loopback DNS server: a ``reject``
zone listing the client refuses its recipients with 550 5.7.1, a ``mark``
zone adds X-DNSBL, an unlisted client and a failing zone pass."""

from __future__ import annotations

import dataclasses
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.dnsserver import DnsServer
from support.server import make_config, running_server

from mailserver.checks.dnsbl import is_listed, query_name
from mailserver.config import ChecksSettings, Config


def test_query_names_of_rfc_5782() -> None:
    assert query_name("192.0.2.99", "bl.example") == "99.2.0.192.bl.example"  # §2.1
    assert query_name("2001:db8:1:2:3:4:567:89ab", "ugly.example") == (  # §2.4
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example")
    assert query_name("unix-socket", "bl.example") is None
    assert is_listed(["127.0.0.2"]) and not is_listed([])
    assert not is_listed(["127.255.255.254"])  # an error code (§5), not a listing
    assert not is_listed(["192.0.2.1"])  # a zone that answers everything


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer()
    server.start()
    server.add("1.0.0.127.reject.test", "A", "127.0.0.2")
    server.add("1.0.0.127.mark.test", "A", "127.0.0.4")
    server.fail("1.0.0.127.broken.test")
    yield server
    server.stop()


def config_for(tmp: Path, dns: DnsServer, **checks: tuple[str, ...]) -> Config:
    config = make_config(tmp / "data", trusted_networks=())
    return dataclasses.replace(
        config, checks=ChecksSettings(**checks),
        outbound=dataclasses.replace(config.outbound, resolver_address=dns.address,
                                     resolver_port=dns.port))


def test_a_listed_client_is_refused(tmp_path: Path, dns: DnsServer) -> None:
    config = config_for(tmp_path, dns, dnsbl_reject=("broken.test", "reject.test"))
    with running_server(config) as srv, smtplib.SMTP("127.0.0.1", srv.port("smtp")) as c:
        c.ehlo("client.test")
        assert c.mail("x@sender.test")[0] == 250
        code, text = c.rcpt("alice@example.test")
        assert code == 550 and text == b"5.7.1 Service unavailable; client [127.0.0.1] " \
            b"blocked using reject.test"


def test_a_marking_zone_adds_a_field(tmp_path: Path, dns: DnsServer) -> None:
    config = config_for(tmp_path, dns, dnsbl_reject=("broken.test",), dnsbl_mark=("mark.test",
                                                                            "other.test"))
    with running_server(config) as srv:
        with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as c:
            c.sendmail("x@sender.test", ["alice@example.test"], b"Subject: hi\r\n\r\nhello\r\n")
        box = srv.store.get_mailbox("alice@example.test", "INBOX")
        [rec] = srv.store.list_messages(box.id)
        blob = srv.store.get_blob(rec.blob_id)
        assert b"X-DNSBL: 127.0.0.1 listed by mark.test\r\n" in blob
