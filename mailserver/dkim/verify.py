"""Verifying DKIM signatures (RFC 6376, Ed25519 per RFC 8463) and ARC chains (RFC 8617).

dkimpy does the cryptography; this module maps its answers to the results
of RFC 8601 §2.7.1 (DKIM) and RFC 8617 §4.4 (ARC chain validation) and asks
DNS through ``txt``, a blocking callable answered by our resolver (runs on a
worker thread, see ``dns.bridge``).

Per signature:

* ``pass``: it verifies and its key is acceptable;
* ``fail``: it does not verify (body hash or signature mismatch), it has
  expired (``x=``, §3.5), or its RSA key is under 1024 bits (RFC 8301 §3.2:
  such signatures MUST NOT be considered valid);
* ``policy``: it verifies but its body length tag (``l=``, §3.5) covers less
  than the whole body: content was appended after signing (§8.2);
* ``permerror``: unusable signature or key record (syntax, missing tags, no
  key in DNS, a key record that does not parse);
* ``temperror``: DNS failed transiently (§6.1.2).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import dkim

from mailserver.dns.bridge import TempDnsError

#: RFC 8301 §3.2: verifiers MUST NOT accept RSA keys shorter than this.
MIN_RSA_BITS = 1024

#: dkimpy logs every failure at ERROR through ``logging``; our verdicts go to
#: our own log, so its chatter is silenced.
_QUIET = logging.getLogger("mailserver.dkim.verify.dkimpy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

_TAG = re.compile(rb"\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*([^;]*)")

TxtLookup = Callable[[str], list[str]]


@dataclass(frozen=True, slots=True)
class DkimResult:
    """One signature's verdict (RFC 8601 §2.7.1 ``result``) with what it claimed:
    ``domain`` (d=), ``selector`` (s=), ``identity`` (i=), ``algorithm`` (a=),
    ``reason`` for the A-R comment and the logs."""

    result: str
    domain: str = ""
    selector: str = ""
    identity: str = ""
    algorithm: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ArcResult:
    """RFC 8617 chain validation: ``result`` ``none``/``pass``/``fail`` (or
    ``temperror``), the ``sealer`` (d= of the newest ARC-Seal), the number of
    ``instances``, and ``reason``."""

    result: str
    sealer: str = ""
    instances: int = 0
    reason: str = ""


def _tags(value: bytes) -> dict[bytes, bytes]:
    """A lenient tag=value read of a signature (for reporting what it claimed)."""
    out: dict[bytes, bytes] = {}
    for part in value.split(b";"):
        m = _TAG.match(part)
        if m:
            out.setdefault(m.group(1).lower(), re.sub(rb"\s+", b"", m.group(2)))
    return out


def _text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace")


class _KeySource:
    """dkimpy's ``dnsfunc`` over ``txt``, remembering why a key was unusable."""

    def __init__(self, txt: TxtLookup) -> None:
        self.txt = txt
        self.problem = ""

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        self.problem = ""
        records = self.txt(name.decode("ascii", "replace"))
        if not records:
            self.problem = "no key for signature"
            return None
        # RFC 6376 §3.6.2.2: one record per selector; take a DKIM1 one when several.
        record = next((r for r in records if r.lstrip().startswith("v=DKIM1")), records[0])
        raw = record.encode("utf-8", "surrogateescape")
        try:
            dkim.evaluate_pk(name, raw)
        except dkim.KeyFormatError as exc:
            self.problem = f"unusable key record: {exc}"
        except Exception as exc:  # dkimpy raises a few kinds on garbage; all unusable
            self.problem = f"unusable key record: {type(exc).__name__}"
        return raw


_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _head_has(message: bytes, name: bytes) -> bool:
    """Whether the header section mentions ``name`` (lower case) at all: a cheap
    test that spares dkimpy's parse of the whole message for unsigned mail."""
    m = _HEADER_END.search(message)
    return name in (message[: m.start()] if m else message).lower()


def _body_length(verifier: dkim.DKIM, sig: dict[bytes, bytes]) -> int:
    policy = dkim.CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
    return len(policy.canonicalize_body(verifier.body))


def verify_dkim(message: bytes, txt: TxtLookup, *, max_signatures: int) -> list[DkimResult]:
    """Verify the first ``max_signatures`` DKIM-Signature fields of ``message``
    (bytes as received, CRLF).  One result per signature, top first; ``[]``
    when there is none (RFC 8601 ``dkim=none``)."""
    if not _head_has(message, b"dkim-signature"):
        return []
    try:
        verifier = dkim.DKIM(message, logger=_QUIET, minkey=MIN_RSA_BITS)
    except dkim.DKIMException as exc:
        return [DkimResult("permerror", reason=f"message: {exc}")]
    fields = [v for n, v in verifier.headers if n.lower() == b"dkim-signature"]
    out: list[DkimResult] = []
    keys = _KeySource(txt)
    for idx, value in enumerate(fields[:max_signatures]):
        tags = _tags(value)
        claim = {"domain": _text(tags.get(b"d")).lower(), "selector": _text(tags.get(b"s")),
                 "identity": _text(tags.get(b"i")), "algorithm": _text(tags.get(b"a"))}
        try:
            ok = verifier.verify(idx=idx, dnsfunc=keys)
        except TempDnsError as exc:
            out.append(DkimResult("temperror", reason=str(exc), **claim))
            continue
        except dkim.KeyFormatError as exc:
            small = "too small" in str(exc)
            out.append(DkimResult("fail" if small else "permerror",
                                  reason=f"RSA key under {MIN_RSA_BITS} bits" if small
                                  else str(exc), **claim))
            continue
        except dkim.ValidationError as exc:
            text = str(exc)
            if "x= value is past" in text:
                out.append(DkimResult("fail", reason="signature expired", **claim))
            elif "body hash mismatch" in text:
                out.append(DkimResult("fail", reason="body hash did not verify", **claim))
            else:
                out.append(DkimResult("permerror", reason=text[:120], **claim))
            continue
        except dkim.DKIMException as exc:
            out.append(DkimResult("permerror", reason=str(exc)[:120], **claim))
            continue
        if not ok:
            if keys.problem:
                out.append(DkimResult("permerror", reason=keys.problem[:120], **claim))
            else:
                out.append(DkimResult("fail", reason="signature did not verify", **claim))
            continue
        sig = verifier.signature_fields
        if b"l" in sig and int(sig[b"l"]) < _body_length(verifier, sig):
            out.append(DkimResult("policy", reason="l= does not cover the whole body", **claim))
            continue
        out.append(DkimResult("pass", **claim))
    return out


def verify_arc(message: bytes, txt: TxtLookup) -> ArcResult:
    """Validate the ARC chain of ``message`` (RFC 8617 §5.2).  ``none`` without
    ARC sets; ``fail`` for a broken chain; ``pass`` names the newest sealer."""
    if not _head_has(message, b"arc-seal"):
        return ArcResult("none")
    try:
        arc = dkim.ARC(message, logger=_QUIET, minkey=MIN_RSA_BITS)
        cv, results, reason = arc.verify(dnsfunc=_KeySource(txt))
    except TempDnsError as exc:
        return ArcResult("temperror", reason=str(exc))
    except dkim.DKIMException as exc:
        return ArcResult("fail", reason=str(exc)[:120])
    instances = len(results)
    sealer = _text(results[0].get("as-domain")).lower() if results else ""
    if cv == dkim.CV_None:
        return ArcResult("none")
    if cv == dkim.CV_Pass:
        return ArcResult("pass", sealer, instances)
    return ArcResult("fail", sealer, instances, str(reason)[:120])
