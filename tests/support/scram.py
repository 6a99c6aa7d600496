"""A small SCRAM-SHA-256(-PLUS) client (RFC 5802, RFC 7677) for the tests,
written from the RFC with hashlib/hmac only, independent of the server's
``protocol.sasl.scram``.  ASCII user names and passwords only (no SASLprep:
for ASCII it is the identity).

``ScramClient.first()`` -> client-first-message; ``final(server_first)`` ->
client-final-message; ``check(server_final)`` verifies the server's
signature.  ``authobject()`` drives imaplib's ``authenticate``; ``smtp_auth``
drives smtplib's ``docmd``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import smtplib
import ssl
from collections.abc import Callable


def _h(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def end_point(sock: ssl.SSLSocket) -> bytes:
    """``tls-server-end-point`` data as a client computes it (RFC 5929 §4.1):
    SHA-256 of the server's certificate (ours are signed with SHA-256)."""
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).digest()


class ScramClient:
    """One exchange as ``user`` with ``password``.

    ``cb_name``/``cb_data``: channel binding (RFC 5802 §6; ``cb_name`` None:
    flag ``cb_flag``, "n" by default); ``authzid``: sent as ``a=``.
    """

    def __init__(self, user: str, password: str, *, cb_name: str | None = None,
                 cb_data: bytes = b"", cb_flag: str = "n", authzid: str | None = None,
                 nonce: str | None = None) -> None:
        self.user = user
        self.password = password
        self.cb_data = cb_data
        flag = f"p={cb_name}" if cb_name is not None else cb_flag
        self.gs2 = f"{flag},{'a=' + authzid if authzid else ''},"
        self.nonce = nonce or secrets.token_urlsafe(18)
        self.bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={self.nonce}"
        self.server_signature = b""
        self.salted = b""

    def first(self) -> bytes:
        return (self.gs2 + self.bare).encode()

    def final(self, server_first: bytes, *, password: str | None = None) -> bytes:
        attrs = dict(part.split("=", 1) for part in server_first.decode().split(","))
        assert attrs["r"].startswith(self.nonce) and len(attrs["r"]) > len(self.nonce)
        salt, iterations = base64.b64decode(attrs["s"]), int(attrs["i"])
        self.salted = hashlib.pbkdf2_hmac("sha256", (password or self.password).encode(),
                                          salt, iterations)
        client_key = _h(self.salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        channel = base64.b64encode(self.gs2.encode() + self.cb_data).decode()
        without_proof = f"c={channel},r={attrs['r']}"
        auth_message = f"{self.bare},{server_first.decode()},{without_proof}".encode()
        signature = _h(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self.server_signature = _h(_h(self.salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def check(self, server_final: bytes) -> None:
        """Raise AssertionError unless ``server_final`` is our expected ``v=``."""
        assert server_final == b"v=" + base64.b64encode(self.server_signature), server_final

    def authobject(self) -> Callable[[bytes], bytes]:
        """imaplib ``authenticate``'s callable: challenge in, response out."""
        steps = iter((lambda _c: self.first(), self.final, self._last))
        return lambda challenge: next(steps)(challenge)

    def _last(self, server_final: bytes) -> bytes:
        self.check(server_final)
        return b""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def smtp_auth(client: smtplib.SMTP, mechanism: str, scram: ScramClient, *,
              initial: bool = True) -> tuple[int, bytes]:
    """Run AUTH ``mechanism`` with ``scram`` over ``client.docmd``; the last reply.
    Stops at the first reply that is not 334."""
    if initial:
        code, text = client.docmd("AUTH", f"{mechanism} {b64(scram.first())}")
    else:
        code, text = client.docmd("AUTH", mechanism)
        if code != 334:
            return code, text
        assert text == b""
        code, text = client.docmd(b64(scram.first()))
    if code != 334:
        return code, text
    code, text = client.docmd(b64(scram.final(base64.b64decode(text))))
    if code != 334:
        return code, text
    scram.check(base64.b64decode(text))
    return client.docmd("")
