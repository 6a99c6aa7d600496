"""SCRAM-SHA-256 credentials of accounts (RFC 5802, RFC 7677): making the keys,
finding them for an exchange, and this connection's channel binding data.

The exchange itself is ``protocol.sasl.scram`` (sans-IO); the SMTP and IMAP
front ends drive it with what ``ScramLogins`` gives them.

Keys are made whenever the password is at hand: when it is set (admin
service, CLI) and after a successful PLAIN/LOGIN login of an account that has
none or has them with another iteration count (``auth.login``).  They are
stored beside the argon2id hash (``store.model.ScramKeys``).

Account existence does not leak (RFC 5802 §9 "unknown-user" is a server's
choice; we never say it): a name without usable keys — no such account, a
disabled one, one whose keys are not made yet — gets a salt and the
configured iteration count as a real account would, and keys that match no
password, so the exchange fails at the proof like a wrong password.  The salt
of a missing account is an HMAC of the name under a secret kept in
``data_dir`` (``scram.secret``, made once), so it is the same at every try,
in every worker process and after a restart: a salt that changed between two
attempts would tell that the name has no account.  A disabled account with
keys answers with its real salt and fake keys.

Channel binding (RFC 5802 §6, for -PLUS): ``tls-server-end-point`` (RFC 5929
§4.1: a hash of our certificate, ``tls.server_end_point``) on every TLS
connection, and ``tls-unique`` (RFC 5929 §3) on TLS 1.2 only (RFC 9266 §3:
undefined for TLS 1.3).  ``tls-exporter`` (RFC 9266) needs the TLS exporter
(``SSL_export_keying_material``), which Python's ``ssl`` module does not
offer (3.11-3.13): a client that asks for it gets
``unsupported-channel-binding-type``.
"""

from __future__ import annotations

import hmac
import os
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from mailserver.fsutil import write_atomic
from mailserver.protocol.sasl.saslprep import SaslprepError
from mailserver.protocol.sasl.scram import (
    TLS_SERVER_END_POINT,
    TLS_UNIQUE,
    derive_keys,
)
from mailserver.store.model import Account, ScramKeys
from mailserver.store.store import Store

log = structlog.get_logger("mailserver.auth")

#: Octets of a new salt (RFC 5802 leaves the size open; 16 as RFC 7677's example).
SALT_SIZE = 16
#: The file of the secret behind the salts of missing accounts.
SECRET_FILE = "scram.secret"


def make_keys(password: str, iterations: int) -> ScramKeys | None:
    """New SCRAM-SHA-256 keys of ``password`` with a random salt (blocking:
    ``iterations`` PBKDF2 rounds).  None when SASLprep refuses the password
    (RFC 4013 §2.3 prohibited characters): SCRAM cannot be used with it,
    PLAIN still can."""
    salt = secrets.token_bytes(SALT_SIZE)
    try:
        stored_key, server_key = derive_keys(password, salt, iterations)
    except SaslprepError:
        return None
    return ScramKeys(salt, iterations, stored_key, server_key)


def load_secret(path: Path) -> bytes:
    """The 32-octet secret in ``path``, made (0600, durably) when missing.

    Several processes may start at once: each makes its own candidate and
    links it into place; the first link wins and every process reads that one.
    Raises OSError.
    """
    try:
        data = path.read_bytes()
        if len(data) == 32:
            return data
    except FileNotFoundError:
        pass
    candidate = path.with_name(f".{path.name}.{os.getpid()}")
    write_atomic(candidate, secrets.token_bytes(32), 0o600)
    try:
        os.link(candidate, path)
    except FileExistsError:
        pass  # another process was first (or a short file: replaced below)
    finally:
        os.unlink(candidate)
    data = path.read_bytes()
    if len(data) != 32:  # a damaged file: replace it
        data = secrets.token_bytes(32)
        write_atomic(path, data, 0o600)
    return data


@dataclass(frozen=True, slots=True)
class ScramLookup:
    """What an exchange uses for one user name: ``account`` (the address, None
    when the name has no usable keys: the exchange must fail) and ``keys``
    (real, or fakes that match no password)."""

    account: str | None
    keys: ScramKeys


class ScramLogins:
    """SCRAM logins against ``store`` (see the module docstring).

    ``iterations``: the configured count (``[auth] scram_iterations``), used
    for the fakes; ``secret``: 32 octets (``load_secret``); ``end_point``:
    the ``tls-server-end-point`` data of our certificate (None: no -PLUS).
    """

    def __init__(self, store: Store, iterations: int, secret: bytes,
                 end_point: bytes | None) -> None:
        self.store = store
        self.iterations = iterations
        self.end_point = end_point
        self._secret = secret

    def lookup(self, username: str) -> ScramLookup:
        """The keys for ``username`` (SASLprep-ed; an account address, any case).
        One LMDB read; never raises for an unknown name."""
        account: Account | None = self.store.get_account(username.strip())
        if account is not None and account.scram is not None:
            if not account.disabled:
                return ScramLookup(account.address, account.scram)
            keys = account.scram
            return ScramLookup(None, ScramKeys(keys.salt, keys.iterations,
                                               secrets.token_bytes(32), secrets.token_bytes(32)))
        salt = hmac.digest(self._secret, b"salt\0" + username.strip().lower().encode(),
                           "sha256")[:SALT_SIZE]
        return ScramLookup(None, ScramKeys(salt, self.iterations, secrets.token_bytes(32),
                                           secrets.token_bytes(32)))

    def plus_available(self, ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bool:
        """Whether -PLUS can be offered on a connection with this TLS object
        (None: not TLS): ``tls-server-end-point`` data is known."""
        return ssl_object is not None and self.end_point is not None

    def channel_binding(self, ssl_object: ssl.SSLObject | ssl.SSLSocket | None
                        ) -> Callable[[str], bytes | None]:
        """The binding data of a connection by type name (RFC 5802 §6), None
        for a type we cannot produce on it (see the module docstring)."""
        end_point = self.end_point

        def data(name: str) -> bytes | None:
            if ssl_object is None:
                return None
            if name == TLS_SERVER_END_POINT:
                return end_point
            if name == TLS_UNIQUE and ssl_object.version() not in (None, "TLSv1.3"):
                return ssl_object.get_channel_binding(TLS_UNIQUE)
            return None

        return data

