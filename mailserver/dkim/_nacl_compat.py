"""Ed25519 for dkimpy without PyNaCl: the three names dkimpy uses, on ``cryptography``.

dkimpy (1.1) does Ed25519 (RFC 8463) through ``nacl.signing`` only, and our
environment has ``cryptography`` but not PyNaCl.  dkimpy touches exactly:
``nacl.signing.SigningKey(b64, encoder=nacl.encoding.Base64Encoder).sign(d).signature``,
``nacl.signing.VerifyKey(b64, encoder=...).verify(d, sig)`` raising
``nacl.exceptions.BadSignatureError``, and ``nacl.exceptions.ValueError``.
``install()`` gives dkimpy this stand-in only when PyNaCl is absent; with
PyNaCl installed dkimpy's own import wins and this module does nothing.
"""

from __future__ import annotations

import base64
import binascii
import types
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519


class _BadSignatureError(Exception):
    pass


class _KeyValueError(ValueError):
    pass


class _Base64Encoder:
    @staticmethod
    def decode(data: bytes) -> bytes:
        try:
            return base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise _KeyValueError(str(exc)) from None


class _Signed:
    __slots__ = ("signature",)

    def __init__(self, signature: bytes) -> None:
        self.signature = signature


class _SigningKey:
    def __init__(self, seed: bytes, encoder: Any = None) -> None:
        raw = encoder.decode(seed) if encoder else seed
        try:
            self._key = ed25519.Ed25519PrivateKey.from_private_bytes(raw)
        except ValueError as exc:
            raise _KeyValueError(str(exc)) from None

    def sign(self, data: bytes) -> _Signed:
        return _Signed(self._key.sign(data))


class _VerifyKey:
    def __init__(self, key: bytes, encoder: Any = None) -> None:
        raw = encoder.decode(key) if encoder else key
        try:
            self._key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise _KeyValueError(str(exc)) from None

    def verify(self, data: bytes, signature: bytes) -> bytes:
        try:
            self._key.verify(bytes(signature), data)
        except InvalidSignature:
            raise _BadSignatureError("signature was forged or corrupt") from None
        return data


def install(dkim_module: types.ModuleType) -> None:
    """Give ``dkim_module`` a ``nacl`` stand-in unless it imported PyNaCl itself."""
    if hasattr(dkim_module, "nacl"):
        return
    nacl = types.SimpleNamespace(
        signing=types.SimpleNamespace(SigningKey=_SigningKey, VerifyKey=_VerifyKey),
        encoding=types.SimpleNamespace(Base64Encoder=_Base64Encoder),
        exceptions=types.SimpleNamespace(
            BadSignatureError=_BadSignatureError, ValueError=_KeyValueError
        ),
    )
    dkim_module.nacl = nacl  # type: ignore[attr-defined]
