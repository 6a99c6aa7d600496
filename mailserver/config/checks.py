"""Sender authentication and loop settings: the ``[checks]`` part of the configuration.

They apply to ``smtp`` (MX) listeners; submission skips the verdicts.  Frozen;
``config.loading`` loads them (``parse_checks``), ``app.build_stages`` reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

TEMPERROR_MODES = ("never", "policy", "always")
DMARC_ACTIONS = ("none", "quarantine", "reject")


@dataclass(frozen=True, slots=True)
class ChecksSettings:
    """``verify``: SPF, DKIM, DMARC and ARC verdicts with an Authentication-Results
    field (RFC 8601) on smtp listeners (off by default: a development set-up
    has no DNS; the production example turns it on).

    ``dkim_max_signatures``: signatures verified per message, top first.
    ``dmarc_enforce``: act on published policies (reject: ``550 5.7.1``,
    quarantine: the recipient's Junk mailbox); false records verdicts only.
    ``dmarc_override``: From domain (or its organizational domain) -> the action
    to take instead of its policy ("none", "quarantine", "reject").
    ``temperror``: when a DNS failure gives ``451 4.7.0``: "never"; "policy"
    (only when DMARC failed under a quarantine/reject policy and a temporary
    error may have hidden an aligned pass); "always" (any temperror).
    ``arc_trusted_sealers``: domains whose valid ARC chain (RFC 8617) overrides
    a DMARC failure (mailing lists, forwarders).
    ``timeout``: seconds all the verdicts of one message may take.
    ``max_received``: more ``Received:`` fields than this is a loop (RFC 5321
    §6.3): ``554 5.4.6``.
    ``postmaster``: the account that ``postmaster`` and ``postmaster@`` each
    local domain reach (RFC 5321 §4.5.1) when no account or alias of that name
    exists; "" means the first account (by address) of the first domain.
    ``dnsbl_reject`` / ``dnsbl_mark``: DNS blocklist zones (RFC 5782) whose
    listing refuses the client (``550 5.7.1`` at RCPT) or marks its message
    (``X-DNSBL``); empty: no lookups (``checks/dnsbl.py``).
    ``dmarc_report_send``: mail each day's aggregate reports (RFC 7489 §7.2)
    to the domains' ``rua=`` addresses after the UTC day ends
    (``queue/reporting.py``); off by default.
    """

    verify: bool = False
    dkim_max_signatures: int = 5
    dmarc_enforce: bool = True
    dmarc_override: Mapping[str, str] = field(default_factory=dict)
    temperror: str = "policy"
    arc_trusted_sealers: tuple[str, ...] = ()
    timeout: float = 30.0
    max_received: int = 100
    postmaster: str = ""
    dnsbl_reject: tuple[str, ...] = ()
    dnsbl_mark: tuple[str, ...] = ()
    dmarc_report_send: bool = False


CHECKS_KEYS = ("verify", "dkim_max_signatures", "dmarc_enforce", "dmarc_override", "temperror",
               "arc_trusted_sealers", "timeout", "max_received", "postmaster", "dnsbl_reject",
               "dnsbl_mark", "dmarc_report_send")


def parse_checks(table: Any, v: Any, domain: Callable[[Any, str], str]) -> ChecksSettings:
    """The ``[checks]`` table; ``v`` is the loader's validator (``fail``, ``only``,
    ``boolean``, ``integer``, ``number``, ``string``), ``domain`` its domain check."""
    v.only(table, "checks.", CHECKS_KEYS)
    kwargs: dict[str, Any] = {}
    for key in ("verify", "dmarc_enforce", "dmarc_report_send"):
        if key in table:
            kwargs[key] = v.boolean(table[key], f"checks.{key}")
    for key, low in (("dkim_max_signatures", 1), ("max_received", 1)):
        if key in table:
            n = v.integer(table[key], f"checks.{key}")
            if n < low:
                raise v.fail(f"checks.{key}", f"must be at least {low}")
            kwargs[key] = n
    if "timeout" in table:
        t = v.number(table["timeout"], "checks.timeout")
        if t <= 0:
            raise v.fail("checks.timeout", "must be more than 0")
        kwargs["timeout"] = t
    if "temperror" in table:
        mode = v.string(table["temperror"], "checks.temperror").lower()
        if mode not in TEMPERROR_MODES:
            raise v.fail("checks.temperror", "must be one of "
                         + ", ".join(repr(m) for m in TEMPERROR_MODES))
        kwargs["temperror"] = mode
    for key in ("arc_trusted_sealers", "dnsbl_reject", "dnsbl_mark"):
        if key in table:
            value = table[key]
            if not isinstance(value, list):
                raise v.fail(f"checks.{key}", "must be a list of domain names")
            kwargs[key] = tuple(domain(d, f"checks.{key}[{i}]") for i, d in enumerate(value))
    if "dmarc_override" in table:
        value = table["dmarc_override"]
        v.only(value, "checks.dmarc_override.", list(value) if isinstance(value, Mapping) else [])
        overrides: dict[str, str] = {}
        for name, action in value.items():
            key = f"checks.dmarc_override.{name}"
            action = v.string(action, key).lower()
            if action not in DMARC_ACTIONS:
                raise v.fail(key, "must be one of " + ", ".join(repr(a) for a in DMARC_ACTIONS))
            overrides[domain(name, key)] = action
        kwargs["dmarc_override"] = overrides
    if "postmaster" in table:
        value = table["postmaster"]
        if value == "":
            return ChecksSettings(**kwargs)  # the documented default
        address = v.string(value, "checks.postmaster").strip().lower()
        if "@" not in address:
            raise v.fail("checks.postmaster", "must be an account address (user@domain)")
        kwargs["postmaster"] = address
    return ChecksSettings(**kwargs)
