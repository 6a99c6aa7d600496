"""DMARC (RFC 7489): policy discovery, identifier alignment and the disposition.

Pure code but for the ``txt`` lookup it is given (blocking, on a worker thread;
``dns.bridge``).  The organizational domain comes from the Public Suffix List
(``dns/suffix.py``; §3.2).

    record    = "v=DMARC1" *(";" tag "=" value)       ; §6.3, §6.4
    discovery = _dmarc.<From domain>, else _dmarc.<organizational domain>  ; §6.6.3
    pass      = an SPF or DKIM pass whose domain aligns with the From domain  ; §3.1, §4.2
    policy    = sp= when the record came from the organizational domain for a
                subdomain, else p=; pct= applies it to that share of failures,
                the rest get the next milder policy  ; §6.6.4
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailserver.dns.bridge import TempDnsError
from mailserver.dns.suffix import organizational_domain

POLICIES = ("none", "quarantine", "reject")
#: §6.6.4: a failure outside pct= gets the next milder policy.
_MILDER = {"reject": "quarantine", "quarantine": "none", "none": "none"}

_TAG = re.compile(r"^\s*([A-Za-z]+)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """A parsed policy record (§6.3); percent 0-100, alignment "r" or "s"."""

    policy: str
    subdomain_policy: str | None = None
    percent: int = 100
    adkim: str = "r"
    aspf: str = "r"
    rua: tuple[str, ...] = ()


def parse_record(text: str) -> DmarcRecord | None:
    """The record in ``text``, or None when it is not a DMARC record (§6.6.3: no
    ``v=DMARC1`` first) or its ``p=`` is missing or unknown without ``rua=``.

    Unknown tags are ignored (§6.3); a bad ``p=`` with ``rua=`` counts as
    ``p=none`` (§6.6.3 step 6); bad values of other tags take their default.
    """
    parts = [p for p in text.split(";")]
    if not parts or parts[0].strip() != "v=DMARC1":
        return None
    tags: dict[str, str] = {}
    for part in parts[1:]:
        m = _TAG.match(part)
        if m:
            tags.setdefault(m.group(1).lower(), m.group(2))
    rua = tuple(u.strip() for u in tags.get("rua", "").split(",") if u.strip())
    policy = tags.get("p", "").lower()
    if policy not in POLICIES:
        if not rua:
            return None
        policy = "none"
    sp = tags.get("sp", "").lower()
    try:
        percent = min(100, max(0, int(tags.get("pct", "100"))))
    except ValueError:
        percent = 100
    return DmarcRecord(
        policy=policy,
        subdomain_policy=sp if sp in POLICIES else None,
        percent=percent,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        rua=rua,
    )


@dataclass(frozen=True, slots=True)
class DmarcResult:
    """The verdict for one From domain: ``result`` (RFC 8601 §2.7 ``dmarc``:
    none, pass, fail, temperror, permerror); ``policy`` the published one that
    applies (p= or sp=, "" without a record); ``disposition`` what it asks for
    after pct= ("none", "quarantine", "reject"); ``org_domain``; ``reason``."""

    result: str
    from_domain: str
    policy: str = ""
    disposition: str = "none"
    org_domain: str = ""
    reason: str = ""
    record: DmarcRecord | None = None
    spf_aligned: bool = False  # an aligned SPF pass (§4.2), for aggregate reports
    dkim_aligned: bool = False  # an aligned DKIM pass
    record_domain: str = ""  # where the record was found (From or organizational domain)


def _aligned(identifier: str, from_domain: str, mode: str) -> bool:
    identifier = identifier.lower().rstrip(".")
    if not identifier:
        return False
    if mode == "s":
        return identifier == from_domain
    return organizational_domain(identifier) == organizational_domain(from_domain)


def discover(txt: Callable[[str], list[str]], from_domain: str) -> tuple[DmarcRecord | None, bool]:
    """§6.6.3: the record for ``from_domain`` and whether it came from the
    organizational domain.  Raises ``TempDnsError``."""
    org = organizational_domain(from_domain)
    for name, inherited in ((from_domain, False), (org, True)):
        if inherited and org == from_domain:
            break
        records = [r for r in (parse_record(t) for t in txt(f"_dmarc.{name}")) if r is not None]
        if len(records) == 1:
            return records[0], inherited
        if len(records) > 1:
            return None, inherited  # several records: DMARC does not apply (§6.6.3)
    return None, False


def evaluate(
    txt: Callable[[str], list[str]],
    from_domain: str,
    *,
    spf: tuple[str, str],
    dkim: Sequence[tuple[str, str]],
    sample: Callable[[], float] = random.random,
) -> DmarcResult:
    """DMARC for ``from_domain`` (lower case, A-labels).

    ``spf``: (result, domain) of the SPF identity DMARC uses (MAIL FROM, or
    HELO for the null reverse-path).  ``dkim``: (result, d=) per signature.
    ``sample``: a number in [0, 1) to apply pct= with (tests make it fixed).
    """
    from_domain = from_domain.lower().rstrip(".")
    org = organizational_domain(from_domain)
    try:
        record, inherited = discover(txt, from_domain)
    except TempDnsError as exc:
        return DmarcResult("temperror", from_domain, org_domain=org, reason=str(exc))
    if record is None:
        return DmarcResult("none", from_domain, org_domain=org)
    found_at = org if inherited else from_domain
    policy = record.policy
    if inherited and record.subdomain_policy is not None:
        policy = record.subdomain_policy
    spf_ok = spf[0] == "pass" and _aligned(spf[1], from_domain, record.aspf)
    dkim_ok = any(r == "pass" and _aligned(d, from_domain, record.adkim) for r, d in dkim)
    if spf_ok or dkim_ok:
        return DmarcResult("pass", from_domain, policy, "none", org, record=record,
                           spf_aligned=spf_ok, dkim_aligned=dkim_ok, record_domain=found_at)
    disposition = policy
    if record.percent < 100 and sample() * 100 >= record.percent:
        disposition = _MILDER[policy]
    return DmarcResult("fail", from_domain, policy, disposition, org,
                       reason="no aligned SPF or DKIM pass", record=record,
                       record_domain=found_at)
