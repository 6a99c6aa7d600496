"""What the delivery client needs for MTA-STS (RFC 8461) and TLS-RPT (RFC 8460).

``OutboundTls`` bundles the policy source (``StsPolicies``, None when
``outbound.mta_sts`` is off) and the report log (``TlsReportLog``, None when
``outbound.tlsrpt`` is off); ``app.build_queue`` makes it from the
configuration, the client (``client.py``) consults it per domain and records
each session's TLS outcome through ``record``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from mailserver.queue.mtasts import Policy
from mailserver.queue.stspolicy import StsLookup, StsPolicies
from mailserver.queue.tlsrpt import TlsAttempt, TlsReportLog

_log = structlog.get_logger("mailserver.queue")


@dataclass(frozen=True, slots=True)
class OutboundTls:
    """MTA-STS policies and the TLS-RPT log; either may be None (off)."""

    sts: StsPolicies | None = None
    reports: TlsReportLog | None = None

    async def policy(self, domain: str) -> StsLookup:
        """The MTA-STS policy of ``domain`` (``StsPolicies.lookup``); a failed fetch
        is recorded for TLS-RPT (RFC 8460 §4.3.2.3).  Never raises."""
        if self.sts is None:
            return StsLookup(None)
        found = await self.sts.lookup(domain)
        if found.failure is not None:
            await self.record(TlsAttempt(domain, "sts", found.failure))
        return found

    async def record(self, attempt: TlsAttempt) -> None:
        """Append ``attempt`` to the TLS-RPT log (off the event loop).  Never raises:
        a lost statistic must not fail a delivery."""
        if self.reports is None:
            return
        try:
            await asyncio.to_thread(self.reports.record, attempt, time.time())
        except OSError as exc:
            _log.warning("tlsrpt_record_failed", error=str(exc))

    async def session(self, domain: str, policy: Policy | None, host: str, addr: str,
                      result: str) -> None:
        """Record one session's outcome with ``host`` [``addr``] for ``domain``."""
        if self.reports is None:
            return
        if policy is None:
            await self.record(TlsAttempt(domain, "no-policy-found", result, host, addr))
        else:
            await self.record(TlsAttempt(domain, "sts", result, host, addr,
                                         tuple(policy.lines()), policy.mx))


#: Neither MTA-STS nor TLS-RPT (the default).
NO_TLS_POLICY = OutboundTls()
