"""The SMTP check pipeline: stages, their verdicts, and the runner (after maddy).

A *stage* is a small object with any of these methods, each taking a read-only
``CheckContext`` and returning a ``Verdict`` (plain ``def`` for rules that need
no I/O, ``async def`` for those that do, a DNS query say)::

    check_connect(ctx)              once per connection, see below
    check_helo(ctx)                 once per connection, see below
    check_mail(ctx)                 MAIL FROM: ctx.mail_from is the reverse-path
    check_rcpt(ctx, rcpt)           RCPT TO: ``rcpt`` is what the directory knows
    check_data(ctx, content)        end of DATA: the message as received

A verdict is accept (``ACCEPT``), a reply (refuse with code, enhanced code and
text), or accept-but-quarantine; each may add header fields to the message and
gives a reason for the log.  The first reply ends the phase; headers and
quarantine requests of the stages before it accumulate.

Connection and HELO stages run once, just before the first MAIL's stages
(Postfix's ``smtpd_delay_reject``): the reply answers that MAIL, the client is
never cut off before it can be told why, and a connection that only says QUIT
costs nothing.

Invariants that keep per-message cost tiny: a phase is a tuple of bound
methods built once per listener (a stage without a method for a phase is not
in that phase's tuple); synchronous checks are called, not awaited; no task
is created; ``ACCEPT`` is a shared instance, so the common path allocates
nothing.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mailserver.errors import SmtpReply
from mailserver.metrics import Tally, instruments

if TYPE_CHECKING:
    from mailserver.dns.resolver import Resolver

#: RFC 5322 §3.6.8: field-name = 1*ftext, printable US-ASCII except ":".
_FIELD_NAME = re.compile(r"[!-9;-~]+")
#: A field value: no CR or LF except folding (§3.2.2: CRLF, then WSP and more text).
_FIELD_VALUE = re.compile(r"[^\r\n]*(?:\r\n[ \t]+[^\r\n \t][^\r\n]*)*")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one stage decided.

    ``reply``: refuse with it (None: accept).  ``quarantine``: accept, but the
    message is to be kept away from the inbox.  ``headers``: ``(name, value)``
    fields to prepend to the message (DATA only; RFC 5322 §2.2: a value may be
    folded, CRLF followed by a space or tab, but never ends a line otherwise).
    ``reason``: for the log, never shown to the client.  ``content``: DATA
    only, the message bytes that later stages and delivery get instead of
    the received ones (a stage that removes forged fields, RFC 8601 §5);
    None: unchanged.
    """

    reply: SmtpReply | None = None
    quarantine: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    reason: str = ""
    content: bytes | None = None

    def __post_init__(self) -> None:
        # A stage must not be able to start a header field of its own (or end the
        # header section) through a value: the same class of bug as
        # CVE-2026-1299.  Raises ValueError, at the stage that made the verdict.
        for name, value in self.headers:
            if not _FIELD_NAME.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
                raise ValueError(f"not a header field a stage may add: {name!r}")


#: The verdict of a stage that has nothing to say (shared: no allocation).
ACCEPT = Verdict()


def refuse(reply: SmtpReply, reason: str) -> Verdict:
    """A verdict that refuses the command with ``reply``; ``reason`` goes to the log."""
    return Verdict(reply=reply, reason=reason)


def quarantine(reason: str, headers: tuple[tuple[str, str], ...] = ()) -> Verdict:
    """Accept, but keep the message out of the inbox."""
    return Verdict(quarantine=True, headers=headers, reason=reason)


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    """What the directory knows of one forward-path (looked up once per RCPT).

    ``address``: as the client gave it.  ``domain``: its domain ("" when the
    path has none).  ``local_domain``: the domain is one of ours.  ``account``:
    the account it resolves to (None: nobody, or not a local domain).
    ``full``: that account is at or over its quota.  An alias of several
    targets: every account in ``accounts``, its remote targets in
    ``forwards`` (then ``account`` is the first account, or None).
    """

    address: str
    domain: str
    local_domain: bool
    account: str | None
    full: bool = False
    accounts: tuple[str, ...] = ()
    forwards: tuple[str, ...] = ()


class CheckContext(Protocol):
    """The read-only view of the connection and transaction a stage gets."""

    @property
    def listener(self) -> str:
        """The listener's name from the configuration (for logs and per-listener rules)."""
        ...

    @property
    def submission(self) -> bool:
        """True on a submission listener (RFC 6409): AUTH required, relaying for the user."""
        ...

    @property
    def peer_ip(self) -> str:
        """The client's IP address as text (IPv4 dotted or IPv6), "" if unknown."""
        ...

    @property
    def tls(self) -> bool:
        """True once the connection is encrypted (implicit TLS, RFC 8314, or STARTTLS)."""
        ...

    @property
    def helo(self) -> str | None:
        """The name the client gave in HELO/EHLO, None before it did."""
        ...

    @property
    def auth_user(self) -> str | None:
        """The authenticated account (RFC 4954), None when the client has not authenticated."""
        ...

    @property
    def mail_from(self) -> str | None:
        """MAIL FROM's reverse-path, ``"<>"`` for the null path; None outside a transaction."""
        ...

    @property
    def mail_size(self) -> int | None:
        """MAIL's SIZE= estimate in octets (RFC 1870), None when not given."""
        ...

    @property
    def rcpt_count(self) -> int:
        """Recipients accepted so far in this transaction."""
        ...

    @property
    def resolver(self) -> Resolver | None:
        """The process's shared DNS resolver, None when the server runs without one."""
        ...


_Check = Callable[..., Verdict | Awaitable[Verdict]]


class _Step:
    """One stage's check in one phase, with its verdict counters
    (``mailserver_smtp_check_verdicts_total``) bound once: accepts are
    tallied (``metrics.Tally``, the common path), the rare refusals and
    quarantines counted at once."""

    __slots__ = ("name", "check", "is_async", "accepted", "rejected", "quarantined")

    def __init__(self, name: str, check: _Check, listener: str, phase: str) -> None:
        self.name = name
        self.check = check
        self.is_async = inspect.iscoroutinefunction(check)
        verdicts = instruments().check_verdicts
        self.accepted = Tally(verdicts.labels(listener, phase, name, "accept"))
        self.rejected = verdicts.labels(listener, phase, name, "reject")
        self.quarantined = verdicts.labels(listener, phase, name, "quarantine")


def _phase(stages: Sequence[object], method: str, listener: str) -> tuple[_Step, ...]:
    steps = []
    phase = method.removeprefix("check_")
    for stage in stages:
        check = getattr(stage, method, None)
        if check is not None:
            name = getattr(stage, "name", type(stage).__name__)
            steps.append(_Step(name, check, listener, phase))
    return tuple(steps)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A phase's result: the refusing verdict (or ``ACCEPT``), which stage gave it,
    and what the accepting stages asked for (quarantine, header fields, the
    message bytes to deliver instead of the received ones: ``content``)."""

    verdict: Verdict
    stage: str = ""
    quarantine: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    content: bytes | None = None


_ALL_ACCEPT = Outcome(ACCEPT)


class Pipeline:
    """The stages of one listener, by phase (built once, from the configuration in app.py).

    ``listener``: the listener's name, the label of its verdict counters."""

    __slots__ = ("stages", "connect", "helo", "mail", "rcpt", "data")

    def __init__(self, stages: Sequence[object], listener: str = "") -> None:
        self.stages = tuple(stages)
        self.connect = _phase(stages, "check_connect", listener)
        self.helo = _phase(stages, "check_helo", listener)
        self.mail = _phase(stages, "check_mail", listener)
        self.rcpt = _phase(stages, "check_rcpt", listener)
        self.data = _phase(stages, "check_data", listener)

    @property
    def names(self) -> list[str]:
        """The stage names in pipeline order (a stage's ``name``, else its class name)."""
        return [getattr(s, "name", type(s).__name__) for s in self.stages]

    async def run(self, phase: tuple[_Step, ...], ctx: CheckContext, *args: object) -> Outcome:
        """Run ``phase``'s checks in order; stop at the first reply."""
        quarantined = False
        headers: tuple[tuple[str, str], ...] = ()
        content: bytes | None = None
        for step in phase:
            result = step.check(ctx, *args)
            verdict: Verdict = await result if step.is_async else result  # type: ignore[misc, assignment]
            if verdict is ACCEPT:
                step.accepted.n += 1
                continue
            if verdict.reply is not None:
                step.rejected.inc()
                return Outcome(verdict, step.name, quarantined, headers, content)
            if verdict.quarantine:
                step.quarantined.inc()
            else:
                step.accepted.n += 1
            quarantined = quarantined or verdict.quarantine
            headers += verdict.headers
            if verdict.content is not None:  # DATA: later stages judge what is delivered
                content = verdict.content
                args = (*args[:-1], content)
        if not quarantined and not headers and content is None:
            return _ALL_ACCEPT
        return Outcome(ACCEPT, "", quarantined, headers, content)
