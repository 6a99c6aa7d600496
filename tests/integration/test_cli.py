"""The ``mailserver`` command line, run as a real subprocess against a real store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.daemon import ROOT, check_login, on_store
from support.daemon import cli_env as env_without_config
from support.daemon import run_cli as cli
from support.dnsserver import DnsServer

from mailserver.store.store import Store


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A configuration whose data directory holds an empty store (``mailserver init``)."""
    path = tmp_path / "etc" / "mailserver.toml"
    path.parent.mkdir()
    path.write_text('hostname = "mx.example.test"\ndata_dir = "../data"\n', encoding="utf-8")
    assert cli("init", "-c", path).returncode == 0
    return path


USING = "mailserver: using data directory "


def _ours(stderr: str) -> list[str]:
    """stderr without the line naming the data directory."""
    return [line for line in stderr.splitlines() if not line.startswith(USING)]


def ok(*args: str | Path, stdin: str = "") -> str:
    result = cli(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert _ours(result.stderr) == []
    return result.stdout


def fails(*args: str | Path, stdin: str = "", status: int = 1) -> str:
    """Run a command that must fail; return its one-line error message."""
    result = cli(*args, stdin=stdin)
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = _ours(result.stderr)
    assert "Traceback" not in result.stderr
    if status == 1:  # ours: exactly one line
        assert len(lines) == 1 and lines[0].startswith("mailserver: error: "), result.stderr
    else:  # argparse's: usage, then "mailserver SUBCOMMAND: error: ..."
        assert lines and lines[-1].startswith("mailserver") and ": error: " in lines[-1]
    return lines[-1]


def test_domain_add_list_del(conf: Path) -> None:
    assert ok("domain", "add", "Example.TEST", "-c", conf) == "added domain example.test\n"
    ok("domain", "add", "other.test", "-c", conf)
    assert ok("domain", "list", "-c", conf).split() == ["example.test", "other.test"]
    ok("domain", "del", "other.test", "-c", conf)
    assert ok("-c", conf, "domain", "list").split() == ["example.test"]
    assert (conf.parent.parent / "data" / "store").is_dir()  # data_dir is relative to the file
    assert "exists" in fails("domain", "add", "example.test", "-c", conf).lower()


def test_user_lifecycle(conf: Path) -> None:
    data = conf.parent.parent / "data"
    ok("domain", "add", "example.test", "-c", conf)
    out = ok("user", "add", "Carol@Example.test", "--password-stdin", "-c", conf,
             stdin="carol-secret-1\n")
    assert out == "added user carol@example.test\n"
    ok("user", "add", "dave@example.test", "--quota", "1000000", "--password-stdin", "-c", conf,
       stdin="dave-secret-1")
    listing = ok("user", "list", "-c", conf).splitlines()
    assert listing == [
        "carol@example.test\tused=0\tquota=unlimited",
        "dave@example.test\tused=0\tquota=1000000",
    ]
    assert check_login(data, "carol@example.test", "carol-secret-1") == "carol@example.test"

    ok("user", "passwd", "carol@example.test", "--password-stdin", "-c", conf,
       stdin="carol-secret-2\r\n")
    assert check_login(data, "carol@example.test", "carol-secret-1") is None
    assert check_login(data, "carol@example.test", "carol-secret-2") == "carol@example.test"

    ok("user", "quota", "carol@example.test", "5000", "-c", conf)
    assert "carol@example.test\tused=0\tquota=5000" in ok("user", "list", "-c", conf)

    ok("user", "del", "dave@example.test", "-c", conf)
    assert ok("user", "list", "example.test", "-c", conf).split()[0] == "carol@example.test"
    assert "dave@" not in ok("user", "list", "-c", conf)


def test_alias_lifecycle(conf: Path) -> None:
    ok("domain", "add", "example.test", "-c", conf)
    ok("user", "add", "carol@example.test", "--password-stdin", "-c", conf, stdin="carol-pw-123\n")
    assert ok("alias", "add", "postmaster@example.test", "carol@example.test", "-c", conf) == (
        "added alias postmaster@example.test -> carol@example.test\n"
    )
    ok("alias", "add", "@example.test", "carol@example.test", "-c", conf)
    listing = ok("alias", "list", "-c", conf).splitlines()
    assert sorted(listing) == [
        "@example.test -> carol@example.test",
        "postmaster@example.test -> carol@example.test",
    ]
    ok("alias", "del", "postmaster@example.test", "-c", conf)
    assert ok("alias", "list", "example.test", "-c", conf).splitlines() == [
        "@example.test -> carol@example.test"
    ]
    message = fails("alias", "add", "x@nowhere.test", "carol@example.test", "-c", conf)
    assert "domain add nowhere.test" in message
    # Several targets, local and elsewhere (forwarded with SRS and an ARC seal).
    out = ok("alias", "add", "team@example.test", "carol@example.test", "someone@gmail.example",
             "-c", conf)
    assert out == "added alias team@example.test -> carol@example.test, someone@gmail.example\n"
    assert "not an account" in fails("alias", "add", "t2@example.test", "nobody@example.test",
                                     "-c", conf)


def test_user_errors(conf: Path) -> None:
    message = fails("user", "add", "eve@nowhere.test", "--password-stdin", "-c", conf,
                    stdin="long-enough-pw\n")
    assert "nowhere.test" in message and "mailserver domain add nowhere.test" in message
    ok("domain", "add", "example.test", "-c", conf)
    assert "at least 8" in fails("user", "add", "eve@example.test", "--password-stdin", "-c",
                                 conf, stdin="short\n")
    # Without a terminal and without --password-stdin there is nobody to ask.
    assert "--password-stdin" in fails("user", "add", "eve@example.test", "-c", conf)
    fails("user", "passwd", "nobody@example.test", "--password-stdin", "-c", conf,
          stdin="long-enough-pw\n")
    fails("user", "del", "nobody@example.test", "-c", conf)
    ok("user", "add", "eve@example.test", "--password-stdin", "-c", conf, stdin="eve-password\n")
    fails("user", "add", "eve@example.test", "--password-stdin", "-c", conf, stdin="eve-pw-again\n")
    assert ok("user", "list", "-c", conf).count("eve@example.test") == 1


def test_usage_errors_exit_2(conf: Path) -> None:
    fails("user", "add", "-c", conf, status=2)
    fails("user", "add", "x@example.test", "--quota", "-5", "-c", conf, status=2)
    fails("frobnicate", status=2)


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nmax_recipients = 'many'\n", encoding="utf-8")
    message = fails("domain", "list", "-c", bad)
    assert message == (
        f"mailserver: error: {bad}: limits.max_recipients: must be an integer, not a string"
    )
    message = fails("check-config", "-c", bad)
    assert "limits.max_recipients" in message
    assert "cannot read" in fails("check-config", "-c", tmp_path / "missing.toml")


def test_check_config(conf: Path) -> None:
    out = ok("check-config", "-c", conf)
    assert out.startswith(f"configuration OK: {conf}\n")
    out = ok("check-config", "-c", ROOT / "conf" / "mailserver.production.toml")
    assert "0.0.0.0:25" in out and ":::993" in out


def test_check_config_unreadable_certificate(tmp_path: Path) -> None:
    """Each TLS file is named with the OS error (``ssl`` alone names neither)."""
    path = tmp_path / "c.toml"
    path.write_text('[tls]\ncert_file = "nope.pem"\nkey_file = "nope.key"\n', encoding="utf-8")
    message = fails("check-config", "-c", path)
    assert message == (f"mailserver: error: {path}: tls: cannot read the certificate "
                       f"{tmp_path / 'nope.pem'}: No such file or directory")
    (tmp_path / "nope.pem").write_text("not a certificate\n")
    (tmp_path / "nope.key").mkdir()
    message = fails("check-config", "-c", path)
    assert message.endswith(f"tls: cannot read the private key {tmp_path / 'nope.key'}: "
                            "Is a directory")
    (tmp_path / "nope.key").rmdir()
    (tmp_path / "nope.key").write_text("not a key either\n")
    message = fails("check-config", "-c", path)
    assert (f"tls: cannot load the certificate {tmp_path / 'nope.pem'} with the private key "
            f"{tmp_path / 'nope.key'}: ") in message


def test_daemon_tls_error_names_the_file(tmp_path: Path) -> None:
    """What ``mailserver run`` logs as ``start_failed`` when a TLS file is missing."""
    from mailserver.config import load
    from mailserver.errors import ConfigError
    from mailserver.tls import server_context

    path = tmp_path / "c.toml"
    path.write_text('[tls]\ncert_file = "cert.pem"\nkey_file = "key.pem"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        server_context(load(path))
    assert str(info.value) == (f"{path}: tls: cannot read the certificate {tmp_path / 'cert.pem'}"
                               ": No such file or directory")


def test_config_search_order(tmp_path: Path) -> None:
    """-c, then $MAILSERVER_CONFIG, then conf/mailserver.toml in the cwd, then built-in."""
    work = tmp_path / "work"
    (work / "conf").mkdir(parents=True)
    (work / "conf" / "mailserver.toml").write_text('hostname = "from-cwd.test"\n')
    env_file = tmp_path / "env.toml"
    env_file.write_text('hostname = "from-env.test"\n')
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('hostname = "explicit.test"\n')

    env = env_without_config()
    assert "from-cwd.test" in cli("check-config", cwd=work, env=env).stdout
    env["MAILSERVER_CONFIG"] = str(env_file)
    assert "from-env.test" in cli("check-config", cwd=work, env=env).stdout
    assert "explicit.test" in cli("check-config", "-c", explicit, cwd=work, env=env).stdout

    empty = tmp_path / "empty"
    empty.mkdir()
    if Path("/etc/mailserver/mailserver.toml").exists():
        pytest.fail("this machine has /etc/mailserver/mailserver.toml; the test needs it absent")
    out = cli("check-config", cwd=empty, env=env_without_config()).stdout
    assert out.startswith("configuration OK: <built-in>")
    assert f"data_dir  {empty / 'var'}" in out
    out = cli("check-config", "--data-dir", "elsewhere", cwd=empty, env=env_without_config())
    assert f"data_dir  {empty / 'elsewhere'}" in out.stdout


def test_configured_domains_exist_for_admin_commands(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('data_dir = "data"\ndomains = ["conf.test"]\n', encoding="utf-8")
    assert ok("init", "-c", conf) == f"created a new store in {tmp_path / 'data'}\n"
    assert ok("domain", "list", "-c", conf).split() == ["conf.test"]
    ok("user", "add", "x@conf.test", "--password-stdin", "-c", conf, stdin="x-password\n")
    assert "remove it there first" in fails("domain", "del", "conf.test", "-c", conf)


# -- dkim, dns, queue ----------------------------------------------------------------


def test_dkim_keygen_prints_the_txt_record(conf: Path, tmp_path: Path) -> None:
    assert "not a local domain" in fails("dkim", "keygen", "example.test", "-c", conf)
    ok("domain", "add", "example.test", "-c", conf)
    out = ok("dkim", "keygen", "Example.TEST", "-c", conf)
    key = tmp_path / "data" / "dkim" / "example.test" / "mail.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.parent.stat().st_mode & 0o777 == 0o700
    [record] = [line for line in out.splitlines() if not line.startswith("#")]
    assert record.startswith('mail._domainkey.example.test. 3600 IN TXT "v=DKIM1; k=rsa; p=')
    out = ok("dkim", "keygen", "example.test", "--algorithm", "ed25519", "--selector", "ed",
             "-c", conf)
    assert 'ed._domainkey.example.test. 3600 IN TXT "v=DKIM1; k=ed25519; p=' in out
    # The same selector twice would silently replace a published key: refused.
    assert "exists" in fails("dkim", "keygen", "example.test", "-c", conf)
    assert "invalid choice" in fails("dkim", "keygen", "example.test", "--algorithm", "dsa",
                                     "-c", conf, status=2)
    assert ok("dkim", "list", "-c", conf).splitlines() == [
        f"example.test\ted\ted25519\t{key.parent / 'ed.key'}\tnot signing: add it to "
        "[dkim] algorithms",
        f"example.test\tmail\trsa\t{key}",
    ]
    assert ok("dkim", "list", "other.test", "-c", conf) == ""


def test_dns_prints_every_record(conf: Path) -> None:
    conf.write_text(conf.read_text("utf-8") + """
[listeners.submission]
protocol = "submission"
port = 587
tls = "starttls"
[listeners.imaps]
protocol = "imap"
port = 993
tls = "implicit"
""", encoding="utf-8")
    ok("domain", "add", "example.test", "-c", conf)
    before = ok("dns", "example.test", "-c", conf)
    assert "dkim keygen example.test" in before  # no key yet: says how to make one
    ok("dkim", "keygen", "example.test", "-c", conf)
    lines = ok("dns", "example.test", "-c", conf).splitlines()
    assert "example.test. 3600 IN MX 10 mx.example.test." in lines
    assert 'example.test. 3600 IN TXT "v=spf1 mx -all"' in lines
    assert any(x.startswith('mail._domainkey.example.test. 3600 IN TXT "v=DKIM1; k=rsa;')
               for x in lines)
    assert any(x.startswith('_dmarc.example.test. 3600 IN TXT "v=DMARC1; p=') for x in lines)
    assert "_submission._tcp.example.test. 3600 IN SRV 0 1 587 mx.example.test." in lines
    assert "_imaps._tcp.example.test. 3600 IN SRV 0 1 993 mx.example.test." in lines
    # Not offered: target "." (RFC 6186 §4).
    assert "_submissions._tcp.example.test. 3600 IN SRV 0 0 0 ." in lines
    assert "_imap._tcp.example.test. 3600 IN SRV 0 0 0 ." in lines


def _enqueue(data_dir: Path, recipients: list[str]) -> str:
    from mailserver.app import resolver_for
    from mailserver.queue.manager import QueueManager
    from mailserver.queue.settings import OutboundSettings
    from mailserver.store.api import LmdbQueue

    async def enqueue(store: Store) -> str:  # never started: nothing is delivered
        settings = OutboundSettings(resolver_address="127.0.0.1", resolver_port=9)
        mgr = QueueManager(LmdbQueue(store), settings, resolver=resolver_for(settings))
        return await mgr.enqueue("alice@example.test", recipients,
                                 b"From: alice@example.test\r\nSubject: q\r\n\r\nq\r\n")

    return on_store(data_dir, enqueue)


def test_queue_list_show_retry_delete_flush(conf: Path, tmp_path: Path) -> None:
    assert ok("queue", "list", "-c", conf).strip() == "0 message(s) queued"
    qid = _enqueue(tmp_path / "data", ["bob@remote.test", "carol@remote.test"])
    listing = ok("queue", "list", "-c", conf)
    assert listing.startswith(qid + "\t") and "<alice@example.test>" in listing
    assert "2/2 to go" in listing and "1 message(s) queued" in listing
    # Each message is followed by its recipients, one indented line each.
    assert listing.splitlines()[1:3] == ["\tbob@remote.test\tpending",
                                         "\tcarol@remote.test\tpending"]
    shown = ok("queue", "show", qid, "-c", conf)
    assert f"id            {qid}" in shown
    assert "rcpt          bob@remote.test\tpending" in shown
    assert "rcpt          carol@remote.test\tpending" in shown
    assert ok("queue", "retry", qid, "-c", conf).strip() == f"{qid} is due now"
    assert ok("queue", "flush", "-c", conf).strip() == "1 message(s) due now"
    assert ok("queue", "delete", qid, "-c", conf).strip() == f"deleted {qid}"
    assert ok("queue", "list", "-c", conf).strip() == "0 message(s) queued"
    for action in ("show", "retry", "delete"):
        assert f"no queued message {qid}" in fails("queue", action, qid, "-c", conf)


def test_queue_bounce_and_holds_that_outlive_a_round(conf: Path, tmp_path: Path) -> None:
    """``queue bounce`` marks the message for a DSN round, due now, lifting a
    hold; a hold made while a round runs survives the round's write-back
    (``keep_hold``)."""
    qid = _enqueue(tmp_path / "data", ["bob@remote.test"])
    ok("queue", "hold", qid, "-c", conf)

    async def round_writes_back(store: Store) -> bool:
        raw = store.queue_get(qid)
        assert raw is not None
        return await store.queue_put(qid, raw, 0.0, keep_hold=True)

    assert on_store(tmp_path / "data", round_writes_back) is True  # still held
    assert "next attempt  held" in ok("queue", "show", qid, "-c", conf)
    out = ok("queue", "bounce", qid, "--reason", "not wanted", "-c", conf)
    assert out.strip() == f"{qid} goes back to its sender with a DSN at its next round (now)"
    shown = ok("queue", "show", qid, "-c", conf)
    assert "bounce        550 5.0.0 not wanted" in shown
    assert "next attempt  held" not in shown
    assert "no queued message NOPE" in fails("queue", "bounce", "NOPE", "-c", conf)


def test_dkim_rotate_and_delete(conf: Path, tmp_path: Path) -> None:
    ok("domain", "add", "example.test", "-c", conf)
    ok("dkim", "keygen", "example.test", "--selector", "first", "-c", conf)
    out = ok("dkim", "rotate", "example.test", "-c", conf)
    [record] = [line for line in out.splitlines() if not line.startswith("#")]
    selector = record.split("._domainkey.")[0]
    assert selector.startswith("mail-") and "retired first" in out
    keys = tmp_path / "data" / "dkim" / "example.test"
    assert sorted(p.name for p in keys.iterdir()) == sorted(
        ["first.retired", "first.txt", f"{selector}.key", f"{selector}.txt"])
    listing = ok("dkim", "list", "-c", conf).splitlines()
    assert listing[0].startswith("example.test\tfirst\trsa\t") and "retired" in listing[0]
    assert "exists" in fails("dkim", "rotate", "example.test", "-c", conf)  # once a day
    assert "is active" in fails("dkim", "delete", "example.test", selector, "-c", conf)
    assert "deleted the retired key first" in ok("dkim", "delete", "example.test", "first",
                                                 "-c", conf)
    assert sorted(p.name for p in keys.iterdir()) == [f"{selector}.key", f"{selector}.txt"]
    assert "no DKIM key" in fails("dkim", "delete", "example.test", "first", "-c", conf)


# -- the store is never created by an admin command ----------------------------------


@pytest.mark.parametrize("command", [
    ("user", "add", "x@example.test", "--password-stdin"),
    ("domain", "list"),
    ("alias", "list"),
    ("queue", "list"),
    ("dkim", "keygen", "example.test"),
    ("dns", "example.test"),
])
def test_admin_commands_never_create_a_store(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Run from a directory without a store, an admin command fails and says
    where it looked instead of making a new, empty store there."""
    result = cli(*command, stdin="long-enough-pw\n", cwd=tmp_path, env=env_without_config())
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr == (f"mailserver: error: no store at {tmp_path / 'var'} (start the "
                             "daemon once or run 'mailserver init', or pass --data-dir/-c)\n")
    assert list(tmp_path.iterdir()) == []


def test_init_creates_the_store_once(tmp_path: Path) -> None:
    env = env_without_config()
    result = cli("init", "--data-dir", "d", cwd=tmp_path, env=env)
    assert result.stdout == f"created a new store in {tmp_path / 'd'}\n"
    assert (tmp_path / "d" / "store").is_dir()
    result = cli("init", "--data-dir", "d", cwd=tmp_path, env=env)
    assert result.stdout == f"a store exists in {tmp_path / 'd'}; left as it was\n"


def test_admin_commands_name_their_data_directory(conf: Path, tmp_path: Path) -> None:
    result = cli("domain", "list", "-c", conf)
    assert result.returncode == 0
    assert result.stderr == f"{USING}{tmp_path / 'data'}\n"


# -- messages that name the real problem ---------------------------------------------


def test_an_address_without_at_sign_is_invalid(conf: Path) -> None:
    ok("domain", "add", "example.test", "-c", conf)
    message = fails("user", "add", "no-at-sign", "--password-stdin", "-c", conf,
                    stdin="long-enough-pw\n")
    assert message == ("mailserver: error: invalid address 'no-at-sign': "
                       "an address is local@domain")
    message = fails("alias", "add", "no-at-sign", "carol@example.test", "-c", conf)
    assert "invalid alias 'no-at-sign'" in message
    message = fails("user", "add", "x@", "--password-stdin", "-c", conf, stdin="long-enough-pw\n")
    assert "invalid address 'x@'" in message


def test_dns_of_a_domain_that_is_not_local_fails(conf: Path) -> None:
    message = fails("dns", "nosuch.org", "-c", conf)
    assert message == "mailserver: error: domain 'nosuch.org' is not a local domain"


@pytest.mark.parametrize(("hostname", "problem"), [
    ("localhost", "it is not a fully qualified domain name"),
    ("mx.localhost", "it is a name the public DNS never resolves"),
    ("192.0.2.1", "it is an IP address"),
])
def test_dns_refuses_a_hostname_nobody_can_reach(tmp_path: Path, hostname: str,
                                                 problem: str) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text(f'hostname = "{hostname}"\ndata_dir = "data"\ndomains = ["example.test"]\n',
                    encoding="utf-8")
    ok("init", "-c", conf)
    message = fails("dns", "example.test", "-c", conf)
    assert message.startswith(f"mailserver: error: hostname {hostname!r} ({conf}) cannot be "
                              f"published in DNS: {problem}")


def _publish(dns: DnsServer, zone: str, skip: tuple[str, ...] = ()) -> None:
    """Serve the zone-file lines ``mailserver dns`` printed (but ``skip``)."""
    for line in zone.splitlines():
        if line.startswith(";") or not line.strip() or any(s in line for s in skip):
            continue
        name, _ttl, _in, rtype, data = line.split(None, 4)
        if rtype == "TXT":
            data = "".join(re.findall(r'"([^"]*)"', data))
        dns.add(name, rtype, data)


def test_dns_check_against_a_loopback_resolver(conf: Path) -> None:
    """``dns check``: one verdict per expected record and for the host (its
    address, reverse DNS, MX agreement), asked of the configured resolver;
    non-zero while something is missing or different."""
    dns = DnsServer()
    dns.start()
    try:
        conf.write_text(conf.read_text("utf-8") + f"""
[dns]
resolver_address = "127.0.0.1"
resolver_port = {dns.port}
timeout = 5
[listeners.submissions]
protocol = "submission"
port = 465
tls = "implicit"
""", encoding="utf-8")
        ok("domain", "add", "example.test", "-c", conf)
        ok("dkim", "keygen", "example.test", "-c", conf)
        zone = ok("dns", "example.test", "-c", conf)
        _publish(dns, zone, skip=("_dmarc.", "_imaps."))
        dns.add("example.test", "TXT", "v=spf1 a -all")  # a second, different SPF record
        for host in ("mx", "mta-sts", "autoconfig", "autodiscover"):
            # The loopback server does not chase CNAMEs: the addresses they lead to.
            dns.add(f"{host}.example.test", "A", "127.0.0.1")
        result = cli("dns", "check", "example.test", "-c", conf)
        assert result.returncode == 1, result.stderr
        lines = result.stdout.splitlines()
        assert "present   example.test MX" in lines
        assert "missing   _dmarc.example.test TXT" in lines
        assert "different example.test TXT" in lines  # two SPF records: a permerror
        assert any(x.startswith("present   mail._domainkey.example.test TXT") for x in lines)
        assert "present   _submissions._tcp.example.test SRV" in lines
        assert "missing   _imaps._tcp.example.test SRV" in lines
        assert "missing   1.0.0.127.in-addr.arpa PTR" in lines
        assert "present   _mta-sts.example.test TXT" in lines
        assert "present   _smtp._tls.example.test TXT" in lines
        assert "present   autoconfig.example.test CNAME" in lines
        # Everything published as printed, and the reverse DNS: all present, exit 0.
        dns.records.clear()
        _publish(dns, zone)
        for host in ("mx", "mta-sts", "autoconfig", "autodiscover"):
            dns.add(f"{host}.example.test", "A", "127.0.0.1")
        dns.add("1.0.0.127.in-addr.arpa", "PTR", "mx.example.test.")
        result = cli("dns", "check", "example.test", "-c", conf)
        assert result.returncode == 0, result.stdout
        assert all(x.startswith(("present", " ")) for x in result.stdout.splitlines())
        assert "present   example.test MX -> A/AAAA" in result.stdout.splitlines()
    finally:
        dns.stop()
