"""The daemon as a real process: readiness, signals, sd_notify, demo account, durability.

Each test starts ``python -m mailserver run -c CONF`` with port-0 listeners
and learns the bound ports from its ``listener_started`` JSON log lines.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import re
import signal
import smtplib
import socket
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import ROOT, TIMEOUT, Daemon, add_user, check_login, inbox_uids, run_cli
from support.wire import client_tls_context


def write_config(tmp_path: Path, listeners: str = "", extra: str = "") -> Path:
    path = tmp_path / "mailserver.toml"
    path.write_text(
        'hostname = "mx.example.test"\n'
        'data_dir = "data"\n'
        'domains = ["example.test"]\n'
        f"{extra}\n"
        "[log]\nformat = \"json\"\n"
        f"{listeners}",
        encoding="utf-8",
    )
    return path


LISTENERS = """
[listeners.smtp]
protocol = "smtp"
address = "127.0.0.1"
port = 0
tls = "starttls"

[listeners.imaps]
protocol = "imap"
address = "127.0.0.1"
port = 0
tls = "implicit"
"""


def inbox_size(data_dir: Path, account: str) -> int:
    """Messages in the account's INBOX, read straight from the store."""
    return len(inbox_uids(data_dir, account))


# -- sd_notify ---------------------------------------------------------------------


@contextlib.contextmanager
def notify_socket(abstract: bool) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket like systemd's; yields it and the NOTIFY_SOCKET value."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT)
    with contextlib.ExitStack() as stack:
        stack.callback(sock.close)
        if abstract:
            name = f"mailserver-test-{uuid.uuid4().hex}"
            sock.bind("\0" + name)
            yield sock, "@" + name
        else:
            # sun_path is short (108 bytes): a fresh directory under /tmp, not tmp_path.
            directory = stack.enter_context(tempfile.TemporaryDirectory(dir="/tmp"))
            path = os.path.join(directory, "notify")
            sock.bind(path)
            yield sock, path


def receive_states(sock: socket.socket, until: str) -> list[str]:
    """Every assignment received up to and including the datagram holding ``until``."""
    seen: list[str] = []
    while until not in seen:
        seen.extend(sock.recv(4096).decode().splitlines())
    return seen


@pytest.mark.parametrize("abstract", [True, False], ids=["abstract", "path"])
def test_ready_and_stopping_notifications(
    tmp_path: Path, daemons: list[Daemon], abstract: bool
) -> None:
    conf = write_config(tmp_path)  # no listeners: only the life cycle is under test
    with notify_socket(abstract) as (sock, address):
        d = Daemon("-c", conf, env={"NOTIFY_SOCKET": address})
        daemons.append(d)
        states = receive_states(sock, "READY=1")
        assert f"MAINPID={d.proc.pid}" in states
        d.wait_for("server_ready")
        d.proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in receive_states(sock, "STOPPING=1")
        assert d.proc.wait(TIMEOUT) == 0
    d.join()
    events = [json.loads(line)["event"] for line in d.stderr]
    assert "shutdown_requested" in events and events[-1] == "server_stopped"


def test_sigint_is_a_clean_stop_too(tmp_path: Path, daemons: list[Daemon]) -> None:
    d = Daemon("-c", write_config(tmp_path))
    daemons.append(d)
    d.ready()
    assert d.stop(signal.SIGINT) == 0


def test_log_lines_are_json(tmp_path: Path, daemons: list[Daemon]) -> None:
    d = Daemon("-c", write_config(tmp_path))
    daemons.append(d)
    d.ready()
    assert d.stop() == 0
    for line in d.stderr:
        record = json.loads(line)
        assert list(record)[:4] == ["timestamp", "level", "logger", "event"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", record["timestamp"])


def test_start_failure_exits_1(tmp_path: Path, daemons: list[Daemon]) -> None:
    """A port already taken: one start_failed line, exit status 1, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = write_config(tmp_path, f'[listeners.smtp]\nprotocol = "smtp"\nport = {port}\n')
        d = Daemon("-c", conf)
        daemons.append(d)
        assert d.proc.wait(TIMEOUT) == 1
    d.join()
    assert "Traceback" not in "".join(d.stderr)
    assert any(json.loads(line)["event"] == "start_failed" for line in d.stderr)


def test_bad_config_exits_1(tmp_path: Path, daemons: list[Daemon]) -> None:
    conf = write_config(tmp_path, extra="frobnicate = 1")
    d = Daemon("-c", conf)
    daemons.append(d)
    assert d.proc.wait(TIMEOUT) == 1
    d.join()
    assert d.stderr == [f"mailserver: error: {conf}: frobnicate: unknown key\n"]


# -- demo account ------------------------------------------------------------------


def test_demo_account_created_once(tmp_path: Path, daemons: list[Daemon]) -> None:
    conf = write_config(tmp_path, extra="demo_account = true")
    d = Daemon("-c", conf)
    daemons.append(d)
    d.ready()
    assert d.stop() == 0
    banner = "".join(d.stdout)
    creds = tmp_path / "data" / "demo-credentials"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    fields = dict(line.split("=", 1) for line in creds.read_text().splitlines())
    assert fields["user"] == "demo@example.test"
    assert "user         demo@example.test" in banner
    assert f"password     {fields['password']}" in banner

    # Second start: same account, password not shown again, file unchanged.
    before = creds.read_bytes()
    d2 = Daemon("-c", conf)
    daemons.append(d2)
    d2.ready()
    assert d2.stop() == 0
    assert creds.read_bytes() == before
    banner2 = "".join(d2.stdout)
    assert fields["password"] not in banner2 and f"see {creds}" in banner2

    # The password works against the real store.
    login = check_login(tmp_path / "data", fields["user"], fields["password"])
    assert login == "demo@example.test"


# -- with the protocol listeners ---------------------------------------------------


def test_accepts_smtp_and_stops_on_sigterm(tmp_path: Path, daemons: list[Daemon]) -> None:
    d = Daemon("-c", write_config(tmp_path, LISTENERS))
    daemons.append(d)
    d.ready()
    assert set(d.ports) == {"smtp", "imaps"} and all(d.ports.values())
    with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=TIMEOUT) as smtp:
        code, _ = smtp.ehlo("client.example")
        assert code == 250
        assert smtp.has_extn("starttls")
    assert d.stop() == 0


def test_shipped_dev_config_starts(tmp_path: Path, daemons: list[Daemon]) -> None:
    """conf/mailserver.toml starts every listener and the demo account.

    The ports are rewritten to 0: tests never bind fixed ports (another
    ./scripts/run on this machine would hold them).
    """
    text = (ROOT / "conf" / "mailserver.toml").read_text()
    shipped_ports = [int(p) for p in re.findall(r"(?m)^port = (\d+)", text)]
    assert sorted(shipped_ports) == [1143, 1993, 2465, 2525, 2587, 2880]
    conf = tmp_path / "conf" / "mailserver.toml"
    conf.parent.mkdir()
    conf.write_text(re.sub(r"(?m)^port = \d+", "port = 0", text))
    d = Daemon("-c", conf, "--data-dir", tmp_path / "var")
    daemons.append(d)
    d.ready()
    assert set(d.ports) == {"smtp", "submission", "submissions", "imap", "imaps", "http"}
    assert d.stop() == 0
    assert (tmp_path / "var" / "demo-credentials").exists()
    assert "demo@example.test" in "".join(d.stdout)


def _alice_over_imaps(d: Daemon) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL("127.0.0.1", d.ports["imaps"], ssl_context=client_tls_context(),
                             timeout=TIMEOUT)
    imap.login("alice@example.test", "alice-secret")
    return imap


def _select_inbox(imap: imaplib.IMAP4) -> tuple[int, int]:
    typ, _ = imap.select("INBOX")
    assert typ == "OK"
    uidvalidity = int(imap.response("UIDVALIDITY")[1][0])
    uidnext = int(imap.response("UIDNEXT")[1][0])
    return uidvalidity, uidnext


def test_message_survives_kill_9_after_250(tmp_path: Path, daemons: list[Daemon]) -> None:
    """SMTP 250 means on disk (RFC 5321 §4.1.1.4, §6.1): kill -9 right after it loses nothing."""
    conf = write_config(tmp_path, LISTENERS)
    add_user(conf, "alice@example.test", "alice-secret")
    d = Daemon("-c", conf)
    daemons.append(d)
    d.ready()

    imap = _alice_over_imaps(d)
    uidvalidity, uidnext = _select_inbox(imap)

    token = uuid.uuid4().hex
    message = (
        "From: bob@elsewhere.example\r\nTo: alice@example.test\r\n"
        f"Subject: durability {token}\r\nMessage-ID: <{token}@elsewhere.example>\r\n\r\n"
        f"body {token}\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=TIMEOUT) as smtp:
        smtp.ehlo("elsewhere.example")
        refused = smtp.sendmail("bob@elsewhere.example", ["alice@example.test"], message)
        assert refused == {}
        d.proc.kill()  # SIGKILL straight after the 250 to DATA
        d.proc.wait(TIMEOUT)
        smtp.close()
    with contextlib.suppress(OSError, imaplib.IMAP4.abort):
        imap.shutdown()

    d2 = Daemon("-c", conf)
    daemons.append(d2)
    d2.ready()
    imap = _alice_over_imaps(d2)
    try:
        assert _select_inbox(imap) == (uidvalidity, uidnext + 1)
        typ, data = imap.uid("FETCH", str(uidnext), "(UID BODY.PEEK[])")
        assert typ == "OK" and data and data[0] is not None
        meta, body = data[0]
        assert f"UID {uidnext}".encode() in meta
        assert body.endswith(message)
        imap.logout()
    finally:
        with contextlib.suppress(OSError):
            imap.shutdown()
    assert d2.stop() == 0


SMTP_ONLY = """
[listeners.smtp]
protocol = "smtp"
address = "127.0.0.1"
port = 0
"""


def _open_transaction(port: int) -> smtplib.SMTP:
    """An SMTP session left in the middle of DATA (headers sent, no final dot)."""
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
    smtp.ehlo("elsewhere.example")
    assert smtp.mail("bob@elsewhere.example")[0] == 250
    assert smtp.rcpt("alice@example.test")[0] == 250
    assert smtp.docmd("DATA")[0] == 354
    smtp.send(b"Subject: in flight\r\n\r\nfirst line\r\n")
    return smtp


def test_sigterm_lets_the_transaction_in_flight_finish(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    conf = write_config(tmp_path, SMTP_ONLY)
    add_user(conf, "alice@example.test", "alice-secret")
    d = Daemon("-c", conf)
    daemons.append(d)
    d.ready()
    smtp = _open_transaction(d.ports["smtp"])
    idle = smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=TIMEOUT)
    try:
        idle.ehlo("idle.example")
        d.proc.send_signal(signal.SIGTERM)
        # An idle session is told to go at once (RFC 5321 §3.8: 421): shutdown has begun.
        code, _ = idle.getreply()
        assert code == 421
        # New connections are no longer accepted...
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", d.ports["smtp"]), timeout=TIMEOUT).close()
        # ...but the transaction under way completes and is acknowledged.
        smtp.send(b"last line\r\n.\r\n")
        code, _ = smtp.getreply()
        assert code == 250
    finally:
        smtp.close()
        idle.close()
    assert d.proc.wait(TIMEOUT) == 0
    d.join()
    assert inbox_size(tmp_path / "data", "alice@example.test") == 1


def test_second_sigterm_exits_at_once(tmp_path: Path, daemons: list[Daemon]) -> None:
    conf = write_config(tmp_path, SMTP_ONLY + "\n[limits]\nshutdown_grace = 600.0\n")
    add_user(conf, "alice@example.test", "alice-secret")
    d = Daemon("-c", conf)
    daemons.append(d)
    d.ready()
    smtp = _open_transaction(d.ports["smtp"])  # keeps the first SIGTERM waiting
    try:
        d.proc.send_signal(signal.SIGTERM)
        d.wait_for("shutdown_requested")
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(TIMEOUT) == 128 + signal.SIGTERM
    finally:
        smtp.close()
    d.join()
    assert any(json.loads(line)["event"] == "shutdown_forced" for line in d.stderr)


def test_pid_file_and_mailserver_stop(tmp_path: Path, daemons: list[Daemon]) -> None:
    """The daemon holds ``data_dir/run/mailserver.pid`` (a stale one, left by
    a killed daemon, is taken over); a second daemon on the same data
    directory refuses to start; ``mailserver stop`` stops it and waits."""
    conf = write_config(tmp_path)
    pid_path = tmp_path / "data" / "run" / "mailserver.pid"
    pid_path.parent.mkdir(parents=True)
    pid_path.write_text("999999\n")  # stale: nobody holds its lock
    d = Daemon("-c", conf)
    daemons.append(d)
    d.ready()
    assert pid_path.read_text() == f"{d.proc.pid}\n"
    second = Daemon("-c", conf)
    daemons.append(second)
    assert second.proc.wait(TIMEOUT) == 1
    second.join()
    assert "already serves this data directory" in "".join(second.stderr)
    out = run_cli("stop", "-c", conf, "--timeout", str(TIMEOUT))
    assert out.returncode == 0 and out.stdout == f"stopped (pid {d.proc.pid})\n", out
    assert d.proc.wait(TIMEOUT) == 0
    assert not pid_path.exists()
    out = run_cli("stop", "-c", conf)
    assert out.returncode == 0 and out.stdout.startswith("not running")
