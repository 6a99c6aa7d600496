"""Rate limits as a stage: messages and recipients per client IP and per account.

Counted in ``Counters.rate`` (the process's tables, or the supervisor's for
every worker).  A message is counted at MAIL (an attempt: the client is told
before it sends the body), a recipient at RCPT, one round trip each with
more than one worker.  Clients in ``limits.trusted_networks`` skip them.
Replies: ``451 4.7.1`` for messages (per IP and per account), ``452 4.5.3``
for recipients (RFC 5321 §4.5.3.1.10 lets a server defer recipients with
452; RFC 3463 4.5.3 "too many recipients").
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

from mailserver.checks.stage import ACCEPT, CheckContext, RecipientFacts, Verdict, refuse
from mailserver.config import Limits
from mailserver.counters import Counters, host_of
from mailserver.protocol.smtp import replies


class TrustedNetworks:
    """``limits.trusted_networks``: membership of an IP, cached (bounded)."""

    def __init__(self, networks: tuple[str, ...]) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        self._cache: dict[str, bool] = {}

    def __contains__(self, ip: object) -> bool:
        if not self.networks or not isinstance(ip, str):
            return False
        hit = self._cache.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
                hit = any(addr in net for net in self.networks)
            except ValueError:
                hit = False
            if len(self._cache) >= 4096:  # bounded under an address spray
                self._cache.clear()
            self._cache[ip] = hit
        return hit


class SenderRate:
    """Messages per minute/day per IP and per day per account; recipients per
    minute/day per IP (``[limits]``; 0 turns one off)."""

    name = "sender_rate"

    def __init__(self, counters: Counters, limits: Limits) -> None:
        self.counters = counters
        self.trusted = TrustedNetworks(limits.trusted_networks)
        self.message_checks = tuple(
            (window, limit) for window, limit in (
                ("minute", limits.messages_per_minute_per_ip),
                ("day", limits.messages_per_day_per_ip)) if limit)
        self.account_limit = limits.account_messages_per_day
        self.rcpt_checks = tuple(
            (window, limit) for window, limit in (
                ("minute", limits.recipients_per_minute_per_ip),
                ("day", limits.recipients_per_day_per_ip)) if limit)

    async def check_mail(self, ctx: CheckContext) -> Verdict:
        """Count one message of the client IP (and its account): 451 4.7.1 past a limit."""
        ip = ctx.peer_ip
        if ip in self.trusted:
            return ACCEPT
        checks = tuple((w, limit, "msg:" + host_of(ip)) for w, limit in self.message_checks)
        user = ctx.auth_user
        if user and self.account_limit:
            checks += (("day", self.account_limit, "acct:" + user.lower()),)
        if checks and not await self.counters.rate(checks):
            return refuse(replies.MESSAGE_RATE, "message rate limit")
        return ACCEPT

    async def check_rcpt(self, ctx: CheckContext, rcpt: RecipientFacts) -> Verdict:
        """Count one recipient of the client IP: 452 4.5.3 past a limit."""
        ip = ctx.peer_ip
        if not self.rcpt_checks or ip in self.trusted:
            return ACCEPT
        checks = tuple((w, limit, "rcpt:" + host_of(ip)) for w, limit in self.rcpt_checks)
        if not await self.counters.rate(checks):
            return refuse(replies.RECIPIENT_RATE, "recipient rate limit")
        return ACCEPT


class SentTo(Protocol):
    """The store's memory of whom an account has sent to."""

    async def has_sent_to(self, account: str, recipient: str) -> bool:
        """Whether ``account`` sent mail to ``recipient`` before."""
        ...


class FirstTimeRecipients:
    """Remote recipients an authenticated account never sent to before, per
    day (``limits.first_time_recipients_per_day``; 0: off): ``451 4.7.1`` at
    RCPT past it.  A stolen password is used to mail strangers; the account's
    own correspondents stay unlimited.  The marks are written after each
    accepted message (``SmtpHooks``, ``Store.remember_sent``)."""

    name = "first_time_recipients"

    def __init__(self, store: SentTo, counters: Counters, limits: Limits) -> None:
        self.store = store
        self.counters = counters
        self.limit = limits.first_time_recipients_per_day
        self.trusted = TrustedNetworks(limits.trusted_networks)

    async def check_rcpt(self, ctx: CheckContext, rcpt: RecipientFacts) -> Verdict:
        """Count a recipient new to the account; refuse past the day's limit."""
        user = ctx.auth_user
        if not self.limit or not user or rcpt.local_domain or not rcpt.domain \
                or ctx.peer_ip in self.trusted:
            return ACCEPT
        if await self.store.has_sent_to(user, rcpt.address):
            return ACCEPT
        if not await self.counters.rate((("day", self.limit, "newrcpt:" + user.lower()),)):
            return refuse(replies.FIRST_TIME_RATE, "first-time recipient limit")
        return ACCEPT
