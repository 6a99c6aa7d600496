"""Client autoconfiguration on the http listener: what a mail client asks
before it knows our host names and ports.

* Thunderbird's autoconfig (``/.well-known/autoconfig/mail/config-v1.1.xml``
  and ``/mail/config-v1.1.xml``, ``?emailaddress=``; the format of
  https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat);
* Microsoft's autodiscover "POX" (``/autodiscover/autodiscover.xml``, POST
  with the request XML naming ``EMailAddress``, GET with ``?email=``; the
  Outlook 2006 schemas);
* an Apple configuration profile (``/profile.mobileconfig?email=``,
  ``com.apple.mail.managed`` payload, a property list);
* the MTA-STS policy (RFC 8461 §3.2, ``/.well-known/mta-sts.txt``), the one
  ``mailserver dns`` publishes the id of.

Every answer names ``config.hostname`` and the ports of the configured
``imap`` and ``submission`` listeners, implicit TLS first (RFC 8314 §3:
preferred over STARTTLS), then STARTTLS; a listener without TLS is never
offered.  Only an address of a local domain gets an answer (404 otherwise),
so the endpoints tell nothing about other domains.  The builders are pure
(configuration in, bytes out); ``routes`` adds them to an aiohttp app.
"""

from __future__ import annotations

import plistlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from aiohttp import web

from mailserver.admin import dns
from mailserver.config import Config
from mailserver.errors import InvalidRequest, NotFound

#: Content types (autodiscover answers text/xml, as Exchange does).
XML = "application/xml"
MOBILECONFIG = "application/x-apple-aspen-config"
_AUTODISCOVER_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
_OUTLOOK_RESPONSE = ("http://schemas.microsoft.com/exchange/autodiscover/outlook/"
                     "responseschema/2006a")
#: A request body larger than this is refused (an autodiscover request is ~300 octets).
MAX_REQUEST = 16 * 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a client reaches one protocol: host, port, ``implicit`` TLS or STARTTLS."""

    host: str
    port: int
    implicit: bool


def endpoints(config: Config, protocol: str) -> list[Endpoint]:
    """The TLS endpoints of ``protocol`` ("imap" or "submission"), implicit TLS first."""
    found = [Endpoint(config.hostname, x.port, x.tls == "implicit")
             for x in config.listeners if x.protocol == protocol and x.tls != "none"]
    return sorted(found, key=lambda e: not e.implicit)


def _address(address: str | None, config: Config,
             is_local: Callable[[str], bool]) -> tuple[str, str]:
    """``(address, domain)`` of a local domain's address; NotFound otherwise."""
    if not address or "@" not in address or len(address) > 320:
        raise InvalidRequest("an email address is needed (emailaddress= or email=)")
    local, _, domain = address.strip().rpartition("@")
    domain = domain.lower().rstrip(".")
    if not local or not is_local(domain):
        raise NotFound(f"{domain} is not a domain of this server")
    return f"{local}@{domain}", domain


def thunderbird(config: Config, address: str, domain: str) -> bytes:
    """Thunderbird's ``config-v1.1.xml`` for ``address``."""
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    ET.SubElement(provider, "domain").text = domain
    ET.SubElement(provider, "displayName").text = domain
    ET.SubElement(provider, "displayShortName").text = domain
    for kind, protocol, tag in (("imap", "imap", "incomingServer"),
                                ("smtp", "submission", "outgoingServer")):
        for ep in endpoints(config, protocol):
            server = ET.SubElement(provider, tag, type=kind)
            ET.SubElement(server, "hostname").text = ep.host
            ET.SubElement(server, "port").text = str(ep.port)
            ET.SubElement(server, "socketType").text = "SSL" if ep.implicit else "STARTTLS"
            ET.SubElement(server, "authentication").text = "password-cleartext"
            ET.SubElement(server, "username").text = "%EMAILADDRESS%"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def autodiscover_request_address(body: bytes) -> str | None:
    """The ``EMailAddress`` of an Outlook autodiscover request (any namespace),
    None when there is none.  Raises InvalidRequest for XML that does not
    parse (entities are not expanded: ``xml.etree`` refuses a DTD's)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise InvalidRequest(f"not an autodiscover request: {exc}") from None
    for el in root.iter():
        if el.tag.rpartition("}")[2] == "EMailAddress" and el.text:
            return el.text.strip()
    return None


def autodiscover(config: Config, address: str) -> bytes:
    """Outlook's autodiscover POX answer for ``address`` (IMAP and SMTP)."""
    root = ET.Element("Autodiscover", xmlns=_AUTODISCOVER_RESPONSE)
    response = ET.SubElement(root, "Response", xmlns=_OUTLOOK_RESPONSE)
    account = ET.SubElement(response, "Account")
    ET.SubElement(account, "AccountType").text = "email"
    ET.SubElement(account, "Action").text = "settings"
    for kind, protocol in (("IMAP", "imap"), ("SMTP", "submission")):
        for ep in endpoints(config, protocol)[:1]:  # Outlook takes one per type
            proto = ET.SubElement(account, "Protocol")
            ET.SubElement(proto, "Type").text = kind
            ET.SubElement(proto, "Server").text = ep.host
            ET.SubElement(proto, "Port").text = str(ep.port)
            ET.SubElement(proto, "DomainRequired").text = "off"
            ET.SubElement(proto, "LoginName").text = address
            ET.SubElement(proto, "SPA").text = "off"
            if ep.implicit:
                ET.SubElement(proto, "SSL").text = "on"
            else:
                ET.SubElement(proto, "Encryption").text = "TLS"
            ET.SubElement(proto, "AuthRequired").text = "on"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def mobileconfig(config: Config, address: str) -> bytes:
    """An Apple configuration profile (XML property list) with one mail
    account for ``address``; the password is left for the device to ask."""
    imap, smtp = endpoints(config, "imap"), endpoints(config, "submission")
    if not imap or not smtp:
        raise NotFound("no IMAP or submission listener with TLS to describe")
    ident = f"{_reverse(config.hostname)}.mail.{address}"
    account = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": ident + ".account",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, "mailaccount:" + ident)).upper(),
        "PayloadDisplayName": address,
        "EmailAccountDescription": address,
        "EmailAccountType": "EmailTypeIMAP",
        "EmailAddress": address,
        "IncomingMailServerHostName": imap[0].host,
        "IncomingMailServerPortNumber": imap[0].port,
        "IncomingMailServerUseSSL": True,  # STARTTLS counts as SSL for the Mail app
        "IncomingMailServerUsername": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": smtp[0].host,
        "OutgoingMailServerPortNumber": smtp[0].port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": ident,
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, "profile:" + ident)).upper(),
        "PayloadDisplayName": f"Mail: {address}",
        "PayloadContent": [account],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)


def _reverse(hostname: str) -> str:
    return ".".join(reversed(hostname.split(".")))


def add_routes(app: web.Application, config: Config,
               is_local: Callable[[str], bool]) -> None:
    """Serve the three kinds on ``app`` (no token: clients ask before login)."""

    async def tb(request: web.Request) -> web.Response:
        address, domain = _address(request.query.get("emailaddress"), config, is_local)
        return web.Response(body=thunderbird(config, address, domain), content_type=XML,
                            charset="utf-8")

    async def ad(request: web.Request) -> web.Response:
        if request.method == "POST":
            if request.content_length is not None and request.content_length > MAX_REQUEST:
                raise InvalidRequest("request too large")
            body = await request.content.read(MAX_REQUEST + 1)
            if len(body) > MAX_REQUEST:
                raise InvalidRequest("request too large")
            given = autodiscover_request_address(body)
        else:
            given = request.query.get("email")
        address, _ = _address(given, config, is_local)
        return web.Response(body=autodiscover(config, address), content_type="text/xml",
                            charset="utf-8")

    async def apple(request: web.Request) -> web.Response:
        address, _ = _address(request.query.get("email"), config, is_local)
        return web.Response(
            body=mobileconfig(config, address), content_type=MOBILECONFIG,
            headers={"Content-Disposition": 'attachment; filename="mail.mobileconfig"'})

    app.router.add_get("/.well-known/autoconfig/mail/config-v1.1.xml", tb)
    app.router.add_get("/mail/config-v1.1.xml", tb)
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
        app.router.add_get(path, ad)
        app.router.add_post(path, ad)
    app.router.add_get("/profile.mobileconfig", apple)

    async def mta_sts(request: web.Request) -> web.Response:
        # RFC 8461 §3.3: text/plain at https://mta-sts.DOMAIN/.well-known/mta-sts.txt.
        return web.Response(text=dns.mta_sts_policy(config.hostname), content_type="text/plain")

    app.router.add_get("/.well-known/mta-sts.txt", mta_sts)
