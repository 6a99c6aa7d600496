"""The shipped fail2ban filter (conf/fail2ban/filter.d/mailserver.conf)
against the daemon's real log lines: a failed SMTP AUTH and a failed IMAP
LOGIN each give a line the filter matches, with the client's address as
<HOST>, at the same level (warning); no other line of the session matches.

fail2ban itself is not installed here (its Debian package starts a service
that edits the firewall): the failregex lines are compiled with Python's
``re`` after the substitution fail2ban makes for ``<HOST>``, which is what
``fail2ban-regex`` would do with them."""

from __future__ import annotations

import configparser
import imaplib
import json
import re
import smtplib
from pathlib import Path

import pytest
from support.daemon import ROOT, Daemon, add_user
from support.wire import client_tls_context

FILTER = ROOT / "conf" / "fail2ban" / "filter.d" / "mailserver.conf"
HOST = r"(?P<host>[0-9A-Fa-f.:]+)"  # fail2ban's <HOST>, narrowed to IP addresses

CONFIG = """hostname = "mx.example.test"
data_dir = "data"
domains = ["example.test"]
[log]
format = "{fmt}"
[listeners.submissions]
protocol = "submission"
address = "127.0.0.1"
port = 0
tls = "implicit"
[listeners.imap]
protocol = "imap"
address = "127.0.0.1"
port = 0
"""


def failregexes() -> list[re.Pattern[str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(FILTER)
    lines = [x.strip() for x in parser["Definition"]["failregex"].splitlines() if x.strip()]
    assert len(lines) == 2
    return [re.compile(x.replace("<HOST>", HOST)) for x in lines]



@pytest.mark.parametrize("fmt", ["json", "console"])
def test_filter_matches_failed_logins_only(tmp_path: Path, daemons: list[Daemon],
                                           fmt: str) -> None:
    conf = tmp_path / "mailserver.toml"
    conf.write_text(CONFIG.format(fmt=fmt))
    add_user(conf, "alice@example.test", "right-password")
    d = Daemon("-c", conf, env={"NO_COLOR": "1"})
    daemons.append(d)
    d.ready()
    with smtplib.SMTP_SSL("127.0.0.1", d.ports["submissions"],
                          context=client_tls_context()) as c:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.login("alice@example.test", "wrong")
        c.login("alice@example.test", "right-password")
    with imaplib.IMAP4("127.0.0.1", d.ports["imap"]) as c:
        with pytest.raises(imaplib.IMAP4.error):
            c.login("alice@example.test", "wrong")
        c.login("alice@example.test", "right-password")
        c.logout()
    assert d.stop() == 0
    regexes = failregexes()
    hits = [(line, m) for line in d.stderr for r in regexes if (m := r.search(line))]
    failures = [x for x in d.stderr if "auth_failed" in x or "imap_login_failed" in x]
    # smtplib tries more than one mechanism: each refused one is a line.
    assert [line for line, _ in hits] == failures and len(failures) >= 2, "".join(d.stderr)
    assert any("imap_login_failed" in x for x in failures)
    assert {m.group("host") for _, m in hits} == {"127.0.0.1"}
    if fmt == "json":
        records = [json.loads(line) for line, _ in hits]
        assert {r["event"] for r in records} == {"auth_failed", "imap_login_failed"}
        assert {r["level"] for r in records} == {"warning"}
        # The logout has its own line, with the user.
        assert any(json.loads(x)["event"] == "imap_logout"
                   and json.loads(x).get("user") == "alice@example.test" for x in d.stderr)
