"""What ``dkim/verify.py`` changes in dkimpy for speed (issue #11 §4) keeps its
answers: parsed keys are reused by record text only (a rotated key is read
anew, an unusable one is never kept), RSA verification in OpenSSL agrees
with dkimpy's, and the relaxed canonicalization's WSP rules give dkimpy's
output."""

from __future__ import annotations

import base64
import hashlib

import dkim
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailserver.dkim import verify
from mailserver.dkim.keys import generate_key
from mailserver.dkim.verify import KeyCache, verify_dkim

MESSAGE = (b"From: Someone <someone@example.com>\r\nTo: alice@example.test\r\n"
           b"Subject: hello  there\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\r\n"
           b"The  body,\twith some \t whitespace.  \r\n\r\n")


def _dkimpy_key(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return base64.b64encode(raw)


def _signed(pem: bytes, algorithm: bytes = b"rsa-sha256") -> bytes:
    return dkim.sign(MESSAGE, b"s", b"example.com", _dkimpy_key(pem),
                     canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algorithm,
                     include_headers=[b"from", b"to", b"subject", b"date"]) + MESSAGE


class Zone:
    """The TXT records a verifier sees, changed by the test (name -> texts)."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}

    def txt(self, name: str) -> list[str]:
        return list(self.records.get(name.lower().rstrip("."), []))


def _results(message: bytes, zone: Zone, keys: KeyCache) -> list[tuple[str, str]]:
    return [(r.result, r.reason) for r in verify_dkim(message, zone.txt, max_signatures=5,
                                                     keys=keys)]


def test_a_rotated_key_is_read_anew() -> None:
    old_pem, old_txt = generate_key("example.com", "s", "rsa")
    new_pem, new_txt = generate_key("example.com", "s", "rsa")
    by_old, by_new = _signed(old_pem), _signed(new_pem)
    zone, keys = Zone(), KeyCache()
    zone.records["s._domainkey.example.com"] = [old_txt]
    for _ in range(2):  # the second time from the cache: the same verdicts
        assert _results(by_old, zone, keys) == [("pass", "")]
        assert _results(by_new, zone, keys)[0][0] == "fail"
    assert len(keys) == 1
    # The record changed (what the resolver answers once the old one's TTL ran out).
    zone.records["s._domainkey.example.com"] = [new_txt]
    assert _results(by_new, zone, keys) == [("pass", "")]
    assert _results(by_old, zone, keys)[0][0] == "fail"
    assert len(keys) == 2


def test_an_unusable_key_is_never_kept() -> None:
    pem, txt = generate_key("example.com", "s", "rsa")
    message = _signed(pem)
    zone, keys = Zone(), KeyCache()
    for broken in ("v=DKIM1; k=rsa; p=AAAA", "v=DKIM1; k=rsa; p=!!", "v=DKIM1; k=ed25519; p=AA==",
                   "v=DKIM1; k=rsa"):
        zone.records["s._domainkey.example.com"] = [broken]
        for _ in range(2):
            result, reason = _results(message, zone, keys)[0]
            assert result == "permerror"
            assert reason.startswith("unusable key record"), reason
        assert len(keys) == 0
    zone.records.clear()
    assert _results(message, zone, keys) == [("permerror", "no key for signature")]
    zone.records["s._domainkey.example.com"] = [txt]
    assert _results(message, zone, keys) == [("pass", "")]


# cryptography makes no RSA key under 1024 bits; this one is 512 (as in the
# integration tests of the checks).
WEAK_RSA_512 = b"""-----BEGIN PRIVATE KEY-----
MIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEwggE9AgEAAkEA7FjjcuNR4WIBvo0e
b6Wqq0gPVJNf/ow29ymPT5RlPH/m9RM9YLoM1d029DqT0biIsZkRiGxAR86+xrgq
CJnuUQIDAQABAkEA22piLgSPvXepOufz+56HZWAOq2vuUHiHhsoUe8K+gXxLgpl2
n4No5QsNeAo921TvgIdCSN2b2Uma3M5NV4PggQIhAPkc25FFBjE5VakXaEo2mnXT
wr+ZtFJxC5V2+1su2RJZAiEA8uGuNm8OLUmwqzon9IEgvOHDjx6CUiuIBt/k46Dr
jLkCIQDmOpZujwVnDt8tNHXtSMO+K+TsIUj3fITBMUKjBgwWmQIhAI60PtHIyoGd
bGoOj28/d2bDF0291UBGR3QSlL+RyxQxAiEAi+deko3Puwd2E4UtP4G+zcVb8ms0
cRxrFNxNjm6iu1o=
-----END PRIVATE KEY-----
"""


def test_a_weak_key_kept_in_the_cache_still_fails() -> None:
    weak = serialization.load_pem_private_key(WEAK_RSA_512, password=None)
    assert isinstance(weak, rsa.RSAPrivateKey)
    pem = weak.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    der = weak.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    zone, keys = Zone(), KeyCache()
    zone.records["s._domainkey.example.com"] = [
        f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"]
    message = _signed(pem)
    for _ in range(2):  # RFC 8301 §3.2, from the cache as at first
        assert _results(message, zone, keys) == [("fail", "RSA key under 1024 bits")]


def test_ed25519_keys_are_reused() -> None:
    pem, txt = generate_key("example.com", "s", "ed25519")
    zone, keys = Zone(), KeyCache()
    zone.records["s._domainkey.example.com"] = [txt]
    message = _signed(pem, b"ed25519-sha256")
    assert _results(message, zone, keys) == _results(message, zone, keys) == [("pass", "")]
    assert len(keys) == 1
    broken = message.replace(b"The  body", b"The body!")
    assert _results(broken, zone, keys)[0] == ("fail", "body hash did not verify")


def test_the_cache_starts_over_when_full() -> None:
    keys = KeyCache(size=2)
    texts = [generate_key("example.com", "s", "ed25519")[1].encode() for _ in range(3)]
    for text in texts:
        keys.parse(b"s._domainkey.example.com.", text)
    assert len(keys) == 1


@pytest.mark.parametrize(("bits", "name"), [(1024, "sha256"), (2048, "sha256"), (2048, "sha1")])
def test_openssl_and_dkimpy_rsa_verification_agree(bits: int, name: str) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    pk = KeyCache().parse(b"s._domainkey.example.com.",
                          b"v=DKIM1; k=rsa; p=" + base64.b64encode(der))[0]
    assert isinstance(pk, verify._RsaKey)
    plain = {"modulus": pk["modulus"], "publicExponent": pk["publicExponent"]}
    algorithm = hashes.SHA256() if name == "sha256" else hashes.SHA1()
    data = b"the canonicalized header fields"
    good = private.sign(data, padding.PKCS1v15(), algorithm)
    cases = {
        good: True,
        b"\x00" + good: True,  # a leading zero octet: the same integer to dkimpy
        good[:-1] + bytes([good[-1] ^ 1]): False,
        bytes(len(good)): False,
        good[1:]: False,
        private.sign(b"other data", padding.PKCS1v15(), algorithm): False,
    }
    for signature, expected in cases.items():
        assert verify._rsa_verify(hashlib.new(name, data), signature, pk) is expected
        assert dkim.crypto.RSASSA_PKCS1_v1_5_verify(hashlib.new(name, data), signature,
                                                    plain) is expected
    # Not below the modulus: invalid (RFC 8017 §5.2.2); dkimpy reduces it and says valid.
    beyond = (int.from_bytes(good, "big") + pk["modulus"]).to_bytes(len(good) + 1, "big")
    assert verify._rsa_verify(hashlib.new(name, data), beyond, pk) is False
