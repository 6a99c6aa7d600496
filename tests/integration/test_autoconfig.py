"""Client autoconfiguration (Thunderbird autoconfig, Outlook autodiscover POX,
Apple .mobileconfig) parsed as the clients parse them: the builders on a
configuration with production ports, and the routes on a real http
listener (local domains only)."""

from __future__ import annotations

import dataclasses
import plistlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from xml.etree import ElementTree as ET

import pytest
from support.server import ServerThread, make_config, running_server

from mailserver.config import Config, Listener
from mailserver.http import autoconfig

PRODUCTION = Config(hostname="mail.example.org", domains=("example.org",), listeners=(
    Listener("smtp", "smtp", port=25, tls="starttls"),
    Listener("submission", "submission", port=587, tls="starttls"),
    Listener("submissions", "submission", port=465, tls="implicit"),
    Listener("imap", "imap", port=143, tls="starttls"),
    Listener("imaps", "imap", port=993, tls="implicit"),
    Listener("plain", "imap", port=1143, tls="none"),  # never offered
))
OUTLOOK = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


def test_thunderbird_config() -> None:
    root = ET.fromstring(autoconfig.thunderbird(PRODUCTION, "a@example.org", "example.org"))
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == "example.org"
    incoming = [(s.findtext("hostname"), s.findtext("port"), s.findtext("socketType"))
                for s in provider.findall("incomingServer")]
    assert incoming == [("mail.example.org", "993", "SSL"), ("mail.example.org", "143", "STARTTLS")]
    outgoing = [(s.get("type"), s.findtext("port"), s.findtext("socketType"))
                for s in provider.findall("outgoingServer")]
    assert outgoing == [("smtp", "465", "SSL"), ("smtp", "587", "STARTTLS")]
    assert {s.findtext("username") for s in provider.iter()
            if s.tag.endswith("Server")} == {"%EMAILADDRESS%"}


def test_autodiscover_pox() -> None:
    root = ET.fromstring(autoconfig.autodiscover(PRODUCTION, "a@example.org"))
    protocols = {p.findtext(OUTLOOK + "Type"): p for p in root.iter(OUTLOOK + "Protocol")}
    imap, smtp = protocols["IMAP"], protocols["SMTP"]
    assert (imap.findtext(OUTLOOK + "Server"), imap.findtext(OUTLOOK + "Port"),
            imap.findtext(OUTLOOK + "SSL")) == ("mail.example.org", "993", "on")
    assert (smtp.findtext(OUTLOOK + "Port"), smtp.findtext(OUTLOOK + "LoginName")) == (
        "465", "a@example.org")
    request = (b'<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/'
               b'exchange/autodiscover/outlook/requestschema/2006"><Request>'
               b"<EMailAddress>a@example.org</EMailAddress></Request></Autodiscover>")
    assert autoconfig.autodiscover_request_address(request) == "a@example.org"


def test_mobileconfig() -> None:
    profile = plistlib.loads(autoconfig.mobileconfig(PRODUCTION, "a@example.org"))
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
    (account,) = profile["PayloadContent"]
    assert account["PayloadType"] == "com.apple.mail.managed"
    assert (account["IncomingMailServerHostName"], account["IncomingMailServerPortNumber"],
            account["IncomingMailServerUseSSL"]) == ("mail.example.org", 993, True)
    assert account["OutgoingMailServerPortNumber"] == 465
    assert account["EmailAddress"] == account["IncomingMailServerUsername"] == "a@example.org"
    # Stable identifiers: the same profile installed twice replaces itself.
    assert plistlib.loads(autoconfig.mobileconfig(PRODUCTION, "a@example.org")) == profile


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(tmp_path_factory.mktemp("autoconfig") / "data")
    http = Listener(name="http", protocol="http")
    with running_server(dataclasses.replace(config, listeners=(*config.listeners, http))) as s:
        yield s


def fetch(srv: ServerThread, path: str, body: bytes | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{srv.port('http')}{path}", data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_served_on_the_http_listener(srv: ServerThread) -> None:
    q = urllib.parse.urlencode({"emailaddress": "alice@example.test"})
    for path in ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"):
        status, ctype, body = fetch(srv, f"{path}?{q}")
        assert status == 200 and ctype.startswith("application/xml")
        assert ET.fromstring(body).find("emailProvider").get("id") == "example.test"
    status, ctype, body = fetch(srv, "/autodiscover/autodiscover.xml",
                                b"<Autodiscover><Request><EMailAddress>alice@example.test"
                                b"</EMailAddress></Request></Autodiscover>")
    assert status == 200 and b"<LoginName>alice@example.test</LoginName>" in body
    status, ctype, body = fetch(srv, "/profile.mobileconfig?email=alice%40example.test")
    assert status == 200 and ctype == autoconfig.MOBILECONFIG
    assert plistlib.loads(body)["PayloadContent"][0]["EmailAddress"] == "alice@example.test"
    status, ctype, body = fetch(srv, "/.well-known/mta-sts.txt")
    assert status == 200 and ctype.startswith("text/plain")
    assert body.decode().split("\r\n")[:3] == ["version: STSv1", "mode: testing",
                                               "mx: mx.example.test"]
    # Not ours, missing, or not XML: a problem response, never a crash.
    assert fetch(srv, "/mail/config-v1.1.xml?emailaddress=x%40other.test")[0] == 404
    assert fetch(srv, "/mail/config-v1.1.xml")[0] == 400
    assert fetch(srv, "/autodiscover/autodiscover.xml", b"<not xml")[0] == 400
    assert fetch(srv, "/autodiscover/autodiscover.xml", b"x" * 20000)[0] == 400
