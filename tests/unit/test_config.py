"""The TOML loader: valid files, defaults, and error messages naming file and key."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from pathlib import Path

import pytest

from mailserver.config import (
    AnalyticsSettings,
    AuthSettings,
    BlobSettings,
    ChecksSettings,
    Config,
    ConfigError,
    DkimSettings,
    JunkSettings,
    Limits,
    Listener,
    LogSettings,
    StoreSettings,
    TlsSettings,
    builtin,
    load,
    parse,
    with_data_dir,
)
from mailserver.queue.settings import OutboundSettings, SmartHost

ROOT = Path(__file__).resolve().parents[2]
DEV_CONF = ROOT / "conf" / "mailserver.toml"
PROD_CONF = ROOT / "conf" / "mailserver.production.toml"

VALID = """\
hostname = "Mail.Example.ORG."
data_dir = "data"
domains = ["example.org", "bücher.example"]
demo_account = false

[listeners.mx]
protocol = "smtp"
address = "0.0.0.0"
port = 25
tls = "starttls"

[listeners.mx6]
protocol = "smtp"
address = "::"
port = 25

[listeners.imaps]
protocol = "imap"
port = 993
tls = "implicit"

[limits]
max_message_size = 1048576
smtp_idle_timeout = 600
shutdown_grace = 2.5

[tls]
cert_file = "tls/cert.pem"
key_file = "/etc/ssl/key.pem"

[log]
format = "JSON"
level = "debug"

[store]
map_size = 1073741824
"""


def write(tmp_path: Path, text: str, name: str = "mailserver.toml") -> Path:
    path = tmp_path / "etc" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


# -- valid files -------------------------------------------------------------------


def test_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    cfg = load(path)
    assert cfg.hostname == "mail.example.org"
    assert cfg.data_dir == tmp_path / "etc" / "data"  # relative to the file's directory
    assert cfg.domains == ("example.org", "xn--bcher-kva.example")
    assert cfg.demo_account is False
    assert cfg.listeners == (
        Listener(name="mx", protocol="smtp", address="0.0.0.0", port=25, tls="starttls"),
        Listener(name="mx6", protocol="smtp", address="::", port=25, tls="none"),
        Listener(name="imaps", protocol="imap", address="127.0.0.1", port=993, tls="implicit"),
    )
    assert cfg.limits == Limits(max_message_size=1048576, smtp_idle_timeout=600.0,
                                shutdown_grace=2.5)
    assert isinstance(cfg.limits.smtp_idle_timeout, float)
    assert cfg.tls == TlsSettings(cert_file=tmp_path / "etc" / "tls" / "cert.pem",
                                  key_file=Path("/etc/ssl/key.pem"))
    assert cfg.log == LogSettings(format="json", level="debug")
    assert cfg.store == StoreSettings(map_size=1 << 30)
    assert cfg.source == path


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    cfg = load(path)
    assert dataclasses.replace(cfg, source=None) == Config()
    assert cfg.source == path


def test_parse_without_source_keeps_relative_paths() -> None:
    cfg = parse({"data_dir": "var"}, None)
    assert cfg.data_dir == Path("var")


def test_data_dir_override(tmp_path: Path) -> None:
    cfg = with_data_dir(load(write(tmp_path, VALID)), Path("rel"))
    assert cfg.data_dir.is_absolute() and cfg.data_dir.name == "rel"


def test_shipped_dev_config_equals_builtin() -> None:
    cfg = load(DEV_CONF)
    assert cfg.data_dir == ROOT / "var"
    assert cfg.demo_account is True
    ports = {lst.name: (lst.protocol, lst.address, lst.port, lst.tls) for lst in cfg.listeners}
    assert ports == {
        "smtp": ("smtp", "127.0.0.1", 2525, "starttls"),
        "submission": ("submission", "127.0.0.1", 2587, "starttls"),
        "submissions": ("submission", "127.0.0.1", 2465, "implicit"),
        "imap": ("imap", "127.0.0.1", 1143, "starttls"),
        "imaps": ("imap", "127.0.0.1", 1993, "implicit"),
        "http": ("http", "127.0.0.1", 2880, "none"),
    }
    # The built-in fallback is the same configuration, only its data_dir differs.
    assert dataclasses.replace(cfg, source=None) == builtin(ROOT / "var")


def test_shipped_dev_config_documents_every_key() -> None:
    text = DEV_CONF.read_text("utf-8")
    for cls in (Limits, LogSettings, StoreSettings, BlobSettings, TlsSettings, AuthSettings,
                AnalyticsSettings, JunkSettings):
        for f in dataclasses.fields(cls):
            assert f"{f.name} =" in text, f"conf/mailserver.toml does not document {f.name}"
    for f in dataclasses.fields(Config):
        if f.name not in ("source", "listeners", "limits", "tls", "log", "store", "blobs",
                          "outbound",
                          "dkim", "auth", "checks", "analytics", "junk"):
            assert f"{f.name} =" in text, f"conf/mailserver.toml does not document {f.name}"
    # And the documented values are the defaults, except those marked dev.
    cfg = load(DEV_CONF)
    assert cfg.limits == Limits() and cfg.log == LogSettings() and cfg.store == StoreSettings()
    assert cfg.blobs == BlobSettings()
    assert cfg.auth == AuthSettings()
    assert cfg.analytics == AnalyticsSettings() and cfg.junk == JunkSettings()
    # [outbound], [outbound.smart_host], [dns] and [dkim]: OutboundSettings minus
    # hostname (the top-level one), with the resolver fields under [dns].
    renamed = {"dns_timeout": "timeout"}
    for f in dataclasses.fields(OutboundSettings):
        if f.name != "hostname":
            name = renamed.get(f.name, f.name)
            assert f"{name} =" in text or f"[outbound.{name}]" in text, name
    for cls in (SmartHost, DkimSettings):
        for f in dataclasses.fields(cls):
            assert f"{f.name} =" in text, f"conf/mailserver.toml does not document {f.name}"
    assert cfg.outbound == OutboundSettings(hostname="localhost")
    assert cfg.dkim == DkimSettings()
    for f in dataclasses.fields(ChecksSettings):
        assert f"{f.name} =" in text, f"conf/mailserver.toml does not document {f.name}"
    assert cfg.checks == ChecksSettings()


def test_shipped_production_config() -> None:
    cfg = load(PROD_CONF)
    assert cfg.data_dir == Path("/var/lib/mailserver")
    assert cfg.demo_account is False
    mail = [lst for lst in cfg.listeners if lst.protocol != "http"]
    assert {lst.port for lst in mail} == {25, 587, 465, 143, 993}
    assert {lst.address for lst in mail} == {"0.0.0.0", "::"}
    # /metrics has no login: the template serves it on loopback only.
    http = [lst for lst in cfg.listeners if lst.protocol == "http"]
    assert http and all(ipaddress.ip_address(lst.address).is_loopback for lst in http)
    assert cfg.limits.shutdown_grace < 30  # systemd TimeoutStopSec
    assert cfg.outbound.smtp_port == 25 and cfg.outbound.hostname == cfg.hostname


def test_outbound_dns_and_dkim_tables(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, """\
hostname = "mail.example.org"
[outbound]
smtp_port = 2525
backoff = [1, 2.5]
require_tls = ["Bank.Example"]
delay_warning = 0
[outbound.smart_host]
host = "relay.example.net"
port = 465
tls = "implicit"
username = "me"
password = "pw"
[dns]
resolver_address = "127.0.0.1"
resolver_port = 5353
timeout = 2
[dkim]
selector = "s2024"
algorithms = ["rsa", "ed25519"]
"""))
    out = cfg.outbound
    assert out.hostname == "mail.example.org" and out.smtp_port == 2525
    assert out.backoff == (1.0, 2.5) and out.require_tls == frozenset({"bank.example"})
    assert out.delay_warning is None
    assert out.smart_host == SmartHost("relay.example.net", 465, "implicit", "me", "pw")
    assert (out.resolver_address, out.resolver_port, out.dns_timeout) == ("127.0.0.1", 5353, 2.0)
    assert cfg.dkim == DkimSettings("s2024", ("rsa", "ed25519"))



def test_report_sending_keys(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, """\
hostname = "mail.example.org"
[outbound]
tlsrpt = true
tlsrpt_send = true
report_from = "reports@example.org"
[checks]
dmarc_report_send = true
"""))
    assert cfg.outbound.tlsrpt_send and cfg.outbound.report_from == "reports@example.org"
    assert cfg.checks.dmarc_report_send


# -- errors ------------------------------------------------------------------------

ERRORS = [
    # (TOML text, dotted key expected in the message, words of the problem)
    ("hostnme = 'x'", "hostnme", "unknown key (did you mean 'hostname'?)"),
    ("[store]\nfill_warning_levels = [0.8, 1.5]", "store.fill_warning_levels",
     "each must be more than 0 and at most 1"),
    ("[store]\nfill_warning_levels = 0.8", "store.fill_warning_levels",
     "must be a list of numbers"),
    ("hostname = 3", "hostname", "must be a string, not an integer"),
    ("[outbound]\ntlsrpt_send = true", "outbound", "tlsrpt_send needs tlsrpt = true"),
    ("[outbound]\nreport_from = 'nobody'", "outbound.report_from", "must be an address"),
    ("[checks]\ndmarc_report_send = 1", "checks.dmarc_report_send", "must be true or false"),
    ("hostname = 'bad_name!'", "hostname", "not a valid domain name"),
    ("data_dir = ''", "data_dir", "must not be empty"),
    ("demo_account = 'yes'", "demo_account", "must be true or false"),
    ("domains = 'example.org'", "domains", "must be a list"),
    ("domains = ['a.example', 'A.example']", "domains[1]", "listed twice"),
    ("domains = ['ok.example', '-bad.example']", "domains[1]", "not a valid domain name"),
    ("listeners = 1", "listeners", "must be a table"),
    ("[listeners.x]\nport = 25", "listeners.x.protocol", "missing"),
    ("[listeners.x]\nprotocol = 'pop3'", "listeners.x.protocol", "must be one of"),
    ("[listeners.x]\nprotocol = 'smtp'\nport = 70000", "listeners.x.port", "between 0 and 65535"),
    ("[listeners.x]\nprotocol = 'smtp'\nport = '25'", "listeners.x.port", "must be an integer"),
    ("[listeners.x]\nprotocol = 'smtp'\nport = true", "listeners.x.port", "must be an integer"),
    ("[listeners.x]\nprotocol = 'smtp'\naddress = 'localhost'", "listeners.x.address",
     "not an IPv4 or IPv6 address"),
    ("[listeners.x]\nprotocol = 'smtp'\ntls = 'yes'", "listeners.x.tls", "must be one of"),
    ("[listeners.x]\nprotocol = 'http'\ntls = 'starttls'", "listeners.x.tls", "'none' or"),
    ("[listeners.x]\nprotocol = 'smtp'\nprot = 25", "listeners.x.prot", "unknown key"),
    ("[listeners.a]\nprotocol = 'smtp'\nport = 25\n[listeners.b]\nprotocol = 'imap'\nport = 25",
     "listeners.b.port", "also used by listeners.a"),
    ("[listeners.'a b']\nprotocol = 'smtp'", "listeners.a b", "letters, digits"),
    ("[limits]\nmax_recipents = 5", "limits.max_recipents", "did you mean 'max_recipients'"),
    ("[limits]\nmax_recipients = 10", "limits.max_recipients", "at least 100"),
    ("[limits]\nmax_message_size = 1.5", "limits.max_message_size", "must be an integer"),
    ("[limits]\nimap_idle_timeout = 60", "limits.imap_idle_timeout", "RFC 3501"),
    ("[limits]\nsmtp_idle_timeout = 'long'", "limits.smtp_idle_timeout", "must be a number"),
    ("[limits]\nimap_max_nesting = 1000", "limits.imap_max_nesting", "from 8 to 256"),
    ("[limits]\nimap_line_timeout = 0", "limits.imap_line_timeout", "at least 1"),
    ("[limits]\nimap_literal_timeout = 0.5", "limits.imap_literal_timeout", "at least 1"),
    ("limits = [1]", "limits", "must be a table, not an array"),
    ("[tls]\ncert_file = 'c.pem'", "tls.key_file", "go together"),
    ("[tls]\nkey_file = 'k.pem'", "tls.cert_file", "go together"),
    ("[tls]\nca_file = 'k.pem'", "tls.ca_file", "unknown key"),
    ("[log]\nformat = 'xml'", "log.format", "must be one of"),
    ("[log]\nlevel = 'loud'", "log.level", "must be one of"),
    ("[store]\nmap_size = 10", "store.map_size", "at least"),
    ("[store]\npath = '/x'", "store.path", "unknown key"),
    ("[limits]\nauth_failure_delay = -1", "limits.auth_failure_delay", "at least 0"),
    ("[outbound]\nsmtp_port = 0", "outbound.smtp_port", "between 1 and 65535"),
    ("[outbound]\nbackoff = []", "outbound.backoff", "non-empty list"),
    ("[outbound]\nbackoff = [60, -1]", "outbound.backoff[1]", "more than 0"),
    ("[outbound]\njitter = 1", "outbound.jitter", "less than 1"),
    ("[outbound]\nmax_connections = 0", "outbound.max_connections", "at least 1"),
    ("[outbound]\nrequire_tls = ['bad_domain!']", "outbound.require_tls[0]", "not a valid"),
    ("[outbound]\nretries = 3", "outbound.retries", "unknown key"),
    ("[outbound.smart_host]\nport = 25", "outbound.smart_host.host", "missing"),
    ("[outbound.smart_host]\nhost = 'r.example'\ntls = 'yes'", "outbound.smart_host.tls",
     "must be one of"),
    ("[outbound.smart_host]\nhost = 'r.example'\nusername = 'u'",
     "outbound.smart_host.password", "go together"),
    ("[dns]\nresolver_address = 'localhost'", "dns.resolver_address", "not an IPv4"),
    ("[dns]\nresolver_port = 70000", "dns.resolver_port", "between 1 and 65535"),
    ("[dkim]\nalgorithms = ['dsa']", "dkim.algorithms[0]", "must be one of"),
    ("[dkim]\nselector = 'bad selector'", "dkim.selector", "not a valid selector"),
    ("[checks]\nverify = 1", "checks.verify", "true or false"),
    ("[checks]\nspf = true", "checks.spf", "unknown key"),
    ("[checks]\ntemperror = 'sometimes'", "checks.temperror", "must be one of"),
    ("[checks]\nmax_received = 0", "checks.max_received", "at least 1"),
    ("[checks]\ndmarc_override = { 'a.example' = 'drop' }", "checks.dmarc_override.a.example",
     "must be one of"),
    ("[checks]\narc_trusted_sealers = ['bad domain']", "checks.arc_trusted_sealers[0]",
     "not a valid"),
    ("[checks]\npostmaster = 'admin'", "checks.postmaster", "account address"),
]


def test_checks_section(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[checks]\nverify = true\ndkim_max_signatures = 3\ntemperror = 'Never'\n"
        "arc_trusted_sealers = ['Lists.Example.org']\npostmaster = 'Admin@Example.org'\n"
        "dmarc_override = { 'Partner.example' = 'NONE' }\n"
    )
    checks = load(path).checks
    assert checks == ChecksSettings(
        verify=True, dkim_max_signatures=3, temperror="never",
        arc_trusted_sealers=("lists.example.org",), postmaster="admin@example.org",
        dmarc_override={"partner.example": "none"},
    )


def test_store_fill_warning_levels(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[store]\nnew_mail_limit = 0.9\nfill_warning_levels = [0.7, 0.85]\n")
    store = load(path).store
    assert (store.new_mail_limit, store.fill_warning_levels) == (0.9, (0.7, 0.85))


@pytest.mark.parametrize(("text", "key", "problem"), ERRORS)
def test_error_names_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    message = error_of(tmp_path, text)
    assert f": {key}: " in message, message
    assert problem in message, message


def test_invalid_toml(tmp_path: Path) -> None:
    message = error_of(tmp_path, "hostname = \n")
    assert "invalid TOML" in message and "line 1" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"hostname = '\xff'\n")
    with pytest.raises(ConfigError, match=rf"^{path}: not UTF-8"):
        load(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=rf"^{path}: cannot read: No such file"):
        load(path)


def test_parse_without_source_names_placeholder() -> None:
    with pytest.raises(ConfigError, match=r"^<config>: bogus: unknown key"):
        parse({"bogus": 1}, None)


def test_workers(tmp_path: Path) -> None:
    from mailserver.config import MAX_WORKERS, parse, worker_count

    assert parse({}, None).workers == 1
    assert worker_count(parse({"workers": 3}, None)) == 3
    assert worker_count(parse({"workers": 0}, None)) == len(os.sched_getaffinity(0))
    for bad in (-1, MAX_WORKERS + 1, "2", True):
        with pytest.raises(ConfigError, match="workers"):
            parse({"workers": bad}, None)


def test_auth_section() -> None:
    cfg = parse({"auth": {"argon2_memory": 19456, "argon2_time_cost": 2, "cache_ttl": 0}}, None)
    assert cfg.auth == AuthSettings(argon2_memory=19456, argon2_time_cost=2, cache_ttl=0.0)
    with pytest.raises(ConfigError, match=r"auth.argon2_parallelism: must be 1 to 64"):
        parse({"auth": {"argon2_parallelism": 0}}, None)
    with pytest.raises(ConfigError, match=r"auth.argon2_memory: must be at least 8 KiB per lane"):
        parse({"auth": {"argon2_memory": 64, "argon2_parallelism": 16}}, None)
    with pytest.raises(ConfigError, match=r"auth.cache_size: must be at least 0"):
        parse({"auth": {"cache_size": -1}}, None)


def test_analytics_section() -> None:
    cfg = parse({"analytics": {"enabled": False, "retention_days": 3, "raw_days": 1}}, None)
    assert cfg.analytics == AnalyticsSettings(enabled=False, retention_days=3, raw_days=1)
    with pytest.raises(ConfigError, match="analytics.raw_days"):
        parse({"analytics": {"raw_days": 0}}, None)
    with pytest.raises(ConfigError, match="analytics.nope"):
        parse({"analytics": {"nope": 1}}, None)


_PG = '[store]\nbackend = "postgresql"\ndsn = "postgresql://Mail:S3cret@DB.example:5432/Mail"\n'
_SMTP = '[listeners.mx]\nprotocol = "smtp"\naddress = "127.0.0.1"\nport = 25\n'


def test_postgresql_store_settings() -> None:
    cfg = parse(tomllib.loads(_PG + 'writer_connections = 2\n[blobs]\nbackend = "s3"\n'
                              'bucket = "Mail-Blobs"\nendpoint = "https://S3.example:9000"\n'
                              'access_key = "AKIA"\nsecret_key = "SeCrEt"\n' + _SMTP), None)
    # Credentials, the DSN's password and the bucket keep their case.
    assert cfg.store.dsn == "postgresql://Mail:S3cret@DB.example:5432/Mail"
    assert cfg.store.backend == "postgresql" and cfg.store.writer_connections == 2
    assert (cfg.blobs.backend, cfg.blobs.bucket, cfg.blobs.secret_key) == (
        "s3", "Mail-Blobs", "SeCrEt")


@pytest.mark.parametrize(("text", "problem"), [
    ('[store]\nbackend = "oracle"\n', "store.backend: must be one of"),
    ('[store]\nbackend = "postgresql"\n', "store.dsn: backend \"postgresql\" needs a dsn"),
    ('[blobs]\nbackend = "s3"\nbucket = "b"\n', 'blobs.backend: "s3" needs [store] backend'),
    (_PG + '[blobs]\nbackend = "s3"\n', "blobs.bucket: backend \"s3\" needs a bucket"),
    (_PG + '[listeners.imap]\nprotocol = "imap"\naddress = "127.0.0.1"\nport = 143\n',
     "imap does not run on the PostgreSQL store yet"),
    (_PG + 'writer_connections = 0\n', "store.writer_connections: must be 1 to 64"),
    ('workers = 2\n' + _PG, "workers: the PostgreSQL store runs one process per node"),
    ('demo_account = true\n' + _PG, "demo_account: not on the PostgreSQL store yet"),
    (_PG + '[outbound]\ntlsrpt = true\ntlsrpt_send = true\n',
     "outbound.tlsrpt_send: not on the PostgreSQL"),
])
def test_postgresql_store_refuses_what_does_not_run_on_it(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        parse(tomllib.loads(text), None)
