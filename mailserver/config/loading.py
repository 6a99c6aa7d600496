"""Loading the configuration: TOML (stdlib ``tomllib``) → the ``schema`` dataclasses.

Unknown keys and bad values raise ``ConfigError`` naming the file, the key and
the problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mailserver.config.checks import parse_checks
from mailserver.config.outbound import SMART_HOST_TLS, OutboundSettings, SmartHost
from mailserver.config.schema import (
    BLOB_BACKENDS,
    DKIM_ALGORITHMS,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_WORKERS,
    PROTOCOLS,
    STORE_BACKENDS,
    TLS_MODES,
    AnalyticsSettings,
    AuthSettings,
    BlobSettings,
    Config,
    DkimSettings,
    JunkSettings,
    Limits,
    Listener,
    LogSettings,
    StoreSettings,
    TlsSettings,
)
from mailserver.errors import ConfigError

# ---------------------------------------------------------------------------
# The loader: TOML tables and keys -> the schema's dataclasses.
#
# Relative paths (``data_dir``, ``tls.cert_file``, ``tls.key_file``) resolve
# against the directory of the config file, never the working directory: a
# daemon started by systemd has ``/`` as its cwd, and a file should mean the
# same thing wherever it is read from.
# ---------------------------------------------------------------------------

#: The built-in development listeners: loopback, unprivileged ports.  The same
#: values are written out, commented, in ``conf/mailserver.toml`` (a unit test
#: keeps the two equal).
DEV_LISTENERS: tuple[Listener, ...] = (
    Listener(name="smtp", protocol="smtp", address="127.0.0.1", port=2525, tls="starttls"),
    Listener(name="submission", protocol="submission", address="127.0.0.1", port=2587,
             tls="starttls"),
    Listener(name="submissions", protocol="submission", address="127.0.0.1", port=2465,
             tls="implicit"),
    Listener(name="imap", protocol="imap", address="127.0.0.1", port=1143, tls="starttls"),
    Listener(name="imaps", protocol="imap", address="127.0.0.1", port=1993, tls="implicit"),
    Listener(name="http", protocol="http", address="127.0.0.1", port=2880, tls="none"),
)


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LISTENER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def builtin(data_dir: Path | None = None) -> Config:
    """The configuration used when no file is found: the development set-up.

    Same values as the shipped ``conf/mailserver.toml``; data goes to
    ``data_dir`` or, by default, ``./var`` of the current directory (made
    absolute now, so a later ``chdir`` does not move it).
    """
    return Config(
        hostname="localhost",
        outbound=OutboundSettings(hostname="localhost"),
        data_dir=(data_dir or Path("var")).absolute(),
        domains=("example.test",),
        listeners=DEV_LISTENERS,
        demo_account=True,
    )


def load(path: Path) -> Config:
    """Read and validate the TOML file at ``path`` (TOML 1.0 via ``tomllib``).

    Raises ``ConfigError`` whose message starts with the file name, for an
    unreadable file, invalid TOML, an unknown key or a bad value.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse(data, Path(path))


def parse(data: Mapping[str, Any], source: Path | None) -> Config:
    """Validate a decoded TOML document and build the ``Config``.

    ``source`` names the file in error messages and anchors relative paths
    (``None``: messages say ``<config>`` and relative paths stay relative to
    the working directory).  Errors read ``FILE: dotted.key: problem``.
    """
    v = _Validator(source)
    v.only(data, "", _TOP_KEYS)
    base = Path(os.path.abspath(source.parent)) if source is not None else None

    kwargs: dict[str, Any] = {"source": source}
    if "hostname" in data:
        kwargs["hostname"] = v.domain(data["hostname"], "hostname")
    if "data_dir" in data:
        kwargs["data_dir"] = v.path(data["data_dir"], "data_dir", base)
    if "domains" in data:
        kwargs["domains"] = v.domains(data["domains"], "domains")
    if "demo_account" in data:
        kwargs["demo_account"] = v.boolean(data["demo_account"], "demo_account")
    if "workers" in data:
        workers = v.integer(data["workers"], "workers")
        if not 0 <= workers <= MAX_WORKERS:
            raise v.fail("workers", f"must be 0 (one per core) to {MAX_WORKERS}")
        kwargs["workers"] = workers
    if "listeners" in data:
        kwargs["listeners"] = v.listeners(data["listeners"])
    if "limits" in data:
        kwargs["limits"] = v.section(data["limits"], "limits", Limits, _LIMIT_CHECKS)
    if "tls" in data:
        kwargs["tls"] = v.tls(data["tls"], base)
    if "log" in data:
        kwargs["log"] = v.section(data["log"], "log", LogSettings, _LOG_CHECKS)
    if "store" in data:
        kwargs["store"] = v.section(data["store"], "store", StoreSettings, _STORE_CHECKS)
    if "blobs" in data:
        kwargs["blobs"] = v.section(data["blobs"], "blobs", BlobSettings, _BLOB_CHECKS)
    if "dkim" in data:
        kwargs["dkim"] = v.dkim(data["dkim"])
    if "auth" in data:
        auth = v.section(data["auth"], "auth", AuthSettings, _AUTH_CHECKS)
        if auth.argon2_memory < 8 * auth.argon2_parallelism:
            raise v.fail("auth.argon2_memory", "must be at least 8 KiB per lane "
                         "(RFC 9106 §3.1)")
        kwargs["auth"] = auth
    if "analytics" in data:
        kwargs["analytics"] = v.section(data["analytics"], "analytics", AnalyticsSettings,
                                        _ANALYTICS_CHECKS)
    if "checks" in data:
        kwargs["checks"] = parse_checks(data["checks"], v, v.domain)
    if "junk" in data:
        kwargs["junk"] = v.section(data["junk"], "junk", JunkSettings, _JUNK_CHECKS)
    # The queue greets with our hostname (RFC 5321 §4.1.1.1 EHLO) and asks the
    # [dns] resolver: both live in OutboundSettings, filled in here.
    outbound = v.outbound(data.get("outbound", {}))
    changes: dict[str, Any] = {"hostname": kwargs.get("hostname", "localhost")}
    changes.update(v.dns(data.get("dns", {})))
    kwargs["outbound"] = v.settings("outbound", outbound, changes)
    config = Config(**kwargs)
    _check_backend(config, v)
    return config


#: What the daemon does not yet do on the PostgreSQL store (issue #17): said at
#: load time rather than found missing at run time.
def _check_backend(config: Config, v: _Validator) -> None:
    store, blobs = config.store, config.blobs
    if store.backend != "postgresql":
        if blobs.backend != "store":
            raise v.fail("blobs.backend", '"s3" needs [store] backend = "postgresql"')
        return
    if not store.dsn:
        raise v.fail("store.dsn", 'backend "postgresql" needs a dsn (postgresql://...)')
    if blobs.backend == "s3" and not blobs.bucket:
        raise v.fail("blobs.bucket", 'backend "s3" needs a bucket')
    for i, listener in enumerate(config.listeners):
        if listener.protocol == "imap":
            raise v.fail(f"listeners[{i}].protocol", "imap does not run on the PostgreSQL "
                         "store yet (issue #17): smtp, submission and http (/metrics) do")
    # Each node keeps its own verdict and TLS logs: reports sent from them
    # would be partial and repeated, one per node.
    if config.outbound.tlsrpt_send:
        raise v.fail("outbound.tlsrpt_send", "not on the PostgreSQL store yet (issue #17)")
    if config.checks.dmarc_report_send:
        raise v.fail("checks.dmarc_report_send", "not on the PostgreSQL store yet (issue #17)")
    if config.demo_account:
        raise v.fail("demo_account", "not on the PostgreSQL store yet (issue #17)")
    if config.workers != 1:
        raise v.fail("workers", "the PostgreSQL store runs one process per node for now "
                     "(run several nodes instead): set workers = 1")


def with_data_dir(config: Config, data_dir: Path) -> Config:
    """``config`` with ``data_dir`` replaced (the ``--data-dir`` option), made absolute."""
    return dataclasses.replace(config, data_dir=Path(os.path.abspath(data_dir)))


# -- validation helpers ------------------------------------------------------------

_TOP_KEYS = ("hostname", "data_dir", "domains", "demo_account", "workers", "listeners", "limits",
             "tls", "log", "store", "blobs", "outbound", "dns", "dkim", "auth", "checks", "analytics",
             "junk")
_OUTBOUND_KEYS = ("smtp_port", "connect_timeout", "command_timeout", "backoff", "jitter",
                  "max_age", "max_connections", "max_connections_per_domain", "require_tls",
                  "delay_warning", "reuse_idle", "smart_host", "ca_file",
                  "mta_sts", "mta_sts_port", "mta_sts_ca_file", "tlsrpt", "tlsrpt_send",
                  "dane", "report_from")
_OUTBOUND_CHECKS: dict[str, Check] = {
    "connect_timeout": lambda x: None if x > 0 else "must be more than 0",
    "command_timeout": lambda x: None if x > 0 else "must be more than 0",
    "jitter": lambda x: None if 0 <= x < 1 else "must be at least 0 and less than 1",
    "max_age": lambda x: None if x > 0 else "must be more than 0",
    "max_connections": lambda x: None if x >= 1 else "must be at least 1",
    "max_connections_per_domain": lambda x: None if x >= 1 else "must be at least 1",
    "delay_warning": lambda x: None if x >= 0 else "must be at least 0 (0: never)",
    "reuse_idle": lambda x: None if x >= 0 else "must be at least 0 (0: no reuse)",
}

Check = Callable[[Any], str | None]  # returns the problem, or None when fine

#: String settings whose case matters (credentials, a DSN's password, a
#: bucket's or endpoint's path); every other string is compared lower-case.
_CASE_KEPT = frozenset({"dsn", "endpoint", "bucket", "access_key", "secret_key"})


def _at_least(minimum: float, why: str = "") -> Check:
    def check(value: Any) -> str | None:
        if value < minimum:
            return f"must be at least {minimum:g}{why}"
        return None

    return check


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        if value.lower() not in choices:
            return "must be one of " + ", ".join(repr(c) for c in choices)
        return None

    return check


#: Lower bounds worth enforcing: below them a conforming peer cannot work.
_ANALYTICS_CHECKS: dict[str, Check] = {
    "retention_days": lambda x: None if x >= 1 else "must be at least 1",
    "raw_days": lambda x: None if x >= 1 else "must be at least 1",
}
_JUNK_CHECKS: dict[str, Check] = {
    "threshold": lambda x: None if 0 < x <= 1 else "must be more than 0 and at most 1",
    "candidate_threshold": lambda x: None if 0 <= x <= 1 else "must be 0 (off) to 1",
    "candidate_share": lambda x: None if 0 <= x <= 1 else "must be a fraction from 0 to 1",
    "drift_factor": lambda x: None if x > 1 else "must be more than 1",
    "drift_min_corrections": lambda x: None if x >= 1 else "must be at least 1",
    "min_own_samples": lambda x: None if x >= 0 else "must be at least 0",
}
_LIMIT_CHECKS: dict[str, Check] = {
    "max_message_size": _at_least(1024),
    "max_recipients": _at_least(100, " (RFC 5321 §4.5.3.1.8)"),
    "smtp_max_line_length": _at_least(1000, " (RFC 5321 §4.5.3.1.6)"),
    "smtp_max_data_line_length": _at_least(1000, " (RFC 5321 §4.5.3.1.6)"),
    "smtp_idle_timeout": _at_least(1),
    "smtp_max_unknown_commands": _at_least(1),
    "imap_max_line_length": _at_least(1000),
    "imap_max_literal_size": _at_least(1024),
    "imap_idle_timeout": _at_least(1800, " (RFC 3501 §5.4 autologout is at least 30 minutes)"),
    "imap_line_timeout": _at_least(1),
    "imap_max_nesting": lambda x: None if 8 <= x <= 256 else "must be from 8 to 256",
    "imap_literal_timeout": _at_least(1),
    "max_connections": _at_least(1),
    "max_connections_per_ip": _at_least(1),
    "connections_per_minute_per_ip": _at_least(0),
    "connections_per_minute_per_network": _at_least(0),
    "messages_per_minute_per_ip": _at_least(0),
    "messages_per_day_per_ip": _at_least(0),
    "recipients_per_minute_per_ip": _at_least(0),
    "recipients_per_day_per_ip": _at_least(0),
    "account_messages_per_day": _at_least(0),
    "first_time_recipients_per_day": _at_least(0),
    "max_auth_failures": _at_least(1),
    "shutdown_grace": _at_least(0),
    "auth_failure_delay": _at_least(0),
    "auth_failure_delay_max": _at_least(0),
    "auth_failures_per_minute_per_ip": _at_least(0),
    "auth_failures_per_day_per_ip": _at_least(0),
    "auth_failures_per_minute_per_account": _at_least(0),
    "auth_failures_per_day_per_account": _at_least(0),
}
_LOG_CHECKS: dict[str, Check] = {"format": _one_of(LOG_FORMATS), "level": _one_of(LOG_LEVELS)}
_BLOB_CHECKS: dict[str, Check] = {
    "backend": lambda x: None if x in BLOB_BACKENDS else f"must be one of {BLOB_BACKENDS}",
}
_STORE_CHECKS: dict[str, Check] = {
    "backend": lambda x: None if x in STORE_BACKENDS else f"must be one of {STORE_BACKENDS}",
    "writer_connections": lambda x: None if 1 <= x <= 64 else "must be 1 to 64",
    "map_size": _at_least(1 << 20),
    "new_mail_limit": lambda x: None if 0 < x <= 1 else "must be more than 0 and at most 1",
    "fill_warning_levels": lambda xs: None if all(0 < x <= 1 for x in xs)
    else "each must be more than 0 and at most 1",
}

#: RFC 9106 §3.1: p in 1..2^24-1, m at least 8p KiB, t at least 1.  Below
#: OWASP's floor (m = 19 MiB with t = 2) nothing stops an administrator who
#: wants it; these bounds only keep argon2 from refusing the values.
_AUTH_CHECKS: dict[str, Check] = {
    "argon2_memory": _at_least(64, " KiB"),
    "argon2_time_cost": _at_least(1),
    "argon2_parallelism": lambda x: None if 1 <= x <= 64 else "must be 1 to 64",
    "hash_threads": lambda x: None if 0 <= x <= 1024 else "must be 0 (one per core but one) "
                                                           "to 1024",
    "cache_ttl": _at_least(0),
    "cache_size": _at_least(0),
    "scram_iterations": lambda x: None if 4096 <= x <= 10_000_000 else (
        "must be 4096 (RFC 7677 §4) to 10000000"),
}


class _Validator:
    """Type and value checks that raise ``ConfigError`` naming file and key."""

    def __init__(self, source: Path | None) -> None:
        self.where = str(source) if source is not None else "<config>"
        self.base = Path(os.path.abspath(source.parent)) if source is not None else None

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: {key}: {problem}")

    def only(self, table: Any, prefix: str, allowed: tuple[str, ...] | list[str]) -> None:
        if not isinstance(table, Mapping):
            raise self.fail(prefix.rstrip("."), f"must be a table, not {_kind(table)}")
        for key in table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise self.fail(prefix + key, "unknown key" + suffix)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {_kind(value)}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {_kind(value)}")
        if not value.strip():
            raise self.fail(key, "must not be empty")
        return value

    def integer(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, not {_kind(value)}")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, not {_kind(value)}")
        return float(value)

    def path(self, value: Any, key: str, base: Path | None) -> Path:
        p = Path(self.string(value, key))
        if base is not None and not p.is_absolute():
            p = Path(os.path.abspath(base / p))
        return p

    def domain(self, value: Any, key: str) -> str:
        """A host or domain name (RFC 1035 §2.3.1 letters, digits, hyphen; IDNA allowed)."""
        name = self.string(value, key).strip().rstrip(".")
        try:
            ascii_name = name.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise self.fail(key, f"{name!r} is not a valid domain name") from None
        labels = ascii_name.split(".")
        if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
            raise self.fail(key, f"{name!r} is not a valid domain name")
        return ascii_name

    def domains(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list of domain names, not {_kind(value)}")
        out: list[str] = []
        for i, item in enumerate(value):
            name = self.domain(item, f"{key}[{i}]")
            if name in out:
                raise self.fail(f"{key}[{i}]", f"{name!r} is listed twice")
            out.append(name)
        return tuple(out)

    def listeners(self, value: Any) -> tuple[Listener, ...]:
        if not isinstance(value, Mapping):
            raise self.fail("listeners", f"must be a table of tables, not {_kind(value)}")
        out: list[Listener] = []
        bound: dict[tuple[str, int], str] = {}
        for name, table in value.items():
            key = f"listeners.{name}"
            if not _LISTENER_NAME.match(name):
                raise self.fail(key, "a listener name uses only letters, digits, '_' and '-'")
            self.only(table, key + ".", ("protocol", "address", "port", "tls"))
            if "protocol" not in table:
                raise self.fail(key + ".protocol", "missing (one of "
                                + ", ".join(repr(p) for p in PROTOCOLS) + ")")
            protocol = self.string(table["protocol"], key + ".protocol")
            if protocol not in PROTOCOLS:
                raise self.fail(key + ".protocol", "must be one of "
                                + ", ".join(repr(p) for p in PROTOCOLS))
            address = self.string(table.get("address", "127.0.0.1"), key + ".address")
            try:
                address = str(ipaddress.ip_address(address))
            except ValueError:
                raise self.fail(key + ".address",
                                f"{address!r} is not an IPv4 or IPv6 address") from None
            port = self.integer(table.get("port", 0), key + ".port")
            if not 0 <= port <= 65535:
                raise self.fail(key + ".port", "must be between 0 and 65535")
            tls = self.string(table.get("tls", "none"), key + ".tls")
            if tls not in TLS_MODES:
                raise self.fail(key + ".tls", "must be one of "
                                + ", ".join(repr(m) for m in TLS_MODES))
            if protocol == "http" and tls == "starttls":
                # HTTP has no STARTTLS (RFC 2817's Upgrade is not used by browsers).
                raise self.fail(key + ".tls", "an http listener takes 'none' or 'implicit'")
            if port != 0:
                if (address, port) in bound:
                    raise self.fail(key + ".port", f"{address} port {port} is also used by "
                                    f"listeners.{bound[(address, port)]}")
                bound[(address, port)] = name
            out.append(Listener(name=name, protocol=protocol, address=address, port=port,
                                tls=tls))
        return tuple(out)

    def section(self, table: Any, name: str, cls: type, checks: Mapping[str, Check]) -> Any:
        """A flat table whose keys are the fields of ``cls``; types follow the defaults."""
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        self.only(table, name + ".", list(defaults))
        kwargs: dict[str, Any] = {}
        for key, value in table.items():
            dotted = f"{name}.{key}"
            default = defaults[key]
            if isinstance(default, bool):
                value = self.boolean(value, dotted)
            elif isinstance(default, int):
                value = self.integer(value, dotted)
            elif isinstance(default, float):
                value = self.number(value, dotted)
            elif isinstance(default, tuple) and key == "trusted_networks":  # CIDRs
                if not isinstance(value, list):
                    raise self.fail(dotted, f"must be a list of networks, not {_kind(value)}")
                nets = [self.string(v, f"{dotted}[{i}]") for i, v in enumerate(value)]
                for i, net in enumerate(nets):
                    try:
                        ipaddress.ip_network(net, strict=False)
                    except ValueError:
                        raise self.fail(f"{dotted}[{i}]", "must be a network (CIDR)") from None
                kwargs[key] = tuple(nets)
                continue
            elif isinstance(default, tuple):  # a list of numbers
                if not isinstance(value, list):
                    raise self.fail(dotted, "must be a list of numbers")
                value = tuple(self.number(v, f"{dotted}[{i}]") for i, v in enumerate(value))
            elif default == "" and value == "":
                value = ""  # an optional string left empty: the documented default
            else:
                value = self.string(value, dotted)
            check = checks.get(key)
            problem = check(value) if check else None
            if problem:
                raise self.fail(dotted, problem)
            keep_case = key in _CASE_KEPT
            kwargs[key] = value.lower() if isinstance(value, str) and not keep_case else value
        return cls(**kwargs)

    def tls(self, table: Any, base: Path | None) -> TlsSettings:
        self.only(table, "tls.", ("cert_file", "key_file"))
        cert = self.path(table["cert_file"], "tls.cert_file", base) if "cert_file" in table \
            else None
        key = self.path(table["key_file"], "tls.key_file", base) if "key_file" in table else None
        if (cert is None) != (key is None):
            missing = "tls.key_file" if key is None else "tls.cert_file"
            raise self.fail(missing, "missing: cert_file and key_file go together")
        return TlsSettings(cert_file=cert, key_file=key)


    # -- outbound, dns, dkim ---------------------------------------------------------

    def port(self, value: Any, key: str) -> int:
        port = self.integer(value, key)
        if not 1 <= port <= 65535:
            raise self.fail(key, "must be between 1 and 65535")
        return port

    def outbound(self, table: Any) -> dict[str, Any]:
        """The [outbound] table as OutboundSettings keyword arguments."""
        self.only(table, "outbound.", _OUTBOUND_KEYS)
        out: dict[str, Any] = {}
        for key, value in table.items():
            dotted = f"outbound.{key}"
            if key in ("smtp_port", "mta_sts_port"):
                out[key] = self.port(value, dotted)
            elif key in ("mta_sts", "tlsrpt", "tlsrpt_send", "dane"):
                out[key] = self.boolean(value, dotted)
                continue
            elif key in ("max_connections", "max_connections_per_domain"):
                out[key] = self.integer(value, dotted)
            elif key == "backoff":
                if not isinstance(value, list) or not value:
                    raise self.fail(dotted, "must be a non-empty list of seconds")
                delays = tuple(self.number(d, f"{dotted}[{i}]") for i, d in enumerate(value))
                for i, d in enumerate(delays):
                    if d <= 0:
                        raise self.fail(f"{dotted}[{i}]", "must be more than 0")
                out[key] = delays
                continue
            elif key == "require_tls":
                out[key] = frozenset(self.domains(value, dotted))
                continue
            elif key == "smart_host":
                out[key] = self.smart_host(value)
                continue
            elif key == "report_from":
                if not isinstance(value, str):
                    raise self.fail(dotted, "must be an address (user@domain) or \"\"")
                address = value.strip()
                local, at, host = address.rpartition("@")
                if address and not (at and local and host and " " not in address):
                    raise self.fail(dotted, "must be an address (user@domain) or \"\"")
                out[key] = address
                continue
            elif key in ("ca_file", "mta_sts_ca_file"):
                if not isinstance(value, str) or not value:
                    raise self.fail(dotted, "must be the path of a PEM file")
                out[key] = value
                continue
            else:
                out[key] = self.number(value, dotted)
            problem = _OUTBOUND_CHECKS.get(key, lambda _: None)(out[key])
            if problem:
                raise self.fail(dotted, problem)
        if out.get("delay_warning") == 0:
            out["delay_warning"] = None  # TOML has no null: 0 means never
        return out

    def smart_host(self, table: Any) -> SmartHost:
        key = "outbound.smart_host"
        self.only(table, key + ".", ("host", "port", "tls", "username", "password", "ca_file"))
        if "host" not in table:
            raise self.fail(key + ".host", "missing")
        host = self.domain(table["host"], key + ".host") if not _is_ip(table["host"]) \
            else str(table["host"])
        tls = self.string(table.get("tls", "starttls"), key + ".tls").lower()
        if tls not in SMART_HOST_TLS:
            raise self.fail(key + ".tls", "must be one of "
                            + ", ".join(repr(m) for m in SMART_HOST_TLS))
        username = self.string(table["username"], key + ".username") \
            if "username" in table else None
        password = self.string(table["password"], key + ".password") \
            if "password" in table else None
        if (username is None) != (password is None):
            missing = key + (".password" if password is None else ".username")
            raise self.fail(missing, "missing: username and password go together")
        ca_file = str(self.path(table["ca_file"], key + ".ca_file", self.base)) \
            if "ca_file" in table else None
        return SmartHost(host=host, port=self.port(table.get("port", 587), key + ".port"),
                         tls=tls, username=username, password=password, ca_file=ca_file)

    def dns(self, table: Any) -> dict[str, Any]:
        """The [dns] table as OutboundSettings keyword arguments."""
        self.only(table, "dns.", ("resolver_address", "resolver_port", "timeout"))
        out: dict[str, Any] = {}
        if "resolver_address" in table:
            address = self.string(table["resolver_address"], "dns.resolver_address")
            if not _is_ip(address):
                raise self.fail("dns.resolver_address",
                                f"{address!r} is not an IPv4 or IPv6 address")
            out["resolver_address"] = str(ipaddress.ip_address(address))
        if "resolver_port" in table:
            out["resolver_port"] = self.port(table["resolver_port"], "dns.resolver_port")
        if "timeout" in table:
            timeout = self.number(table["timeout"], "dns.timeout")
            if timeout <= 0:
                raise self.fail("dns.timeout", "must be more than 0")
            out["dns_timeout"] = timeout
        return out

    def dkim(self, table: Any) -> DkimSettings:
        self.only(table, "dkim.", ("selector", "algorithms"))
        kwargs: dict[str, Any] = {}
        if "selector" in table:
            selector = self.string(table["selector"], "dkim.selector")
            if not all(_LABEL.match(label) for label in selector.lower().split(".")):
                raise self.fail("dkim.selector", f"{selector!r} is not a valid selector "
                                "(RFC 6376 §3.1: dot-separated DNS labels)")
            kwargs["selector"] = selector.lower()
        if "algorithms" in table:
            value = table["algorithms"]
            if not isinstance(value, list) or not value:
                raise self.fail("dkim.algorithms", "must be a non-empty list")
            algos: list[str] = []
            for i, item in enumerate(value):
                name = self.string(item, f"dkim.algorithms[{i}]").lower()
                if name not in DKIM_ALGORITHMS:
                    raise self.fail(f"dkim.algorithms[{i}]", "must be one of "
                                    + ", ".join(repr(a) for a in DKIM_ALGORITHMS))
                if name not in algos:
                    algos.append(name)
            kwargs["algorithms"] = tuple(algos)
        return DkimSettings(**kwargs)

    def settings(self, name: str, kwargs: dict[str, Any], changes: dict[str, Any]) -> Any:
        try:
            return OutboundSettings(**{**kwargs, **changes})
        except ValueError as exc:  # cross-field checks of OutboundSettings
            raise self.fail(name, str(exc)) from None


def _is_ip(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _kind(value: Any) -> str:
    """The TOML name of a decoded value's type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return f"a {type(value).__name__}"
