"""Sending the daily aggregate reports: DMARC (RFC 7489 §7.2) and TLS-RPT (RFC 8460 §3, §5).

What is recorded during a UTC day (``checks/dmarc_log.py``,
``queue/tlsrpt.py``) becomes, after the day ends, one report per policy
domain, sent to the addresses the domain publishes:

* DMARC: the ``rua=`` of the domain's ``_dmarc`` record as recorded with the
  verdicts; ``mailto:`` only (§6.2: the one scheme receivers must support).
  An address outside the policy domain's organizational domain is used only
  when ``<policy-domain>._report._dmarc.<its domain>`` has a ``v=DMARC1``
  TXT record (§7.1, external destination verification).  A ``!size`` suffix
  (§6.2) drops the report for that address when the message would be larger.
  The message carries the gzip'd XML as ``application/gzip`` under the
  §7.2.1.1 file name, with the subject ``Report Domain: … Submitter: …
  Report-ID: <…>``.
* TLS-RPT: the ``rua=`` of ``_smtp._tls.<domain>`` (``v=TLSRPTv1``), looked
  up when the report is sent; ``mailto:`` and ``https:`` (§3).  Mail is a
  ``multipart/report; report-type="tlsrpt"`` with ``TLS-Report-Domain`` and
  ``TLS-Report-Submitter`` (§5.3, both DKIM-signed by the queue's signer) and
  the gzip'd JSON as ``application/tlsrpt+gzip``; HTTPS is a POST of the same
  bytes (§5.4, success: any 2xx).  A report must still go out when the
  domain's TLS is what is broken (§5.3: "MUST NOT honor MTA-STS or DANE TLSA
  failures"), so the message carries ``TLS-Required: No`` (RFC 8689 §4.2.1),
  which waives our TLS policy for it.

Mail goes through the outbound queue, so its retries and DSNs apply; an
HTTPS POST that fails is tried again at the next pass for as long as the day
is one of the last ``DAYS_BACK`` days (§5.6: redelivery for up to 24 hours).
What was handed over is remembered in ``<log directory>/<day>.sent`` (a JSON
line per kind, domain and address), so a restart does not send a report
twice; a crash between the queue's commit and that line can send one twice,
which the receiver's Report-ID dedupes (RFC 7489 §7.2.1.1).

The sender runs in the one process that runs the queue scheduler
(``App(run_queue=True)``): once at start and then every ``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import datetime as dt
import email.utils
import gzip
import json
import os
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from mailserver.checks.dmarc_log import DmarcLog
from mailserver.checks.dmarc_report import reports as dmarc_reports
from mailserver.dns.resolver import DnsError, Resolver
from mailserver.dns.suffix import organizational_domain
from mailserver.queue.stspolicy import OurResolver
from mailserver.queue.tlsrpt import TlsReportLog
from mailserver.queue.tlsrpt import reports as tlsrpt_reports

log = structlog.get_logger("mailserver.reports")

#: Days before today whose reports are still sent (and HTTPS posts retried).
DAYS_BACK = 2
#: Seconds an HTTPS POST may take.
POST_TIMEOUT = 60.0
_SIZE = re.compile(r"^(\d+)([kmgt]?)$", re.I)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

#: ``queue.enqueue``'s shape: (reverse-path, forward-paths, message) -> queue id.
Enqueue = Callable[[str, Sequence[str], bytes], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Destination:
    """One ``rua`` URI: ``scheme`` "mailto" or "https"; ``target`` the address
    or the URL; ``limit`` the largest report in octets (None: no limit)."""

    scheme: str
    target: str
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """One day's report for one policy domain, ready to send.

    ``kind``: "dmarc" or "tlsrpt"; ``payload``: the gzip'd document (bytes);
    ``filename``: its attachment name; ``report_id``: the msg-id of the
    subject line without brackets; ``submitter``: our domain as the report
    names it."""

    kind: str
    day: dt.date
    policy_domain: str
    report_id: str
    payload: bytes
    filename: str
    submitter: str


def report_sender(report_from: str, domains: Sequence[str], hostname: str) -> str:
    """The From of report mail: ``[outbound] report_from``, else ``postmaster@``
    the first configured domain, else ``postmaster@<hostname>``."""
    return report_from or f"postmaster@{domains[0] if domains else hostname}"


def parse_uris(value: str) -> list[Destination]:
    """The destinations of a comma-separated ``rua`` list (RFC 7489 §6.2 with its
    ``!size`` suffix, RFC 8460 §3).  Other schemes and malformed entries are
    left out, never an error."""
    out = []
    for item in value.split(","):
        uri = item.strip()
        limit: int | None = None
        if "!" in uri:
            uri, _, size = uri.rpartition("!")
            m = _SIZE.match(size)
            if m is None:
                continue
            limit = int(m.group(1)) * _UNITS[m.group(2).lower()]
        scheme, sep, rest = uri.partition(":")
        scheme = scheme.lower()
        if not sep or not rest:
            continue
        if scheme == "mailto":
            address = rest.split("?", 1)[0]
            local, at, domain = address.rpartition("@")
            if at and local and domain and not any(c in address for c in " <>\r\n"):
                out.append(Destination("mailto", address, limit))
        elif scheme == "https" and rest.startswith("//") and not any(c in uri for c in " \r\n"):
            out.append(Destination("https", uri, limit))
    return out


def tlsrpt_uris(records: Sequence[str]) -> list[Destination]:
    """The ``rua`` of the one ``v=TLSRPTv1`` record among ``records`` (RFC 8460
    §3: none or several valid records mean no reporting): [] otherwise."""
    found = [r for r in records if re.match(r"^\s*v\s*=\s*TLSRPTv1\s*(;|$)", r)]
    if len(found) != 1:
        return []
    for part in found[0].split(";")[1:]:
        name, eq, value = part.partition("=")
        if eq and name.strip().lower() == "rua":
            return parse_uris(value)
    return []


def _gzip(text: str) -> bytes:
    # mtime=0: the same report compresses to the same bytes (stable tests, dedupe).
    return gzip.compress(text.encode("utf-8"), mtime=0)


def _stamp(day: dt.date) -> tuple[int, int]:
    begin = calendar.timegm(day.timetuple())
    return begin, begin + 86399


def build_dmarc(lines: Sequence[Mapping[str, Any]], day: dt.date, *, org_name: str,
                contact: str) -> list[tuple[Report, list[Destination]]]:
    """The DMARC reports of ``day`` (RFC 7489 §7.2.1.1) with the ``rua`` each
    domain published (the last recorded one), before §7.1 verification."""
    out = []
    begin, end = _stamp(day)
    rua: dict[str, list[str]] = {}  # one pass: the last recorded rua= of each domain
    for line in lines:
        published = line["policy_published"]
        rua[str(published["domain"])] = list(published.get("rua", ()))
    for domain, xml in dmarc_reports(lines, day=day, org_name=org_name, email=contact).items():
        dests = parse_uris(",".join(rua.get(domain, ())))
        report = Report("dmarc", day, domain, f"{domain}.{day.isoformat()}@{org_name}",
                        _gzip(xml), f"{org_name}!{domain}!{begin}!{end}.xml.gz", org_name)
        out.append((report, [d for d in dests if d.scheme == "mailto"]))
    return out


def build_tlsrpt(lines: Sequence[Mapping[str, Any]], day: dt.date, *, org_name: str,
                 contact: str) -> list[Report]:
    """The TLS-RPT reports of ``day`` (RFC 8460 §4.4), gzip'd JSON; the
    submitter is the domain of ``contact`` (§5.3: they must match)."""
    out = []
    begin, end = _stamp(day)
    submitter = contact.rpartition("@")[2]
    for domain, doc in tlsrpt_reports(lines, day=day, org_name=org_name,
                                      contact=contact).items():
        out.append(Report("tlsrpt", day, domain, str(doc["report-id"]),
                          _gzip(json.dumps(doc, separators=(",", ":"))),
                          f"{submitter}!{domain}!{begin}!{end}.json.gz", submitter))
    return out


def _one_line(text: str) -> str:
    # Values here come from DNS (rua=, domains): a field value stays one line
    # of printable text, so no peer can start a field of its own.
    return "".join(c for c in " ".join(text.split()) if c.isprintable())


def report_message(report: Report, *, sender: str, recipient: str, now: float) -> bytes:
    """The report as an RFC 5322 message with CRLF line ends (see the module doc
    for the headers of each kind), built as bytes here like every message the
    server writes (no ``email.generator``: tests/unit/test_header_building.py)."""
    domain, submitter = _one_line(report.policy_domain), _one_line(report.submitter)
    boundary = "=_report_" + os.urandom(12).hex()
    if report.kind == "tlsrpt":
        what, ctype = "TLS (RFC 8460)", "application/tlsrpt+gzip"
        top = f'multipart/report; report-type="tlsrpt"; boundary="{boundary}"'
        extra = [f"TLS-Report-Domain: {domain}", f"TLS-Report-Submitter: {submitter}",
                 "TLS-Required: No"]
    else:
        what, ctype = "DMARC aggregate (RFC 7489)", "application/gzip"
        top = f'multipart/mixed; boundary="{boundary}"'
        extra = []
    encoded = base64.b64encode(report.payload).decode("ascii")
    lines = [
        f"From: <{_one_line(sender)}>",
        f"To: <{_one_line(recipient)}>",
        f"Date: {email.utils.formatdate(now)}",
        f"Message-ID: {email.utils.make_msgid('report', submitter)}",
        f"Subject: Report Domain: {domain} Submitter: {submitter}",
        f" Report-ID: <{_one_line(report.report_id)}>",
        *extra,
        "MIME-Version: 1.0",
        f"Content-Type: {top}",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "",
        f"This is a {what} report for {domain} from {submitter}",
        f"covering {report.day.isoformat()} (UTC).",
        "",
        f"--{boundary}",
        f"Content-Type: {ctype}",
        "Content-Transfer-Encoding: base64",
        f'Content-Disposition: attachment; filename="{_one_line(report.filename)}"',
        "",
        *(encoded[i:i + 76] for i in range(0, len(encoded), 76)),
        "",
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode("ascii", "replace")


class ReportSender:
    """Sends each finished day's reports once (see the module doc).

    ``enqueue``: the queue's ``enqueue`` (durable when it returns).
    ``sender``: the From and reverse-path of report mail; ``org_name``: us in
    the report (our host name).  ``dmarc_dir``/``tlsrpt_dir``: the logs to
    report on (None: that kind is not sent).  ``https_ca``: PEM trust anchors
    for HTTPS report servers (None: the system's store).  ``clock``: POSIX
    seconds.
    """

    def __init__(self, resolver: Resolver, enqueue: Enqueue, *, sender: str, org_name: str,
                 dmarc_dir: Path | None, tlsrpt_dir: Path | None,
                 https_ca: str | None = None, interval: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._resolver = resolver
        self._enqueue = enqueue
        self.sender = sender
        self.org_name = org_name
        self._dmarc = DmarcLog(dmarc_dir) if dmarc_dir is not None else None
        self._tlsrpt = TlsReportLog(tlsrpt_dir) if tlsrpt_dir is not None else None
        self._https_ca = https_ca
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run ``send_due`` now and every ``interval`` seconds until ``stop``."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="report-sender")

    async def stop(self) -> None:
        """Stop the loop (a pass in flight is cancelled; what it handed over stays)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due()
            except Exception as exc:  # a bad day's log must not stop later days
                log.warning("report_pass_failed", error=str(exc))
            await asyncio.sleep(self._interval)

    async def send_due(self) -> int:
        """Send what is due for the last ``DAYS_BACK`` finished UTC days and not
        sent yet; returns how many reports were handed over (queued or posted)."""
        today = dt.datetime.fromtimestamp(self._clock(), dt.UTC).date()
        sent = 0
        for back in range(DAYS_BACK, 0, -1):
            day = today - dt.timedelta(days=back)
            if self._dmarc is not None:
                lines = await asyncio.to_thread(self._dmarc.read, day)
                for report, dests in build_dmarc(lines, day, org_name=self.org_name,
                                                 contact=self.sender):
                    verified = [d for d in dests if await self._dmarc_allowed(report, d)]
                    sent += await self._send(self._dmarc.directory, report, verified)
            if self._tlsrpt is not None:
                lines = await asyncio.to_thread(self._tlsrpt.read, day)
                for report in build_tlsrpt(lines, day, org_name=self.org_name,
                                           contact=self.sender):
                    try:
                        records = await self._resolver.txt(f"_smtp._tls.{report.policy_domain}")
                    except DnsError as exc:
                        log.info("tlsrpt_lookup_failed", domain=report.policy_domain,
                                 error=str(exc))
                        continue  # tried again at the next pass
                    sent += await self._send(self._tlsrpt.directory, report,
                                             tlsrpt_uris(records))
        return sent

    async def _dmarc_allowed(self, report: Report, dest: Destination) -> bool:
        """RFC 7489 §7.1: may ``dest`` receive ``report.policy_domain``'s reports?"""
        target = dest.target.rpartition("@")[2].lower().rstrip(".")
        domain = report.policy_domain.lower()
        if organizational_domain(target) == organizational_domain(domain):
            return True
        try:
            records = await self._resolver.txt(f"{domain}._report._dmarc.{target}")
        except DnsError:
            return False
        return any(re.match(r"^\s*v\s*=\s*DMARC1\s*(;|$)", r) for r in records)

    async def _send(self, directory: Path, report: Report, dests: list[Destination]) -> int:
        done = await asyncio.to_thread(_read_sent, directory, report.day)
        count = 0
        for dest in dests:
            key = f"{report.kind} {report.policy_domain} {dest.target}"
            if key in done:
                continue
            try:
                ok = await self._deliver(report, dest)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                log.warning("report_send_failed", kind=report.kind, domain=report.policy_domain,
                            to=dest.target, error=str(exc))
                continue
            if not ok:
                continue
            await asyncio.to_thread(_mark_sent, directory, report.day, key)
            log.info("report_sent", kind=report.kind, domain=report.policy_domain,
                     to=dest.target, day=report.day.isoformat(), size=len(report.payload))
            count += 1
        return count

    async def _deliver(self, report: Report, dest: Destination) -> bool:
        """Queue the mail or POST the report; False when it is too large for
        ``dest``.  Raises aiohttp.ClientError, OSError, TimeoutError, ValueError."""
        if dest.scheme == "mailto":
            message = report_message(report, sender=self.sender, recipient=dest.target,
                                     now=self._clock())
            if dest.limit is not None and len(message) > dest.limit:
                log.info("report_too_large", kind=report.kind, domain=report.policy_domain,
                         to=dest.target, size=len(message), limit=dest.limit)
                return False
            await self._enqueue(self.sender, [dest.target], message)
            return True
        if dest.limit is not None and len(report.payload) > dest.limit:
            return False
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self._https_ca)
        connector = aiohttp.TCPConnector(resolver=OurResolver(self._resolver), ssl=ctx,
                                         use_dns_cache=False)
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http, \
                http.post(dest.target, data=report.payload, allow_redirects=False,
                          headers={"Content-Type": "application/tlsrpt+gzip"}) as resp:
            if not 200 <= resp.status < 300:
                raise aiohttp.ClientError(f"HTTP {resp.status}")
        return True


def _sent_path(directory: Path, day: dt.date) -> Path:
    return directory / f"{day.isoformat()}.sent"


def _read_sent(directory: Path, day: dt.date) -> set[str]:
    try:
        text = _sent_path(directory, day).read_text("utf-8")
    except FileNotFoundError:
        return set()
    return {line for line in text.splitlines() if line}


def _mark_sent(directory: Path, day: dt.date, key: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(_sent_path(directory, day), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (key + "\n").encode())
        os.fsync(fd)  # so a restart does not send the same report again
    finally:
        os.close(fd)
