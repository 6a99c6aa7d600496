"""DKIM key pairs: generation (``cryptography``), the DNS TXT value, key files.

Files: ``data_dir/dkim/<domain>/<selector>.key`` (private key, PEM, mode 0600)
and ``<selector>.txt`` (the TXT value to publish at
``<selector>._domainkey.<domain>``, RFC 6376 §3.6.2.1).  A key retired by a
rotation is renamed ``<selector>.retired``: it signs no more, while its
record stays published (and listed) until it is deleted, so that mail it
signed still verifies on its way (M3AAWG DKIM key rotation practice).  RSA keys are 2048
bits (RFC 8301 §3.2: at least 1024, 2048 recommended); Ed25519 per RFC 8463.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailserver.errors import MailserverError
from mailserver.fsutil import write_atomic

ALGORITHMS = ("rsa", "ed25519")
#: The suffix of a retired key's file (an active key's is ``.key``).
RETIRED = ".retired"
RSA_BITS = 2048

# RFC 6376 §3.1: a selector is dot-separated sub-domain labels.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_SELECTOR = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A signing key: ``algorithm`` "rsa" or "ed25519", ``private_pem`` (PEM bytes)."""

    domain: str
    selector: str
    algorithm: str
    private_pem: bytes = field(repr=False)


def _check(domain: str, selector: str, algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise MailserverError(f"DKIM algorithm must be one of {ALGORITHMS}, not {algorithm!r}")
    if not _SELECTOR.match(selector):
        raise MailserverError(f"invalid DKIM selector {selector!r}")
    if not _SELECTOR.match(domain.rstrip(".")):
        raise MailserverError(f"invalid domain {domain!r}")


def generate_key(domain: str, selector: str, algorithm: str = "rsa") -> tuple[bytes, str]:
    """Make a key pair.  Returns ``(private key PEM, DNS TXT value)``.

    The TXT value is ``v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>``
    (RFC 6376 §3.6.1) or ``v=DKIM1; k=ed25519; p=<base64 raw 32-byte key>``
    (RFC 8463 §4).  RSA keys are written as PKCS#1 ("RSA PRIVATE KEY", what
    dkimpy reads), Ed25519 as PKCS#8.  Raises MailserverError on bad arguments.
    """
    _check(domain, selector, algorithm)
    if algorithm == "rsa":
        rkey = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        pem = rkey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        pub = rkey.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        ekey = ed25519.Ed25519PrivateKey.generate()
        pem = ekey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pub = ekey.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    return pem, f"v=DKIM1; k={algorithm}; p={base64.b64encode(pub).decode()}"


def key_dir(data_dir: Path, domain: str) -> Path:
    return Path(data_dir) / "dkim" / domain.lower().rstrip(".")


def write_key(data_dir: Path, domain: str, selector: str, algorithm: str = "rsa") -> tuple[Path, str]:
    """Generate a key and store it; returns ``(key file path, TXT value)``.

    The directory is 0700 and the key 0600, written to a temporary file,
    fsynced and renamed so a crash never leaves half a key.  Refuses
    (MailserverError) to overwrite an existing key of that selector.
    """
    _check(domain, selector, algorithm)
    directory = key_dir(data_dir, domain)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path = directory / f"{selector}.key"
    if key_path.exists():
        raise MailserverError(f"{key_path} exists; choose another selector")
    pem, txt = generate_key(domain, selector, algorithm)
    write_atomic(directory / f"{selector}.txt", (txt + "\n").encode(), 0o644)
    write_atomic(key_path, pem, 0o600)
    return key_path, txt


def retire_key(data_dir: Path, domain: str, selector: str) -> Path:
    """Stop signing with a key, keeping its record: ``<selector>.key`` becomes
    ``<selector>.retired`` (an atomic rename, synced).  Returns the new path.
    Raises FileNotFoundError when there is no such active key."""
    directory = key_dir(data_dir, domain)
    target = directory / f"{selector}{RETIRED}"
    os.replace(directory / f"{selector}.key", target)
    _sync_dir(directory)
    return target


def delete_retired_key(data_dir: Path, domain: str, selector: str) -> None:
    """Remove a retired key and its record files (after its DNS record is
    withdrawn).  Raises FileNotFoundError when there is no such retired key."""
    directory = key_dir(data_dir, domain)
    (directory / f"{selector}{RETIRED}").unlink()
    (directory / f"{selector}.txt").unlink(missing_ok=True)
    _sync_dir(directory)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def algorithm_of(pem: bytes) -> str:
    """"rsa" or "ed25519" for a private key PEM.  Raises MailserverError otherwise."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise MailserverError(f"unreadable DKIM key: {exc}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise MailserverError("DKIM key must be RSA or Ed25519")


def load_keys(data_dir: Path, domain: str) -> list[DkimKey]:
    """Every key stored for ``domain``, RSA first then Ed25519, by selector.

    Signing with all of them gives an RSA signature every verifier understands
    plus an Ed25519 one for those that know RFC 8463.  Missing directory: [].
    """
    directory = key_dir(data_dir, domain)
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.glob("*.key")):
        pem = path.read_bytes()
        out.append(DkimKey(domain.lower().rstrip("."), path.stem, algorithm_of(pem), pem))
    out.sort(key=lambda k: (ALGORITHMS.index(k.algorithm), k.selector))
    return out


class DkimKeyring:
    """The active keys under ``data_dir/dkim``, read per domain and kept.

    ``keys_for(domain)`` is what the queue calls for each outbound message.
    It re-reads a domain's keys when its directory changed (its mtime: a key
    made, retired or deleted renames or unlinks a file there), so every
    process signs with a rotated key from the next message on, without a
    restart or a signal; the check is one ``stat`` per call.  ``reload()``
    forgets everything (SIGHUP).
    """

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = Path(data_dir)
        self._cache: dict[str, tuple[int, list[DkimKey]]] = {}

    def keys_for(self, domain: str) -> list[DkimKey]:
        """The active keys of ``domain`` (see ``load_keys``); [] when it has none.
        Raises MailserverError (an unreadable key file)."""
        domain = domain.lower().rstrip(".")
        try:
            stamp = os.stat(key_dir(self._data_dir, domain)).st_mtime_ns
        except OSError:
            stamp = -1
        cached = self._cache.get(domain)
        if cached is None or cached[0] != stamp:
            cached = self._cache[domain] = (stamp, load_keys(self._data_dir, domain))
        return cached[1]

    def reload(self) -> None:
        self._cache.clear()
