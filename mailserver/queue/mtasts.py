"""MTA-STS (RFC 8461): the TXT record, the policy file and MX matching, sans-IO.

Fed strings, returns values; fetching and caching live in ``stspolicy.py``.

TXT record (§3.1), at ``_mta-sts.<domain>``::

    sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
    sts-version     = %s"v=STSv1"
    sts-id          = %s"id=" 1*32(ALPHA / DIGIT)

Policy (§3.2), served at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``::

    sts-policy-record = sts-policy-field *WSP *(sts-policy-term-delim *WSP
                        sts-policy-field *WSP) [sts-policy-term-delim *WSP]
    sts-policy-term-delim = CRLF / LF
    sts-policy-field  = key ":" *WSP value
    version: STSv1   mode: testing / enforce / none
    max_age: 1*10DIGIT (at most 31557600)   mx: [ "*." ] domain, repeatable

Unknown keys are ignored (§3.2); a key given twice counts once, the first
(``mx`` is the only repeatable one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: RFC 8461 §3.2: the longest max_age a policy may give, seconds (about a year).
MAX_AGE_LIMIT = 31557600
MODES = ("enforce", "testing", "none")

_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_DIGITS = re.compile(r"[0-9]{1,10}")


class PolicyError(ValueError):
    """A policy file that does not follow RFC 8461 §3.2 (TLS-RPT ``sts-policy-invalid``)."""


def parse_txt(records: list[str]) -> str | None:
    """The policy id of ``_mta-sts`` TXT records (RFC 8461 §3.1), or None.

    Records not starting with ``v=STSv1`` are ignored; more than one that
    does, or one without a valid ``id``, mean no policy (§3.1)."""
    sts = [r for r in records if r.startswith("v=STSv1")]
    if len(sts) != 1:
        return None
    fields = [f.strip() for f in sts[0].split(";")]
    if fields[0] != "v=STSv1":
        return None
    for f in fields[1:]:
        key, sep, value = f.partition("=")
        if sep and key == "id":
            return value if _ID.fullmatch(value) else None
    return None


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed policy (RFC 8461 §3.2).  ``mx``: lower-case patterns, a pattern
    may start with ``*.``; ``max_age`` seconds; ``text`` the file as served
    (TLS-RPT's ``policy-string``, RFC 8460 §4.4)."""

    mode: str
    max_age: int
    mx: tuple[str, ...]
    text: str = ""

    def matches(self, host: str) -> bool:
        """Whether MX ``host`` is one the policy names (RFC 8461 §4.1): an exact
        name, or ``*.<rest>`` standing for exactly one left-most label."""
        host = host.lower().rstrip(".")
        for pattern in self.mx:
            if pattern.startswith("*."):
                label, dot, rest = host.partition(".")
                if dot and label and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False

    def lines(self) -> list[str]:
        """The policy's lines (RFC 8460 §4.4 ``policy-string``)."""
        return [ln.strip() for ln in self.text.splitlines() if ln.strip()]


def _valid_pattern(value: str) -> bool:
    name = value[2:] if value.startswith("*.") else value
    labels = name.split(".")
    return len(name) <= 253 and len(labels) >= 1 and all(_LABEL.fullmatch(x) for x in labels)


def parse_policy(text: str) -> Policy:
    """Parse a policy file (RFC 8461 §3.2).  Raises ``PolicyError``.

    ``version`` must be ``STSv1``; ``mode`` one of ``MODES``; ``max_age`` at
    most ``MAX_AGE_LIMIT``; at least one ``mx`` unless the mode is ``none``.
    """
    fields: dict[str, str] = {}
    mx: list[str] = []
    for raw in text.split("\n"):
        line = raw.removesuffix("\r").strip(" \t")
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or key != key.strip(" \t"):
            raise PolicyError(f"not a key: value line: {line[:60]!r}")
        value = value.strip(" \t")
        if key == "mx":
            if not _valid_pattern(value):
                raise PolicyError(f"bad mx pattern {value[:60]!r}")
            mx.append(value.lower())
        else:
            fields.setdefault(key, value)
    if fields.get("version") != "STSv1":
        raise PolicyError("version is not STSv1")
    mode = fields.get("mode")
    if mode not in MODES:
        raise PolicyError(f"mode {mode!r} is not one of {MODES}")
    age = fields.get("max_age", "")
    if not _DIGITS.fullmatch(age) or int(age) > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age {age[:20]!r} is not 0..{MAX_AGE_LIMIT}")
    if not mx and mode != "none":
        raise PolicyError("no mx")
    return Policy(mode, int(age), tuple(mx), text)
