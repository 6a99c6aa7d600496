"""The configuration's schema: frozen dataclasses every package reads.

Durations are seconds, sizes octets.  ``loading`` builds them from TOML and
checks every value; the defaults here are the ones a missing key gets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mailserver.config.checks import ChecksSettings
from mailserver.config.outbound import OutboundSettings

PROTOCOLS = ("smtp", "submission", "imap", "http")
TLS_MODES = ("none", "starttls", "implicit")


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening socket.  ``port`` 0 binds an ephemeral port (tests)."""

    name: str  # the TOML table name, e.g. "smtp", "imap", "imaps"
    protocol: str  # one of PROTOCOLS
    address: str = "127.0.0.1"
    port: int = 0
    tls: str = "none"  # one of TLS_MODES ("http": "none" or "implicit", i.e. HTTPS)


@dataclass(frozen=True, slots=True)
class Limits:
    """The ``[limits]`` table: sizes in octets, durations in seconds (RFC sections inline)."""

    # SMTP (RFC 5321 §4.5.3.1 sizes are minimums we exceed; §4.5.3.2 timeouts)
    max_message_size: int = 50 * 1024 * 1024  # SIZE (RFC 1870) and APPEND literal cap
    max_recipients: int = 100  # per SMTP transaction (RFC 5321 §4.5.3.1.8)
    smtp_max_line_length: int = 4096  # command lines, CRLF included
    smtp_max_data_line_length: int = 1024 * 1024  # DATA lines, CRLF included
    smtp_idle_timeout: float = 300.0  # RFC 5321 §4.5.3.2.7
    smtp_max_unknown_commands: int = 5  # unrecognised commands, then 421 and close
    # IMAP
    imap_max_line_length: int = 65536  # one line of a command, literals excluded
    imap_max_literal_size: int = 50 * 1024 * 1024  # largest literal (APPEND)
    imap_max_nesting: int = 64  # parenthesised lists / search keys (NOT, OR) in a command
    imap_idle_timeout: float = 1800.0  # autologout, RFC 3501 §5.4 (>= 30 min)
    # Total time the text of one command may take to arrive (all its lines,
    # literals excluded), and its literals together: a peer trickling octets
    # cannot hold a connection beyond these, whatever the idle timeout.
    imap_line_timeout: float = 300.0
    imap_literal_timeout: float = 1800.0
    # both
    max_connections: int = 2000  # per listener
    max_connections_per_ip: int = 100
    # New connections per minute (mox's ratelimit tiers as a guide), refused with
    # 421 4.7.0 / IMAP BYE; an IP = an IPv4 address or an IPv6 /64, a network =
    # IPv4 /24 or IPv6 /48 (counters.host_of/network_of); 0 turns a limit off.
    connections_per_minute_per_ip: int = 300
    connections_per_minute_per_network: int = 900
    # Per client IP (451 4.7.1 at MAIL / 452 4.5.3 at RCPT) and per authenticated
    # account (451 4.7.1), across workers; 0 turns one off.
    messages_per_minute_per_ip: int = 100
    messages_per_day_per_ip: int = 10000
    recipients_per_minute_per_ip: int = 500
    recipients_per_day_per_ip: int = 50000
    account_messages_per_day: int = 1000
    # Recipients an authenticated account has never sent to before, per day
    # (451 4.7.1 at RCPT): what a stolen password is used for.
    first_time_recipients_per_day: int = 200
    # Clients in these networks (CIDRs) skip the rate limits above.
    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    max_auth_failures: int = 3  # then the connection is closed
    # Per client IP, across connections: the 2nd failed AUTH waits this long
    # before its 535, each further one twice as long, up to the maximum.
    auth_failure_delay: float = 0.5
    auth_failure_delay_max: float = 8.0
    # Past these failed logins (SMTP AUTH and IMAP LOGIN/AUTHENTICATE
    # together, across workers) in the window, further logins from the IP or
    # for the account are refused without checking the password (SMTP 421
    # 4.7.0, IMAP NO [UNAVAILABLE]) until the window slides past; 0 turns
    # one off; trusted_networks skip them.
    auth_failures_per_minute_per_ip: int = 10
    auth_failures_per_day_per_ip: int = 100
    auth_failures_per_minute_per_account: int = 10
    auth_failures_per_day_per_account: int = 200
    shutdown_grace: float = 10.0  # seconds work in flight may take to finish on SIGTERM


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Certificate and key in PEM.  Both None: a self-signed certificate for
    ``hostname`` is made on first start and kept in ``data_dir/tls/``."""

    cert_file: Path | None = None
    key_file: Path | None = None


LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The ``[log]`` table: output format and level (one of ``LOG_LEVELS``)."""

    format: str = "auto"  # "json", "console", or "auto" (console on a TTY, else JSON)
    level: str = "info"


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The ``[store]`` table: which backend, LMDB sizing, the PostgreSQL database."""

    #: "lmdb" (embedded, the default: one machine, no services) or
    #: "postgresql" (``dsn``; several nodes on one database, issue #17).
    backend: str = "lmdb"

    map_size: int = 1 << 34  # LMDB map size, octets (sparse on disk)
    #: Fraction of the store's capacity (``map_size``, or less when the file
    #: system has less room) above which new mail is refused (452 4.3.1 /
    #: NO [OVERQUOTA]) so that flag changes, EXPUNGE and deletes still fit.
    new_mail_limit: float = 0.95
    #: Fill ratios at which a warning is logged, once per crossing (``store/headroom.py``).
    fill_warning_levels: tuple[float, ...] = (0.8, 0.9)
    #: The PostgreSQL database of the scale-out store (issue #17), as
    #: ``postgresql://user:password@host:port/db`` (case kept): the daemon's
    #: with ``backend = "postgresql"``, and ``mailserver db migrate|status``'s.
    dsn: str = ""
    #: Connections of a node's group-commit writer (``store/pg/writer.py``).
    writer_connections: int = 4


#: The ``[store] backend`` values.
STORE_BACKENDS = ("lmdb", "postgresql")


@dataclass(frozen=True, slots=True)
class BlobSettings:
    """The ``[blobs]`` table: where the PostgreSQL store keeps message octets.

    ``backend``: "store" (in the database) or "s3" (an S3-compatible object
    store: ``endpoint`` such as ``https://s3.example:9000``, empty for AWS;
    ``bucket``; ``region``; ``access_key``/``secret_key``).  The LMDB store
    always keeps them itself."""

    backend: str = "store"
    endpoint: str = ""
    bucket: str = ""
    region: str = "us-east-1"
    access_key: str = ""
    secret_key: str = ""


#: The ``[blobs] backend`` values.
BLOB_BACKENDS = ("store", "s3")


DKIM_ALGORITHMS = ("rsa", "ed25519")


@dataclass(frozen=True, slots=True)
class DkimSettings:
    """DKIM signing (RFC 6376).  ``selector``: what ``mailserver dkim keygen`` uses
    when none is given.  ``algorithms``: which of the stored keys sign outbound
    mail ("rsa", and "ed25519" for RFC 8463 double signatures)."""

    selector: str = "mail"
    algorithms: tuple[str, ...] = ("rsa",)


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Password checking (``auth/``).  argon2id parameters for new hashes and
    for rehashing on login (``auth.passwords.Argon2Params``: why these
    defaults); the hashing pool; the verified-credential cache (``auth.cache``)."""

    argon2_memory: int = 65536  # m, KiB (64 MiB)
    argon2_time_cost: int = 3  # t, passes
    argon2_parallelism: int = 1  # p, lanes: 1 = one core per verification
    #: Threads hashing at once in each serving process; 0: one per core but one.
    hash_threads: int = 0
    #: Seconds a verified login is remembered (0: no cache); entries kept at most.
    cache_ttl: float = 3600.0
    cache_size: int = 10000
    #: PBKDF2 iterations of new SCRAM-SHA-256 keys (RFC 7677 §4: at least 4096).
    scram_iterations: int = 4096


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    """The ``[analytics]`` table: mail-flow events, windows and their files
    (``analytics/``).  Days are whole UTC days of files kept."""

    enabled: bool = True
    retention_days: int = 30  # per-minute aggregates
    raw_days: int = 7  # raw events, for /api/v1/events


@dataclass(frozen=True, slots=True)
class JunkSettings:
    """The ``[junk]`` table (``junk/filter.py``): ``enabled`` (score mail of
    the smtp listeners), ``threshold`` (a score at or above it is junk; 0.8
    was chosen on the SpamAssassin corpus, bench/RESULTS-junk.md),
    ``min_own_samples`` (trained messages before an account's own model
    counts; until then the global model decides).

    A comparison of two thresholds on live traffic (A/B): with
    ``candidate_threshold`` > 0, a stable ``candidate_share`` of the accounts
    (by a hash of the address) is scored with it instead; accounts with a
    threshold of their own stay out.  Both thresholds' verdicts on every
    scored message, and the users' corrections, are counted by arm
    (``mailserver_junk_*`` metrics).  ``drift_factor``: the log warns
    (``junk_drift``) when today's corrections per scored message reach this
    multiple of the last 7 days' rate, once ``drift_min_corrections`` were
    made today."""

    enabled: bool = True
    threshold: float = 0.8
    min_own_samples: int = 50
    candidate_threshold: float = 0.0
    candidate_share: float = 0.0
    drift_factor: float = 2.0
    drift_min_corrections: int = 20


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; ``loading.load`` builds it from TOML (defaults here)."""

    hostname: str = "localhost"
    data_dir: Path = Path("var")
    domains: tuple[str, ...] = ()  # created at start if missing
    listeners: tuple[Listener, ...] = ()
    limits: Limits = field(default_factory=Limits)
    tls: TlsSettings = field(default_factory=TlsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    blobs: BlobSettings = field(default_factory=BlobSettings)
    demo_account: bool = False  # create demo domain/account on first start and print them
    #: Serving processes sharing the store (daemon.py): 1 = a single process;
    #: N > 1 = a supervisor and N workers; 0 = one worker per CPU core.
    workers: int = 1
    # Outbound queue; its hostname is ``hostname`` and its resolver the [dns] table.
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    dkim: DkimSettings = field(default_factory=DkimSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    #: Sender authentication (SPF, DKIM, DMARC, ARC), loops, postmaster.
    checks: ChecksSettings = field(default_factory=ChecksSettings)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)
    junk: JunkSettings = field(default_factory=JunkSettings)
    source: Path | None = None  # the file it was read from, for messages


#: Most worker processes ``workers`` may ask for.
MAX_WORKERS = 64


def worker_count(config: Config) -> int:
    """How many serving processes ``config`` asks for (``workers = 0``: one per core)."""
    return config.workers or max(1, len(os.sched_getaffinity(0)))

