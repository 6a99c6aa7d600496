"""Blocking password guessing: failed logins per client IP and per account
(issue #11 §3), shared by SMTP AUTH and IMAP LOGIN/AUTHENTICATE.

``auth/throttle.py`` delays each failure more than the last; this adds a
ceiling: past ``auth_failures_per_{minute,day}_per_{ip,account}`` failures
in the sliding window, a login from that IP, or for that account from any
IP, is refused *before* the password is checked (no argon2 run for a
blocked guesser), with SMTP ``421 4.7.0`` (and the connection closed) or
IMAP ``NO [UNAVAILABLE]`` (RFC 5530), until the window slides past.  The
counts live in the counter service's rate tables (``Counters.rate``), so
they hold across workers and listeners, and the day windows survive a
restart with the others.  Clients in ``trusted_networks`` are never blocked.

A successful login does not reset the counts (one valid password must not
open the way to guessing others), and the account limit applies to every
IP: it is what stops a guesser with many addresses, at the price that such
a guesser can keep the account locked for the window (say so to users; a
per-account minute limit recovers within a minute of the attack ending).
"""

from __future__ import annotations

import ipaddress

from mailserver.config import Limits
from mailserver.counters import Counters, host_of
from mailserver.metrics import instruments

#: Rate-table key prefixes of the failure counts.
IP_KEY = "authip:"
ACCOUNT_KEY = "authacct:"
#: A limit no count reaches: failures are always counted.
_UNLIMITED = 1 << 62


class LoginGuard:
    """Failure counts and blocks over ``counters`` for ``limits`` (see the
    module docstring)."""

    __slots__ = ("counters", "limits", "_trusted")

    def __init__(self, counters: Counters, limits: Limits) -> None:
        self.counters = counters
        self.limits = limits
        self._trusted = tuple(ipaddress.ip_network(n, strict=False)
                              for n in limits.trusted_networks)

    def _is_trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self._trusted)

    def _keys(self, ip: str, username: str) -> list[tuple[str, int, str]]:
        """``(window, limit, key)`` for each limit that is on."""
        lim = self.limits
        # One token of printable characters: the counter wire is a text line.
        account = "".join(c if c.isprintable() and not c.isspace() else "_"
                          for c in username.strip().lower()[:320])
        host = host_of(ip)
        out = [("minute", lim.auth_failures_per_minute_per_ip, IP_KEY + host),
               ("day", lim.auth_failures_per_day_per_ip, IP_KEY + host)]
        if account:
            out += [("minute", lim.auth_failures_per_minute_per_account, ACCOUNT_KEY + account),
                    ("day", lim.auth_failures_per_day_per_account, ACCOUNT_KEY + account)]
        return [c for c in out if c[1] > 0]

    async def blocked(self, ip: str, username: str) -> bool:
        """Whether a login from ``ip`` for ``username`` must be refused now:
        a window already holds its limit of failures."""
        if self._is_trusted(ip):
            return False
        checks = tuple((w, limit - 1, key) for w, limit, key in self._keys(ip, username))
        # n = 0 counts nothing: "would 0 more pass limit - 1", i.e. are there
        # already ``limit`` failures.
        blocked = bool(checks) and not await self.counters.rate(checks, 0)
        if blocked:
            instruments().limit_hits.labels("auth_failures").inc()
        return blocked

    async def failed(self, ip: str, username: str) -> None:
        """Count one failed login of ``username`` from ``ip``."""
        if self._is_trusted(ip):
            return
        checks = tuple((w, _UNLIMITED, key) for w, _, key in self._keys(ip, username))
        if checks:
            await self.counters.rate(checks, 1)
