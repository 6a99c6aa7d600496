"""Outbound delivery settings: the ``[outbound]`` part of the configuration schema.

Frozen; ``config.loading`` loads them, the queue reads them (imports point queue ->
config; ``mailserver.queue.settings`` re-exports these names).

Durations are seconds.  Defaults follow RFC 5321 §4.5.4.1 (retry no sooner
than every 30 minutes after the first tries; give up after 4-5 days).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Default retry delays (seconds) after the 1st, 2nd, ... failed attempt; the
#: last one repeats until ``max_age``.
DEFAULT_BACKOFF: tuple[float, ...] = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)

SMART_HOST_TLS = ("none", "starttls", "implicit")


@dataclass(frozen=True, slots=True)
class SmartHost:
    """A relay that takes all outbound mail (instead of MX delivery).

    ``tls``: "none", "starttls" (required) or "implicit" (RFC 8314).
    ``username``/``password``: AUTH (RFC 4954), only sent over TLS unless ``tls`` is "none".
    ``ca_file``: PEM file of the certificates to trust for the smart host's TLS
    certificate instead of the system's trust store (a private relay's own CA).
    """

    host: str
    port: int = 587
    tls: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    """Everything the queue needs to deliver.

    ``resolver_address``/``resolver_port``: a nameserver to ask instead of the
    system's (tests point this at their own DNS server).  ``smtp_port``: the
    port of remote MX hosts (25 in production).  ``require_tls``: domains
    (lower-case) whose mail must go over STARTTLS; others use it when offered.
    ``delay_warning``: send a "delayed" DSN once a message has waited that long
    (None: never).  ``jitter``: fraction of each backoff delay randomised.
    ``reuse_idle``: seconds a session that finished a transaction is kept open
    for the next message to the same destination (RFC 5321 §4.5.4.1 favours
    several messages per connection); 0 closes each session after its message.
    ``max_connections``: sessions in use at once, all destinations.
    ``max_connections_per_domain``: sessions open at once per route — per
    recipient domain when delivering by MX, but per smart host when there is
    one (every domain shares it, so the relay sees at most this many
    connections from us); sessions in use, idle for reuse, or saying QUIT all
    count.  ``command_timeout``: seconds for each reply (RFC 5321 §4.5.3.2:
    5 minutes); twice that for the reply to the end of the message, transfer
    included (RFC 5321 §4.5.3.2.6: 10 minutes).
    ``ca_file``: PEM trust anchors for verifying MX hosts' certificates where a
    message requires it (REQUIRETLS, RFC 8689); None: the system's store.
    ``mta_sts``: look up and apply recipient domains' MTA-STS policies (RFC
    8461; ``queue/stspolicy.py``, cached under ``<data_dir>/mta-sts``).
    ``mta_sts_port``/``mta_sts_ca_file``: test and operations knobs: the HTTPS
    port policies are fetched from (443 per RFC 8461 §3.3) and PEM trust
    anchors for that HTTPS server instead of the system's store.
    ``tlsrpt``: record each outbound session's TLS outcome per recipient
    domain and day for TLS-RPT reports (RFC 8460; ``mailserver tlsrpt report``,
    under ``<data_dir>/tlsrpt``).  ``tlsrpt_send``: after each UTC day, send
    its reports to the domains' ``rua`` (RFC 8460 §3: mail or HTTPS POST,
    ``queue/reporting.py``); needs ``tlsrpt``.  ``report_from``: the From and
    reverse-path of DMARC and TLS-RPT report mail ("": ``postmaster@`` the first
    configured domain, else the host name; the queue DKIM-signs it with that
    domain's keys).
    ``dane``: DANE for SMTP (RFC 7672, ``queue/dane.py``): TLSA records at
    ``_25._tcp.<mx>`` that the resolver marks validated (AD bit) decide how an
    MX host is authenticated, before MTA-STS (RFC 8461 §2).  Only meaningful
    with a validating resolver you trust (a local one) as ``resolver_address``.
    """

    hostname: str = "localhost"
    resolver_address: str | None = None
    resolver_port: int = 53
    smtp_port: int = 25
    connect_timeout: float = 30.0  # RFC 5321 §4.5.3.2.1 wants 5 min for the greeting; we try others
    command_timeout: float = 300.0  # RFC 5321 §4.5.3.2: 5 min per command, 10 for the DATA end
    backoff: tuple[float, ...] = DEFAULT_BACKOFF
    jitter: float = 0.1
    max_age: float = 5 * 24 * 3600.0
    max_connections: int = 20
    max_connections_per_domain: int = 3
    require_tls: frozenset[str] = frozenset()
    smart_host: SmartHost | None = None
    delay_warning: float | None = 4 * 3600.0
    dns_timeout: float = 10.0
    reuse_idle: float = 5.0
    ca_file: str | None = None
    mta_sts: bool = False
    mta_sts_port: int = 443
    mta_sts_ca_file: str | None = None
    tlsrpt: bool = False
    tlsrpt_send: bool = False
    dane: bool = False
    report_from: str = ""

    def __post_init__(self) -> None:
        if not self.backoff or any(d <= 0 for d in self.backoff):
            raise ValueError("backoff needs at least one positive delay")
        if self.max_connections < 1 or self.max_connections_per_domain < 1:
            raise ValueError("connection limits must be at least 1")
        if self.command_timeout <= 0:
            raise ValueError("command_timeout must be more than 0")
        if self.reuse_idle < 0:
            raise ValueError("reuse_idle must not be negative")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")
        if self.tlsrpt_send and not self.tlsrpt:
            raise ValueError("tlsrpt_send needs tlsrpt = true (nothing is recorded to send)")
        if self.smart_host is not None and self.smart_host.tls not in SMART_HOST_TLS:
            raise ValueError(f"smart host tls must be one of {SMART_HOST_TLS}")
