"""Settings: TOML (stdlib ``tomllib``) → frozen, validated dataclasses.

INTERFACE SPEC: the dataclasses and field names below are shared by every
package; the loader (``load``/``parse``) is the config owner's.  Unknown keys
and bad values raise ``ConfigError`` naming the file, the key and the problem.
Durations are seconds, sizes octets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mailserver.errors import ConfigError  # noqa: F401  (re-exported for callers)

PROTOCOLS = ("smtp", "submission", "imap")
TLS_MODES = ("none", "starttls", "implicit")


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening socket.  ``port`` 0 binds an ephemeral port (tests)."""

    name: str  # the TOML table name, e.g. "smtp", "imap", "imaps"
    protocol: str  # one of PROTOCOLS
    address: str = "127.0.0.1"
    port: int = 0
    tls: str = "none"  # one of TLS_MODES


@dataclass(frozen=True, slots=True)
class Limits:
    # SMTP (RFC 5321 §4.5.3.1 sizes are minimums we exceed; §4.5.3.2 timeouts)
    max_message_size: int = 50 * 1024 * 1024  # SIZE (RFC 1870) and APPEND literal cap
    max_recipients: int = 100  # per SMTP transaction (RFC 5321 §4.5.3.1.8)
    smtp_max_line_length: int = 4096  # command and DATA lines, CRLF included
    smtp_idle_timeout: float = 300.0  # RFC 5321 §4.5.3.2.7
    # IMAP
    imap_max_line_length: int = 65536  # one line of a command, literals excluded
    imap_max_literal_size: int = 50 * 1024 * 1024  # largest literal (APPEND)
    imap_idle_timeout: float = 1800.0  # autologout, RFC 3501 §5.4 (>= 30 min)
    # both
    max_connections: int = 2000  # per listener
    max_connections_per_ip: int = 100
    max_auth_failures: int = 3  # then the connection is closed


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Certificate and key in PEM.  Both None: a self-signed certificate for
    ``hostname`` is made on first start and kept in ``data_dir/tls/``."""

    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class LogSettings:
    format: str = "auto"  # "json", "console", or "auto" (console on a TTY, else JSON)
    level: str = "info"


@dataclass(frozen=True, slots=True)
class StoreSettings:
    map_size: int = 1 << 34  # LMDB map size, octets (sparse on disk)


@dataclass(frozen=True, slots=True)
class Config:
    hostname: str = "localhost"
    data_dir: Path = Path("var")
    domains: tuple[str, ...] = ()  # created at start if missing
    listeners: tuple[Listener, ...] = ()
    limits: Limits = field(default_factory=Limits)
    tls: TlsSettings = field(default_factory=TlsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    demo_account: bool = False  # create demo domain/account on first start and print them
    source: Path | None = None  # the file it was read from, for messages
