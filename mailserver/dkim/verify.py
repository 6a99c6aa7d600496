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

CPU per message (issue #11 §4; ``bench/checks_cpu.py``).  dkimpy is pure
Python but for hashing; two of its costs are cut here, each keeping its
answers (``tests/unit/test_dkim_verify_cache.py`` compares them), by
libraries rather than code of our own:

* Key records are parsed once: ``KeyCache`` keeps the parsed key of each
  TXT record *text* it has seen (dkimpy parses the ASN.1 of an RSA key in
  Python for every signature).  The key is a function of the text alone, so
  a changed or rotated record is a new entry; when the record is asked
  again is the resolver's TTL cache's business.  Records that do not parse
  are not kept: they are parsed, and refused, every time.  The verifiers
  (``_Dkim``, ``_Arc``) load keys through it.
* RSA verification of a key of ``MIN_RSA_BITS`` or more runs in OpenSSL
  (``cryptography``) instead of dkimpy's Python integer code: dkimpy's
  ``RSASSA_PKCS1_v1_5_verify`` is replaced in its module (as
  ``spf_eval`` replaces pyspf's ``DNSLookup``), for our cached keys only;
  any other key goes to dkimpy's own function.

dkimpy's canonicalization and message parse stay its own: a rewrite of
both with the same answers was measured (the parse alone: 221 -> 184 us of
an RSA-signed 4 KB message) and left out, a library's code being worth
more than that to us, and our signing uses them too.
"""

from __future__ import annotations

import binascii
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dkim  # its RSA verify (from dkim.crypto) is replaced below
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from mailserver.dns.bridge import TempDnsError

#: RFC 8301 §3.2: verifiers MUST NOT accept RSA keys shorter than this.
MIN_RSA_BITS = 1024
#: Key records a ``KeyCache`` keeps before it starts over (a few hundred bytes each).
KEY_CACHE_SIZE = 2000

#: dkimpy logs every failure at ERROR through ``logging``; our verdicts go to
#: our own log, so its chatter is silenced.
_QUIET = logging.getLogger("mailserver.dkim.verify.dkimpy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

_TAG = re.compile(rb"\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*([^;]*)")
_WSP_ANY = re.compile(rb"\s+")

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


_CLAIMS = (b"d", b"s", b"i", b"a")


def _tags(value: bytes) -> dict[bytes, bytes]:
    """A lenient tag=value read of a signature's ``d=``, ``s=``, ``i=`` and ``a=``
    (for reporting what it claimed; the first of each)."""
    out: dict[bytes, bytes] = {}
    for part in value.split(b";"):
        m = _TAG.match(part)
        if m:
            name = m.group(1).lower()
            if name in _CLAIMS and name not in out:
                out[name] = _WSP_ANY.sub(b"", m.group(2))
    return out


def _text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace")


class _RsaKey(dict[str, int]):
    """dkimpy's RSA public key (``modulus``, ``publicExponent``) with the same
    key loaded in OpenSSL (``native``) and its length in octets."""

    __slots__ = ("native", "octets")

    def __init__(self, pk: dict[str, int], native: rsa.RSAPublicKey) -> None:
        super().__init__(pk)
        self.native = native
        self.octets = (pk["modulus"].bit_length() + 7) // 8


_PREHASHED = {"sha256": Prehashed(hashes.SHA256()), "sha1": Prehashed(hashes.SHA1())}
_DKIMPY_RSA_VERIFY = dkim.crypto.RSASSA_PKCS1_v1_5_verify  # the original (we replace dkim.'s)


def _rsa_verify(hash: Any, signature: bytes, public_key: Any) -> bool:
    """RSASSA-PKCS1-v1_5-VERIFY (RFC 8017 §8.2.2) as dkimpy calls it: ``hash`` a
    hashlib object (``name``, ``digest()``), ``signature`` the b= octets.
    Our ``_RsaKey``s are verified by OpenSSL; other keys by dkimpy."""
    prehashed = _PREHASHED.get(hash.name.lower())
    if not isinstance(public_key, _RsaKey) or prehashed is None:
        return bool(_DKIMPY_RSA_VERIFY(hash, signature, public_key))
    # dkimpy reads b= as an integer, so a signature short of its leading zero
    # octets verifies; so it does here.  One not below the modulus is invalid
    # (§5.2.2 RSAVP1; dkimpy would have reduced it).
    s = int.from_bytes(signature, "big")
    if s >= public_key["modulus"]:
        return False
    try:
        public_key.native.verify(s.to_bytes(public_key.octets, "big"), hash.digest(),
                                 padding.PKCS1v15(), prehashed)
    except InvalidSignature:
        return False
    return True


dkim.RSASSA_PKCS1_v1_5_verify = _rsa_verify  # see the module docstring

KeyTuple = tuple[Any, int | None, bytes | None, bool]


class KeyCache:
    """Parsed DKIM key records (RFC 6376 §3.6.1), by the record's text (see the
    module doc).  One per process is enough; any thread may use it."""

    def __init__(self, size: int = KEY_CACHE_SIZE) -> None:
        self.size = size
        self._keys: dict[bytes, KeyTuple] = {}

    def parse(self, name: bytes, record: bytes | None) -> KeyTuple:
        """dkimpy's ``evaluate_pk``: ``(key, bits, k= tag, tlsrpt service)``.
        Raises what it raises (``KeyFormatError``, ``binascii.Error``, ...)
        for an unusable record, which is then not kept."""
        if record is None:
            return dkim.evaluate_pk(name, record)
        hit = self._keys.get(record)
        if hit is not None:
            return hit
        pk, bits, ktag, tlsrpt = dkim.evaluate_pk(name, record)
        if ktag == b"rsa" and bits is not None and bits >= MIN_RSA_BITS:
            try:
                native = rsa.RSAPublicNumbers(pk["publicExponent"], pk["modulus"]).public_key()
            except ValueError:  # an exponent OpenSSL refuses: dkimpy judges it
                pass
            else:
                pk = _RsaKey(pk, native)
        if len(self._keys) >= self.size:
            self._keys.clear()
        entry: KeyTuple = (pk, bits, ktag, tlsrpt)
        self._keys[record] = entry
        return entry

    def __len__(self) -> int:
        return len(self._keys)


class _KeySource:
    """dkimpy's ``dnsfunc`` over ``txt``, remembering why a key was unusable;
    ``key`` parses through ``cache``."""

    def __init__(self, txt: TxtLookup, cache: KeyCache | None) -> None:
        self.txt = txt
        self.cache = cache if cache is not None else KeyCache()
        self.problem = ""

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        self.problem = ""
        records = self.txt(name.decode("ascii", "replace"))
        if not records:
            self.problem = "no key for signature"
            return None
        # RFC 6376 §3.6.2.2: one record per selector; take a DKIM1 one when several.
        record = next((r for r in records if r.lstrip().startswith("v=DKIM1")), records[0])
        return record.encode("utf-8", "surrogateescape")

    def key(self, name: bytes) -> KeyTuple:
        """The parsed key of ``name`` (``KeyCache.parse``); raises as it does."""
        record = self(name)
        try:
            return self.cache.parse(name, record)
        except dkim.KeyFormatError as exc:
            if record is not None:
                self.problem = f"unusable key record: {exc}"
            raise
        except Exception as exc:  # dkimpy raises a few kinds on garbage; all unusable
            self.problem = f"unusable key record: {type(exc).__name__}"
            raise


class _CachedKeys:
    """dkimpy's ``DomainSigner.verify_sig`` (dkimpy 1.1) with the key loaded
    through ``self.keys`` (a ``_KeySource``) instead of parsed anew."""

    keys: _KeySource
    verify_sig_process: Callable[..., Any]  # dkimpy's DomainSigner method (a declaration only)

    def verify_sig(self, sig: dict[bytes, bytes], include_headers: list[bytes],
                   sig_header: tuple[bytes, bytes], dnsfunc: Any) -> bool:
        name = sig[b"s"] + b"._domainkey." + sig[b"d"] + b"."
        try:
            self.pk, self.keysize, self.ktag, self.seqtlsrpt = self.keys.key(name)
        except (dkim.KeyFormatError, binascii.Error, dkim.DnsTimeoutError):
            return False  # as dkimpy: the signature does not verify (``keys.problem`` says why)
        return bool(self.verify_sig_process(sig, include_headers, sig_header, dnsfunc))


class _Dkim(_CachedKeys, dkim.DKIM):
    pass


class _Arc(_CachedKeys, dkim.ARC):
    pass


_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _head_has(message: bytes, name: bytes) -> bool:
    """Whether the header section mentions ``name`` (lower case) at all: a cheap
    test that spares dkimpy's parse of the whole message for unsigned mail."""
    m = _HEADER_END.search(message)
    return name in (message[: m.start()] if m else message).lower()


def _body_length(verifier: dkim.DKIM, sig: dict[bytes, bytes]) -> int:
    policy = dkim.CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
    return len(policy.canonicalize_body(verifier.body))


def verify_dkim(message: bytes, txt: TxtLookup, *, max_signatures: int,
                keys: KeyCache | None = None) -> list[DkimResult]:
    """Verify the first ``max_signatures`` DKIM-Signature fields of ``message``
    (bytes as received, CRLF).  One result per signature, top first; ``[]``
    when there is none (RFC 8601 ``dkim=none``).  ``keys``: parsed key
    records to reuse (None: parse each)."""
    if not _head_has(message, b"dkim-signature"):
        return []
    try:
        verifier = _Dkim(message, logger=_QUIET, minkey=MIN_RSA_BITS)
    except dkim.DKIMException as exc:
        return [DkimResult("permerror", reason=f"message: {exc}")]
    fields = [v for n, v in verifier.headers if n.lower() == b"dkim-signature"]
    out: list[DkimResult] = []
    verifier.keys = source = _KeySource(txt, keys)
    for idx, value in enumerate(fields[:max_signatures]):
        tags = _tags(value)
        claim = {"domain": _text(tags.get(b"d")).lower(), "selector": _text(tags.get(b"s")),
                 "identity": _text(tags.get(b"i")), "algorithm": _text(tags.get(b"a"))}
        try:
            ok = verifier.verify(idx=idx, dnsfunc=source)
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
            if source.problem:
                out.append(DkimResult("permerror", reason=source.problem[:120], **claim))
            else:
                out.append(DkimResult("fail", reason="signature did not verify", **claim))
            continue
        sig = verifier.signature_fields
        if b"l" in sig and int(sig[b"l"]) < _body_length(verifier, sig):
            out.append(DkimResult("policy", reason="l= does not cover the whole body", **claim))
            continue
        out.append(DkimResult("pass", **claim))
    return out


def verify_arc(message: bytes, txt: TxtLookup, *, keys: KeyCache | None = None) -> ArcResult:
    """Validate the ARC chain of ``message`` (RFC 8617 §5.2).  ``none`` without
    ARC sets; ``fail`` for a broken chain; ``pass`` names the newest sealer.
    ``keys``: as ``verify_dkim``'s."""
    if not _head_has(message, b"arc-seal"):
        return ArcResult("none")
    try:
        arc = _Arc(message, logger=_QUIET, minkey=MIN_RSA_BITS)
        arc.keys = source = _KeySource(txt, keys)
        cv, results, reason = arc.verify(dnsfunc=source)
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
