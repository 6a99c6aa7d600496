"""SIGHUP reloads the configuration's log settings, TLS certificate, DKIM
keys, limits and checks without dropping a connection, with one process and with workers: an
IMAP IDLE session and an SMTP session held open across the reload keep
working, the next TLS handshake presents the new certificate, and the new
log level holds for new connections."""

from __future__ import annotations

import hashlib
import signal
import smtplib
import socket
import ssl
from pathlib import Path

import pytest
from support.daemon import Daemon, add_user
from support.wire import RawImap, client_tls_context

from mailserver.tls import make_self_signed

CONFIG = """hostname = "mx.example.test"
data_dir = "data"
domains = ["example.test"]
workers = {workers}
[log]
format = "json"
level = "{level}"
[tls]
cert_file = "{cert}"
key_file = "{key}"
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


def served_cert(port: int) -> bytes:
    """SHA-256 of the certificate a new TLS connection to ``port`` gets."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_tls_context().wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).digest()


def fingerprint(path: Path) -> bytes:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(path.read_text())).digest()


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_without_dropping_connections(tmp_path: Path, workers: int) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    make_self_signed("old.example.test", cert, key)
    conf = tmp_path / "mailserver.toml"

    def write(level: str, limits: str = "") -> None:
        conf.write_text(CONFIG.format(workers=workers, level=level, cert=cert, key=key) + limits)

    write("info")
    add_user(conf, "alice@example.test", "alice-secret")
    d = Daemon("-c", conf)
    try:
        d.ready()
        old = fingerprint(cert)
        assert served_cert(d.ports["imaps"]) == old
        imap = RawImap(d.ports["imaps"], tls=True)
        imap.login()
        imap.ok("s", "SELECT INBOX")
        imap.send(b"i IDLE\r\n")
        assert imap.readline().startswith(b"+ ")
        smtp = smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=10)
        smtp.starttls(context=client_tls_context())
        smtp.ehlo("client.example.net")

        make_self_signed("new.example.test", cert, key)  # the renewed certificate
        write("warning", "[limits]\nmax_message_size = 1234567\n"
              "connections_per_minute_per_ip = 3\ntrusted_networks = []\n")
        d.proc.send_signal(signal.SIGHUP)
        reloaded: set[int] = set()
        while len(reloaded) < workers:  # each worker (or the one process) says so
            event = d.wait_for("config_reloaded")
            if workers == 1 or "worker" in event:
                assert {"log", "tls", "dkim", "limits", "checks"} <= set(event["parts"])
                reloaded.add(event.get("worker", 0))
        new = fingerprint(cert)
        assert new != old and served_cert(d.ports["imaps"]) == new

        # The sessions opened before the reload are still served.
        smtp.sendmail("x@remote.test", ["alice@example.test"], b"Subject: after\r\n\r\nhi\r\n")
        assert imap.readline() == b"* 1 EXISTS\r\n"
        imap.send(b"DONE\r\n")
        assert imap.until_tagged("i")[-1].startswith(b"i OK")
        imap.ok("n", "NOOP")
        smtp.quit()
        imap.ok("z", "LOGOUT")
        imap.close()
        # The new level: a new connection's info line is not written any more;
        # and it gets the new limits (SIZE, RFC 1870).
        seen = len(d.logged("smtp_connect"))
        with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=10) as c:
            c.ehlo("client.example.net")
            assert c.esmtp_features["size"] == "1234567"
        # The connection rate, kept by the counter service (the supervisor's,
        # with workers): the certificate check and that connection were 2 of
        # the 3 allowed in the minute (IMAP and SMTP count together).
        greetings = []
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", d.ports["smtp"]), timeout=10) as s:
                greetings.append(s.makefile("rb").readline()[:9])
        assert greetings[1:] == [b"421 4.7.0"] * 2, greetings
        assert greetings[0] in (b"220 mx.ex", b"421 4.7.0")  # spare credit of the other worker
        assert d.stop() == 0
        assert len(d.logged("smtp_connect")) == seen
    finally:
        d.kill()
