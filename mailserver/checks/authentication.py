"""The sender-authentication stage: SPF, DKIM, ARC and DMARC verdicts at the end of DATA.

One stage for the four methods because DMARC needs the other three and all
of them read the same message and DNS names (looked up once per transaction,
``dns.bridge``).  On ``smtp`` listeners only (``app.build_stages``).

Work split: pyspf and dkimpy are synchronous, so the evaluation runs on a
thread of the stage's own pool (``executor``: a slow DNS server ties up
those threads, never the event loop nor the default pool that store work
uses); DNS questions go back to the loop's shared resolver.  The whole
evaluation is bounded by ``ChecksSettings.timeout``; past it every method
that had not finished is a temperror.  Except the common case: a message of
at most ``INLINE_MAX`` octets and ``INLINE_SIGNATURES`` DKIM signatures and
ARC seals whose every DNS answer the resolver holds fresh is judged on the
loop itself, a fraction of a millisecond of CPU that
the hand-off to a thread and back would cost again (issue #11 §4); the
first question not in the cache sends the whole evaluation to the thread,
as before.

What the verdicts do (``decide``):

* DMARC ``fail`` (RFC 7489 §6.6.4) with disposition ``reject`` →
  ``550 5.7.1``; ``quarantine`` → accepted into the recipient's Junk
  mailbox (``Verdict.quarantine``).  The disposition is the published policy
  after ``pct=``, replaced by ``dmarc_override`` for the domain, and lifted to
  ``none`` when a trusted sealer's ARC chain validates (RFC 8617 §7.2) or
  ``dmarc_enforce`` is off.
* ``temperror`` → ``451 4.7.0`` only as ``ChecksSettings.temperror`` asks;
  otherwise the message is delivered with the result recorded.
* Always: an ``Authentication-Results`` field (RFC 8601, built with authres)
  with our host name as authserv-id and one method per verdict, after every
  incoming field that claims that authserv-id is removed (§5).
"""

from __future__ import annotations

import functools
import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar

import authres
import authres.arc
import authres.dmarc
import structlog

from mailserver.checks.dmarc import DmarcResult, evaluate
from mailserver.checks.dmarc_log import DmarcLog
from mailserver.checks.spf_eval import SpfResult, check_helo, check_mail_from
from mailserver.checks.stage import ACCEPT, CheckContext, Verdict
from mailserver.config.checks import ChecksSettings
from mailserver.dkim.verify import ArcResult, DkimResult, KeyCache, verify_arc, verify_dkim
from mailserver.dns.bridge import NotCached, ThreadDns, cache_only, in_thread, run_with_dns
from mailserver.dns.suffix import organizational_domain, suffix_list
from mailserver.errors import SmtpReply
from mailserver.protocol.smtp.sender import from_addresses

if TYPE_CHECKING:
    from mailserver.dns.resolver import Resolver

log = structlog.get_logger("mailserver.checks")

#: RFC 7489 §6.6.4 / RFC 3463 5.7.1: the sender's policy asks us to refuse.
DMARC_REJECT = SmtpReply(550, "5.7.1", "Message rejected by the DMARC policy of the sender's domain")
#: A DNS failure left the verdict open (RFC 7208 §2.6.6, RFC 7489 §6.6.3): try later.
TEMPERROR = SmtpReply(451, "4.7.0", "Temporary DNS failure checking the sender, try again later")

#: Threads of the stage's pool: each waits on DNS, not on CPU.
POOL_THREADS = 16
#: Octets of a message that may be judged on the event loop when DNS needs no
#: I/O (see the module doc): its DKIM canonicalization and hashes stay well
#: under a millisecond.
INLINE_MAX = 16384
#: DKIM-Signature and ARC-Seal fields of a message judged on the loop: more
#: (an ARC chain may have 50 sets, each two RSA verifications) go to a thread,
#: where the loop keeps its turns.
INLINE_SIGNATURES = 3

_R = TypeVar("_R")

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_AR_FIELD = re.compile(rb"^Authentication-Results[ \t]*:(.*(?:\r?\n[ \t].*)*)(?:\r?\n|$)",
                       re.IGNORECASE | re.MULTILINE)
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_REASON_UNSAFE = re.compile(r'[^ !#-\[\]-~]')


@dataclass(frozen=True, slots=True)
class Judgement:
    """Every method's verdict for one message."""

    spf_helo: SpfResult
    spf: SpfResult
    dkim: tuple[DkimResult, ...]
    arc: ArcResult
    dmarc: tuple[DmarcResult, ...]
    content: bytes | None = None  # the message without forged A-R fields, if any
    null_sender: bool = False  # MAIL FROM:<> (SPF then judges the HELO identity)


@dataclass(frozen=True, slots=True)
class _Facts:
    ip: str
    helo: str
    mail_from: str
    hostname: str
    max_signatures: int
    keys: KeyCache | None = None  # parsed DKIM key records, the stage's (dkim/verify.py)


@dataclass(slots=True)
class _Partial:
    spf_helo: SpfResult = field(default_factory=lambda: SpfResult("temperror", "", "timed out"))
    spf: SpfResult = field(default_factory=lambda: SpfResult("temperror", "", "timed out"))
    dkim: tuple[DkimResult, ...] = (DkimResult("temperror", reason="timed out"),)
    arc: ArcResult = field(default_factory=lambda: ArcResult("temperror", reason="timed out"))
    dmarc: tuple[DmarcResult, ...] = ()
    done: bool = False


def from_domains(message: bytes) -> list[str]:
    """The distinct domains of the ``From:`` mailboxes (RFC 7489 §6.6.1), lower case."""
    out: list[str] = []
    for address in from_addresses(message):
        if "@" in address:
            domain = address.rpartition("@")[2].strip().lower().rstrip(".")
            try:
                domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
            except UnicodeError:
                continue
            if domain and domain not in out:
                out.append(domain)
    return out


def _authserv_id(value: bytes) -> str:
    """The authserv-id an Authentication-Results value names (RFC 8601 §2.2):
    its first token, comments and whitespace skipped."""
    text = _COMMENT.sub(" ", value.decode("utf-8", "replace"))
    token = re.match(r"\s*([^\s;]*)", text)
    return token.group(1).lower() if token else ""


def strip_forged(message: bytes, authserv_id: str) -> bytes | None:
    """``message`` without the Authentication-Results fields that claim
    ``authserv_id`` (RFC 8601 §5), or None when there is none."""
    m = _HEADER_END.search(message)
    # The header section with the last field's own line break.
    end = (m.start() + (2 if message.startswith(b"\r\n", m.start()) else 1)) if m \
        else len(message)
    head = message[:end]
    if b"authentication-results" not in head.lower():
        return None
    ours = authserv_id.lower()
    spans = [(f.start(), f.end()) for f in _AR_FIELD.finditer(head)
             if _authserv_id(f.group(1)) == ours]
    if not spans:
        return None
    parts, pos = [], 0
    for start, stop in spans:
        parts.append(message[pos:start])
        pos = stop
    parts.append(message[pos:])
    return b"".join(parts)


def _inline_size(message: bytes) -> bool:
    """Whether ``message`` is small enough to judge on the loop (see the module doc)."""
    if len(message) > INLINE_MAX:
        return False
    m = _HEADER_END.search(message)
    head = (message[: m.start()] if m else message).lower()
    return head.count(b"dkim-signature") + head.count(b"arc-seal") <= INLINE_SIGNATURES


def _guarded(method: str, work: Callable[[], _R], failed: _R) -> _R:
    """``work()``, or ``failed`` when a library raises what it should not (a bug
    there must not make mail undeliverable: the method is a temperror, logged)."""
    try:
        return work()
    except NotCached:
        raise  # judged on the loop, a question not in the cache: on a thread instead
    except Exception:
        log.exception("verdict_failed", method=method)
        return failed


def judge(dns: ThreadDns, message: bytes, facts: _Facts, into: _Partial,
          sample: Callable[[], float]) -> None:
    """Every method, in order, each result stored in ``into`` as it is known
    (so a timeout keeps the finished ones).  Runs on a worker thread."""
    broken = SpfResult("temperror", "", "internal error")
    into.spf_helo = _guarded("spf", lambda: check_helo(dns, facts.ip, facts.helo,
                                                       facts.hostname), broken)
    into.spf = _guarded("spf", lambda: check_mail_from(
        dns, facts.ip, facts.mail_from, facts.helo, facts.hostname,
        helo_result=into.spf_helo), broken)
    into.dkim = _guarded("dkim", lambda: tuple(verify_dkim(
        message, dns.txt, max_signatures=facts.max_signatures, keys=facts.keys)),
        (DkimResult("temperror", reason="internal error"),))
    into.arc = _guarded("arc", lambda: verify_arc(message, dns.txt, keys=facts.keys),
                        ArcResult("temperror", reason="internal error"))
    domains = from_domains(message)
    # RFC 7489 §4.1 / RFC 7208 §2.4: SPF's DMARC identity is MAIL FROM, or HELO for <>.
    spf_identity = (into.spf.result, into.spf.domain)
    dkim_ids = [(r.result, r.domain) for r in into.dkim]
    if not domains:
        into.dmarc = (DmarcResult("permerror", "", reason="no From domain"),)
    else:
        def dmarc_of(domain: str) -> DmarcResult:
            return evaluate(dns.txt, domain, spf=spf_identity, dkim=dkim_ids, sample=sample)

        into.dmarc = tuple(
            _guarded("dmarc", functools.partial(dmarc_of, d),
                     DmarcResult("temperror", d, reason="internal error"))
            for d in domains)
    into.done = True


def _reason(text: str) -> str | None:
    text = _REASON_UNSAFE.sub("?", text.replace('"', "'"))[:100]
    return text or None


def results_field(j: Judgement, authserv_id: str, *, dispositions: Sequence[str] = (),
                  arc_override: bool = False) -> str:
    """The Authentication-Results value (RFC 8601 §2.2), folded before each method."""
    results: list[object] = []
    if not j.null_sender:  # for <> the HELO identity below is SPF's (RFC 7208 §2.4)
        results.append(authres.SPFAuthenticationResult(
            result=j.spf.result, smtp_mailfrom=j.spf.domain or None,
            reason=_reason(j.spf.reason) if j.spf.result != "pass" else None))
    elif not j.spf_helo.domain:
        results.append(authres.SPFAuthenticationResult(result="none", reason="null sender, "
                                                       "HELO is not a domain"))
    if j.spf_helo.domain:
        results.append(authres.SPFAuthenticationResult(result=j.spf_helo.result,
                                                       smtp_helo=j.spf_helo.domain))
    if not j.dkim:
        results.append(authres.DKIMAuthenticationResult(result="none"))
    for d in j.dkim:
        results.append(authres.DKIMAuthenticationResult(
            result=d.result, reason=_reason(d.reason),
            header_d=d.domain or None, header_s=d.selector or None,
            header_a=d.algorithm or None, header_i=d.identity or None))
    if j.arc.result != "none":
        results.append(authres.arc.ARCAuthenticationResult(
            result=j.arc.result, reason=_reason(j.arc.reason),
            header_as_d=j.arc.sealer or None))
    for i, m in enumerate(j.dmarc):
        disposition = dispositions[i] if i < len(dispositions) else m.disposition
        comment = None
        if m.policy:
            comment = f"p={m.policy} dis={disposition}" + (" arc=trusted" if arc_override else "")
        results.append(authres.dmarc.DMARCAuthenticationResult(
            result=m.result, reason=_reason(m.reason) if m.result != "pass" else None,
            result_comment=comment, header_from=m.from_domain or None))
    value = authserv_id + "".join(";\r\n\t" + str(r) for r in results)
    return value


class SenderAuthentication:
    """The stage (see the module doc).  ``sample``: pct= sampling, [0, 1)."""

    name = "sender_authentication"

    def __init__(self, settings: ChecksSettings, *, hostname: str,
                 executor: Executor | None = None,
                 sample: Callable[[], float] = random.random,
                 dmarc_log: DmarcLog | None = None) -> None:
        self.settings = settings
        self.dmarc_log = dmarc_log
        self.hostname = hostname.lower()
        self._executor = executor
        self.sample = sample
        self.trusted = frozenset(s.lower() for s in settings.arc_trusted_sealers)
        self.keys = KeyCache()  # DKIM and ARC keys, parsed once per record text
        suffix_list()  # parsed now (~30 ms), not while the first message waits

    @property
    def executor(self) -> Executor:
        """The stage's thread pool for pyspf and dkimpy (their DNS goes back to the loop)."""
        if self._executor is None:  # made on first use: a listener that never gets mail has none
            self._executor = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="checks")
        return self._executor

    def close(self) -> None:
        """Let the pool's threads end (the listeners are closed; no check is running)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def check_data(self, ctx: CheckContext, content: bytes) -> Verdict:
        """SPF, DKIM, ARC and DMARC of the message (bytes, CRLF) on the MX listener:
        an Authentication-Results field (RFC 8601), and the DMARC action
        (``550 5.7.1``, quarantine) or ``451 4.7.0`` per ``checks.temperror``."""
        resolver = ctx.resolver
        if ctx.submission or resolver is None:
            return ACCEPT
        settings = self.settings
        facts = _Facts(ctx.peer_ip, (ctx.helo or "").strip(), ctx.mail_from or "",
                       self.hostname, settings.dkim_max_signatures, self.keys)
        sample = self.sample
        partial = self._judge_inline(resolver, content, facts) \
            if _inline_size(content) else None
        if partial is None:
            partial = _Partial()  # on a timeout, what finished is kept; the rest is temperror
            await run_with_dns(resolver, self.executor, settings.timeout,
                               lambda dns: judge(dns, content, facts, partial, sample))
        j = Judgement(partial.spf_helo, partial.spf, partial.dkim, partial.arc, partial.dmarc,
                      null_sender=facts.mail_from in ("", "<>"))
        if len(content) > 65536:
            stripped = await in_thread(None, lambda: strip_forged(content, self.hostname))
        else:
            stripped = strip_forged(content, self.hostname)
        verdict = self.decide(ctx, replace(j, content=stripped))
        deferred = verdict.reply is not None and verdict.reply.code < 500  # comes again
        if self.dmarc_log is not None and not deferred and any(
                m.record is not None and m.record.rua for m in j.dmarc):
            await in_thread(self.executor, functools.partial(
                self._record, j, facts, verdict))
        return verdict

    def _judge_inline(self, resolver: Resolver, content: bytes,
                      facts: _Facts) -> _Partial | None:
        """``judge`` on this (the loop's) thread over cached DNS answers only;
        None when it needed one that is not cached (then nothing of it is kept)."""
        dns = cache_only(resolver)
        into = _Partial()
        try:
            judge(dns, content, facts, into, self.sample)
        except NotCached:
            return None
        return None if dns.missed else into

    def _record(self, j: Judgement, facts: _Facts, verdict: Verdict) -> None:
        """Aggregate-report lines (``dmarc_log``); on a worker thread."""
        assert self.dmarc_log is not None
        arc_ok = j.arc.result == "pass" and j.arc.sealer in self.trusted
        refused = verdict.reply is not None and verdict.reply.code >= 500
        scope = "mfrom" if facts.mail_from not in ("", "<>") else "helo"
        try:
            for m in j.dmarc:
                disposition = "reject" if refused else self._disposition(m, arc_ok)
                self.dmarc_log.record(
                    when=time.time(), source_ip=facts.ip, envelope_from=j.spf.domain,
                    result=m, disposition=disposition, spf=(j.spf.domain, scope, j.spf.result),
                    dkim=[(d.domain, d.selector, d.result) for d in j.dkim])
        except OSError as exc:  # a statistic: never a reason to refuse mail
            log.warning("dmarc_record_failed", error=str(exc))

    # -- policy ------------------------------------------------------------------

    def _disposition(self, m: DmarcResult, arc_ok: bool) -> str:
        if m.result != "fail":
            return "none"
        override = self.settings.dmarc_override
        action = override.get(m.from_domain) or override.get(m.org_domain or
                                                              organizational_domain(m.from_domain))
        disposition = action or m.disposition
        if arc_ok or not self.settings.dmarc_enforce:
            return "none"
        return disposition

    def _temperror(self, j: Judgement, dispositions: Sequence[str]) -> bool:
        mode = self.settings.temperror
        if mode == "never":
            return False
        temp_spf = j.spf.result == "temperror"
        temp_dkim = any(d.result == "temperror" for d in j.dkim)
        if mode == "always":
            return temp_spf or temp_dkim or any(m.result == "temperror" for m in j.dmarc)
        # "policy": a failure we would act on (after pct=, overrides and ARC) that a
        # retry might turn into a pass.
        return (temp_spf or temp_dkim) and any(
            m.result == "fail" and dis != "none"
            for m, dis in zip(j.dmarc, dispositions, strict=True))

    def decide(self, ctx: CheckContext, j: Judgement) -> Verdict:
        """The verdict for judgement ``j`` (pure; see the module doc)."""
        arc_ok = j.arc.result == "pass" and j.arc.sealer in self.trusted
        arc_override = arc_ok and any(m.result == "fail" for m in j.dmarc)
        dispositions = [self._disposition(m, arc_ok) for m in j.dmarc]
        header = ("Authentication-Results",
                  results_field(j, self.hostname, dispositions=dispositions,
                                arc_override=arc_override))
        summary = (f"spf={j.spf.result} dkim={','.join(d.result for d in j.dkim) or 'none'} "
                   f"arc={j.arc.result} dmarc={','.join(m.result for m in j.dmarc)}")
        bound = getattr(ctx, "log", log)
        bound.info("sender_verdicts", spf=j.spf.result, spf_domain=j.spf.domain,
                   spf_helo=j.spf_helo.result,
                   dkim=[f"{d.result}:{d.domain}" for d in j.dkim], arc=j.arc.result,
                   dmarc=[f"{m.result}:{m.from_domain}:{dis}"
                          for m, dis in zip(j.dmarc, dispositions, strict=True)])
        if self._temperror(j, dispositions):
            return Verdict(reply=TEMPERROR, reason="temperror: " + summary)
        if "reject" in dispositions:
            return Verdict(reply=DMARC_REJECT, reason="dmarc reject: " + summary)
        return Verdict(quarantine="quarantine" in dispositions, headers=(header,),
                       reason=summary, content=j.content)
