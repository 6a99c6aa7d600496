"""TLS server context: the configured certificate, or a self-signed one made on first start.

The self-signed certificate (RSA 2048, SHA-256, ten years, subjectAltName =
hostname) is written to ``data_dir/tls/`` with the key readable by the owner
only, and reused on later starts.  Both files are written atomically
(``fsutil.write_atomic``: a new synced temporary file, then rename; the key is
0600 whatever files were left behind), the key before the certificate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mailserver.config import Config
from mailserver.errors import ConfigError
from mailserver.fsutil import write_atomic


def _alt_names(hostname: str) -> list[x509.GeneralName]:
    """subjectAltName entries (RFC 6125 §6.4): the name, plus loopback IPs for localhost."""
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname == "localhost":
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    return names


def make_self_signed(hostname: str, cert_path: Path, key_path: Path) -> None:
    """Write a new self-signed certificate and its private key (PEM) for ``hostname``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(_alt_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for directory in {key_path.parent, cert_path.parent}:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Key first, certificate last: a crash in between leaves no certificate,
    # so the next start makes a new pair instead of loading a mismatched one.
    write_atomic(key_path, key_pem, 0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def load_cert_chain(ctx: ssl.SSLContext, cert: Path, key: Path, source: Path | None) -> None:
    """``ctx.load_cert_chain(cert, key)``, failing with a message that names the file.

    ``ssl`` reports a missing or unreadable file without its name (``[Errno 2]
    No such file or directory``), and a bad one as ``[SSL] PEM lib``: each file
    is opened first, so the error names it with the OS error.  Raises
    ConfigError ``"<source>: tls: cannot read the certificate /path: <reason>"``.
    """
    where = f"{source}: " if source is not None else ""
    for path, what in ((cert, "certificate"), (key, "private key")):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(
                f"{where}tls: cannot read the {what} {path}: {exc.strerror or exc}"
            ) from None
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise ConfigError(
            f"{where}tls: cannot load the certificate {cert} with the private key {key}: {reason}"
        ) from None


def server_context(config: Config) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` for our listeners (TLS 1.2+).

    Uses ``config.tls`` files when set; otherwise ``data_dir/tls/{cert,key}.pem``,
    creating them on first use.  Raises ConfigError naming the file that cannot
    be read or loaded (``load_cert_chain``), ``OSError`` when the self-signed
    pair cannot be written.
    """
    cert, key, source = _cert_files(config)
    own = config.tls.cert_file is None or config.tls.key_file is None
    if own and not (cert.exists() and key.exists()):
        make_self_signed(config.hostname, cert, key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_cert_chain(ctx, cert, key, source)
    return ctx


def reload_context(ctx: ssl.SSLContext, config: Config) -> None:
    """Load ``config``'s certificate and key into the existing ``ctx`` (SIGHUP):
    every listener holding ``ctx`` presents them from the next handshake on;
    sessions already under TLS keep theirs.  Raises as ``server_context``;
    on an error ``ctx`` keeps its old pair."""
    cert, key, source = _cert_files(config)
    own = config.tls.cert_file is None or config.tls.key_file is None
    if own and not (cert.exists() and key.exists()):
        make_self_signed(config.hostname, cert, key)
    # Checked on a scratch context first: a bad pair must not half-replace ours.
    load_cert_chain(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), cert, key, source)
    load_cert_chain(ctx, cert, key, source)


def _cert_files(config: Config) -> tuple[Path, Path, Path | None]:
    """``(certificate, key, source)``: the configured files, or our own in
    ``data_dir/tls`` (source None: no configuration key to fix)."""
    cert, key = config.tls.cert_file, config.tls.key_file
    if cert is None or key is None:
        tls_dir = config.data_dir / "tls"
        return tls_dir / "cert.pem", tls_dir / "key.pem", None
    return cert, key, config.source


def server_end_point(config: Config) -> bytes | None:
    """The ``tls-server-end-point`` channel binding data of the certificate
    ``server_context`` serves (RFC 5929 §4.1: the first certificate of the
    file, hashed with the hash of its signature algorithm, SHA-256 for MD5
    and SHA-1); call after ``server_context``.  None when the file cannot be
    read or parsed (then no SCRAM-SHA-256-PLUS is offered)."""
    cert_path = _cert_files(config)[0]
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return None
    algorithm = cert.signature_hash_algorithm
    return end_point_hash(cert.public_bytes(serialization.Encoding.DER),
                          None if algorithm is None else algorithm.name)


def end_point_hash(cert_der: bytes, hash_name: str | None) -> bytes:
    """``tls-server-end-point`` data of a DER certificate (RFC 5929 §4.1): hashed
    with its signature's hash function ``hash_name`` (``hashlib`` name), SHA-256
    when that is MD5 or SHA-1, or when there is none (Ed25519: RFC 5929 leaves
    it open; SHA-256 is what OpenSSL-based peers use)."""
    if hash_name is None or hash_name.lower() in ("md5", "sha1"):
        hash_name = "sha256"
    return hashlib.new(hash_name.lower(), cert_der).digest()
