"""MTA-STS policy discovery (RFC 8461 §3, §5): TXT lookup, HTTPS fetch, a cache that
survives restarts.

``StsPolicies.lookup(domain)`` answers which policy applies now:

* the TXT record ``_mta-sts.<domain>`` is asked through our resolver (§3.1);
* when its id equals the cached policy's and that policy has not expired,
  the cached one is used without a fetch (§5.1: refresh when the id changes);
* otherwise ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` is fetched
  (§3.3): no redirects, status 200, ``text/plain``, at most ``MAX_POLICY``
  octets, the server's certificate verified for ``mta-sts.<domain>`` (PKIX);
  the name is resolved through our resolver too, so tests (and split-horizon
  set-ups) see the same DNS as delivery;
* no TXT record, or a fetch that fails, falls back to a cached policy that
  has not expired (§5.1, §3.3: a sender must not drop a cached policy
  because a fetch failed); with none the domain counts as having no policy.

Persistence (§5: policies must survive a restart): one JSON file per domain
in ``directory`` (``<data_dir>/mta-sts`` in the daemon), written to a
temporary name and renamed, so a crash leaves the old or the new policy.
The LMDB store has no table for them; like the DMARC log these are files
beside it.  Memory holds what was read or fetched since start.

``port`` and ``ca_file`` are test and operations knobs: the HTTPS port (443
per §3.3) and PEM trust anchors instead of the system's.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult

from mailserver.dns.resolver import DnsError, Resolver
from mailserver.queue.mtasts import Policy, PolicyError, parse_policy, parse_txt

_log = structlog.get_logger("mailserver.queue")

#: Largest policy file we read, octets (RFC 8461 §3.3 suggests 64 KiB).
MAX_POLICY = 64 * 1024
#: Seconds for the whole fetch (RFC 8461 §3.3 suggests at most a minute).
FETCH_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class StsLookup:
    """The policy that applies to a domain now (None: none), and when a fetch
    failed, the TLS-RPT result type of the failure (RFC 8460 §4.3.2.3:
    ``sts-policy-fetch-error``, ``sts-policy-invalid``, ``sts-webpki-invalid``)."""

    policy: Policy | None
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class _Cached:
    id: str
    fetched: float
    policy: Policy

    def fresh(self, now: float) -> bool:
        return now < self.fetched + self.policy.max_age


class OurResolver(AbstractResolver):
    """aiohttp's host resolution through our ``Resolver``."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            addrs = await self._resolver.addresses(host)
        except DnsError as exc:
            raise OSError(f"{host}: {exc}") from None
        if not addrs:
            raise OSError(f"{host}: no address")
        return [ResolveResult(hostname=host, host=a, port=port,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST) for a in addrs]

    async def close(self) -> None:
        """Nothing to release: the resolver is the process's."""


class StsPolicies:
    """The MTA-STS policies of recipient domains, fetched and cached (see the module)."""

    def __init__(self, resolver: Resolver, directory: Path, *, port: int = 443,
                 ca_file: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self._resolver = resolver
        self.directory = directory
        self._port = port
        self._ca_file = ca_file
        self._clock = clock
        self._memory: dict[str, _Cached | None] = {}

    async def lookup(self, domain: str) -> StsLookup:
        """The policy for ``domain`` (RFC 8461 §5.1).  Never raises."""
        domain = domain.lower().rstrip(".")
        if not domain or "/" in domain or "\0" in domain or domain.startswith("."):
            return StsLookup(None)  # not a host name; never a file outside the directory
        now = self._clock()
        cached = await self._cached(domain)
        usable = cached.policy if cached is not None and cached.fresh(now) else None
        try:
            policy_id = parse_txt(await self._resolver.txt(f"_mta-sts.{domain}"))
        except DnsError:
            policy_id = None
        if policy_id is None:
            return StsLookup(usable)
        if cached is not None and usable is not None and cached.id == policy_id:
            return StsLookup(usable)
        try:
            policy = await self._fetch(domain)
        except PolicyError as exc:
            _log.warning("mta_sts_policy_invalid", domain=domain, error=str(exc))
            return StsLookup(usable, "sts-policy-invalid")
        except ssl.SSLCertVerificationError as exc:
            _log.warning("mta_sts_webpki_invalid", domain=domain, error=str(exc))
            return StsLookup(usable, "sts-webpki-invalid")
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            if isinstance(exc.__cause__, ssl.SSLCertVerificationError) or isinstance(
                    getattr(exc, "certificate_error", None), ssl.SSLCertVerificationError):
                _log.warning("mta_sts_webpki_invalid", domain=domain, error=str(exc))
                return StsLookup(usable, "sts-webpki-invalid")
            _log.warning("mta_sts_fetch_failed", domain=domain, error=str(exc))
            return StsLookup(usable, "sts-policy-fetch-error")
        entry = _Cached(policy_id, now, policy)
        self._memory[domain] = entry
        try:
            await asyncio.to_thread(self._write, domain, entry)
        except OSError as exc:
            _log.warning("mta_sts_cache_write_failed", domain=domain, error=str(exc))
        return StsLookup(policy)

    async def _fetch(self, domain: str) -> Policy:
        """GET the policy (RFC 8461 §3.3).  Raises PolicyError, aiohttp.ClientError,
        OSError, TimeoutError."""
        host = f"mta-sts.{domain}"
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self._ca_file)
        port = "" if self._port == 443 else f":{self._port}"
        connector = aiohttp.TCPConnector(resolver=OurResolver(self._resolver), ssl=ctx,
                                         use_dns_cache=False)
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http, \
                http.get(f"https://{host}{port}/.well-known/mta-sts.txt",
                         allow_redirects=False) as resp:
            if resp.status != 200:
                raise aiohttp.ClientError(f"{host}: HTTP {resp.status}")  # §3.3: 200 only
            if resp.content_type != "text/plain":
                raise PolicyError(f"{host}: media type {resp.content_type}, not text/plain")
            body = b""
            while len(body) <= MAX_POLICY:  # read() may return any part of the body
                chunk = await resp.content.read(MAX_POLICY + 1 - len(body))
                if not chunk:
                    break
                body += chunk
        if len(body) > MAX_POLICY:
            raise PolicyError(f"{host}: policy larger than {MAX_POLICY} octets")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError(f"{host}: policy is not UTF-8") from None
        return parse_policy(text)

    # -- persistence --------------------------------------------------------------

    def _path(self, domain: str) -> Path:
        return self.directory / f"{domain}.json"

    async def _cached(self, domain: str) -> _Cached | None:
        if domain not in self._memory:
            self._memory[domain] = await asyncio.to_thread(self._read, domain)
        return self._memory[domain]

    def _read(self, domain: str) -> _Cached | None:
        try:
            data: Any = json.loads(self._path(domain).read_text("utf-8"))
            return _Cached(str(data["id"]), float(data["fetched"]), parse_policy(data["policy"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log.warning("mta_sts_cache_unreadable", domain=domain, error=str(exc))
            return None

    def _write(self, domain: str, entry: _Cached) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self._path(domain).with_suffix(".tmp")
        tmp.write_text(json.dumps({"id": entry.id, "fetched": entry.fetched,
                                   "policy": entry.policy.text}), "utf-8")
        os.replace(tmp, self._path(domain))
