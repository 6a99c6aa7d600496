"""DANE matching (RFC 7672 §3.1): DANE-EE and DANE-TA records against certificates."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from mailserver.queue.dane import Tlsa, usable, verify

NOW = dt.datetime.now(dt.UTC)


def _cert(name: str, key: ec.EllipticCurvePrivateKey, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, san: str | None) -> x509.Certificate:
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(days=2))
         .not_valid_after(NOW - dt.timedelta(days=1)))  # expired: DANE does not care
    if san:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


CA_KEY, LEAF_KEY, OTHER_KEY = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
CA = _cert("Test CA", CA_KEY, "Test CA", CA_KEY, None)
LEAF = _cert("mx", LEAF_KEY, "Test CA", CA_KEY, "*.dest.test")
FORGED = _cert("mx", LEAF_KEY, "Test CA", OTHER_KEY, "*.dest.test")  # not signed by CA
CHAIN = [LEAF.public_bytes(Encoding.DER), CA.public_bytes(Encoding.DER)]
NAMES = ["mx.dest.test", "mx.dest.test"]


def rec(usage: int, selector: int, mtype: int, cert: x509.Certificate) -> Tlsa:
    data = (cert.public_bytes(Encoding.DER) if selector == 0 else
            cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    if mtype:
        data = (hashlib.sha256 if mtype == 1 else hashlib.sha512)(data).digest()
    return Tlsa(usage, selector, mtype, data)


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ee_matches_the_leaf_whatever_its_name_or_expiry(selector: int, mtype: int) -> None:
    assert verify([rec(3, selector, mtype, LEAF)], CHAIN, ["other.example"])
    assert not verify([rec(3, selector, mtype, CA)], CHAIN, NAMES)


def test_dane_ta_needs_the_chain_and_the_name() -> None:
    ta = rec(2, 1, 1, CA)
    assert verify([ta], CHAIN, NAMES)
    assert not verify([ta], CHAIN, ["mx.other.test"])  # §3.2.2 name check
    assert not verify([ta], CHAIN[:1], NAMES)  # the TA is not in the chain
    forged = [FORGED.public_bytes(Encoding.DER), CHAIN[1]]
    assert not verify([ta], forged, NAMES)  # the leaf is not issued by the TA


def test_pkix_usages_are_unusable_and_garbage_does_not_match() -> None:
    pkix = [rec(0, 1, 1, CA), rec(1, 1, 1, LEAF)]
    assert usable(pkix) == [] and not verify(pkix, CHAIN, NAMES)
    assert not verify([rec(3, 1, 1, LEAF)], [b"not der"], NAMES)
    assert not verify([rec(3, 1, 1, LEAF)], [], NAMES)


def test_presentation_format() -> None:
    r = Tlsa.from_text("3 1 1 AB12 cd34")
    assert r == Tlsa(3, 1, 1, bytes.fromhex("ab12cd34"))
    with pytest.raises(ValueError):
        Tlsa.from_text("3 1")
