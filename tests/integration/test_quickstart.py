"""``mailserver quickstart``: a production configuration, the account,
postmaster, DKIM keys and a certificate, and every DNS record printed; the
daemon then starts on that configuration (ports moved to loopback ephemeral
ones for the test) and serves the account.  Never overwrites."""

from __future__ import annotations

import imaplib
import re
import smtplib
import tomllib
from pathlib import Path

from support.daemon import Daemon, run_cli
from support.wire import client_tls_context


def test_quickstart_then_serve(tmp_path: Path) -> None:
    out = run_cli("quickstart", "me@example.org", "-c", tmp_path / "etc")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    password = re.search(r"^Password: +(\S+)$", text, re.M).group(1)  # type: ignore[union-attr]
    conf = tmp_path / "etc" / "mailserver.toml"
    assert (conf.stat().st_mode & 0o777) == 0o640
    settings = tomllib.loads(conf.read_text())
    assert settings["hostname"] == "mail.example.org"
    assert {(x["port"], x["tls"]) for x in settings["listeners"].values()} >= {
        (25, "starttls"), (587, "starttls"), (465, "implicit"), (143, "starttls"),
        (993, "implicit")}
    assert settings["checks"]["verify"] is True
    for line in ("example.org. 3600 IN MX 10 mail.example.org.",
                 'example.org. 3600 IN TXT "v=spf1 mx -all"',
                 '_dmarc.example.org. 3600 IN TXT "v=DMARC1; p=quarantine; '
                 'rua=mailto:postmaster@example.org"',
                 '_smtp._tls.example.org. 3600 IN TXT "v=TLSRPTv1; '
                 'rua=mailto:postmaster@example.org"',
                 "_imaps._tcp.example.org. 3600 IN SRV 0 1 993 mail.example.org.",
                 "autoconfig.example.org. 3600 IN CNAME mail.example.org."):
        assert line in text.splitlines(), line
    assert re.search(r"^mail-\d{8}\._domainkey\.example\.org\. 3600 IN TXT \"v=DKIM1; k=rsa;",
                     text, re.M)
    assert re.search(r"^mail-\d{8}-ed25519\._domainkey\.example\.org\. .*k=ed25519", text, re.M)
    assert "_mta-sts.example.org. 3600 IN TXT \"v=STSv1; id=" in text
    assert (tmp_path / "etc" / "data" / "tls" / "cert.pem").exists()

    # Never overwrites: a second run fails and leaves everything as it was.
    before = conf.read_bytes()
    again = run_cli("quickstart", "me@example.org", "-c", tmp_path / "etc")
    assert again.returncode == 1 and "never overwrites" in again.stderr
    assert conf.read_bytes() == before

    # Serve it (loopback, ephemeral ports, IPv4 only, JSON logs already).
    served = re.sub(r'\[listeners\.\w+6\]\n(?:[a-z]+ = .*\n)+\n', "", conf.read_text())
    served = served.replace('address = "0.0.0.0"', 'address = "127.0.0.1"')
    served = re.sub(r"^port = \d+$", "port = 0", served, flags=re.M)
    served = served.replace("verify = true", "verify = false")  # no DNS here
    conf.write_text(served)
    d = Daemon("-c", conf)
    try:
        d.ready()
        with smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=10) as c:
            c.starttls(context=client_tls_context())
            c.sendmail("x@remote.test", ["postmaster@example.org"], b"Subject: hi\r\n\r\nhi\r\n")
        with imaplib.IMAP4_SSL("127.0.0.1", d.ports["imaps"],
                               ssl_context=client_tls_context()) as imap:
            imap.login("me@example.org", password)
            typ, data = imap.select("INBOX")
            assert typ == "OK" and data == [b"1"]  # postmaster@ reached the account
            imap.logout()
        assert d.stop() == 0
    finally:
        d.kill()
