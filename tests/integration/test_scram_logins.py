"""SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677; channel binding
``tls-server-end-point``, RFC 5929 §4) through real smtplib and imaplib
sessions: the keys beside the argon2id hash are made when the password is
set and, for an account that has none, at its next PLAIN login; -PLUS is
offered only over TLS; a wrong password or another connection's binding
data is refused with SMTP 535 5.7.8 / IMAP NO [AUTHENTICATIONFAILED]."""

from __future__ import annotations

import imaplib
import smtplib

import pytest
from support.scram import ScramClient, end_point, smtp_auth
from support.server import USERS, ServerThread
from support.wire import client_tls_context

ALICE = "alice@example.test"
PW = USERS[ALICE]


def submissions(server: ServerThread) -> smtplib.SMTP_SSL:
    c = smtplib.SMTP_SSL("127.0.0.1", server.port("submissions"), context=client_tls_context())
    c.ehlo("client.example.net")
    return c


def auth_line(c: smtplib.SMTP) -> list[str]:
    return (c.esmtp_features.get("auth") or "").split()


def test_keys_come_with_the_next_plain_login_then_scram_works(server: ServerThread) -> None:
    # Test accounts are made with a bare hash: no SCRAM keys yet.
    assert server.store.get_account(ALICE).scram is None
    with submissions(server) as c:
        assert {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"} <= set(auth_line(c))
        code, text = smtp_auth(c, "SCRAM-SHA-256", ScramClient(ALICE, PW))
        assert code == 535 and text.startswith(b"5.7.8")
    with submissions(server) as c:
        c.login(ALICE, PW)  # PLAIN: the keys are made now
    assert server.store.get_account(ALICE).scram is not None
    with submissions(server) as c:
        assert smtp_auth(c, "SCRAM-SHA-256", ScramClient(ALICE, PW))[0] == 235
        c.mail(ALICE)  # authenticated: submission accepts the envelope
    with submissions(server) as c:
        assert smtp_auth(c, "SCRAM-SHA-256", ScramClient(ALICE, PW), initial=False)[0] == 235
    with submissions(server) as c:
        client = ScramClient(ALICE, PW, cb_name="tls-server-end-point",
                             cb_data=end_point(c.sock))  # type: ignore[arg-type]
        assert smtp_auth(c, "SCRAM-SHA-256-PLUS", client)[0] == 235


def test_wrong_password_and_wrong_binding_are_refused(server: ServerThread) -> None:
    server.run(server.app.admin().set_password(ALICE, PW))  # keys made at password set
    assert server.store.get_account(ALICE).scram is not None
    # A session ends after 3 failures (``auth_too_many_failures``): one each.
    refused = [
        ("SCRAM-SHA-256", ScramClient(ALICE, "not-" + PW)),
        # Another channel's data (a man in the middle's).
        ("SCRAM-SHA-256-PLUS", ScramClient(ALICE, PW, cb_name="tls-server-end-point",
                                           cb_data=b"\0" * 32)),
        # An unknown user fails the same way, at the proof.
        ("SCRAM-SHA-256", ScramClient("nobody@example.test", PW)),
        # "y": the client could bind and believes we cannot, though we offered -PLUS.
        ("SCRAM-SHA-256", ScramClient(ALICE, PW, cb_flag="y")),
    ]
    for mechanism, client in refused:
        with submissions(server) as c:
            code, text = smtp_auth(c, mechanism, client)
            assert (code, text[:5]) == (535, b"5.7.8"), (mechanism, client.gs2)
    with submissions(server) as c:  # garbage is a syntax error, not a crash
        assert c.docmd("AUTH", "SCRAM-SHA-256 bm9wZQ==")[0] == 501


def test_plus_is_offered_only_over_tls(server: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as c:
        c.ehlo("client.example.net")
        assert "SCRAM-SHA-256-PLUS" not in auth_line(c)
        c.starttls(context=client_tls_context())
        c.ehlo("client.example.net")
        assert "SCRAM-SHA-256-PLUS" in auth_line(c)


def test_imap_authenticate(server: ServerThread) -> None:
    server.run(server.app.admin().set_password(ALICE, PW))
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                           ssl_context=client_tls_context()) as c:
        caps = c.capabilities
        assert "AUTH=SCRAM-SHA-256" in caps and "AUTH=SCRAM-SHA-256-PLUS" in caps
        typ, _ = c.authenticate("SCRAM-SHA-256", ScramClient(ALICE, PW).authobject())
        assert typ == "OK" and c.state == "AUTH"
        assert c.select("INBOX")[0] == "OK"
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                           ssl_context=client_tls_context()) as c:
        client = ScramClient(ALICE, PW, cb_name="tls-server-end-point", cb_data=end_point(c.sock))
        assert c.authenticate("SCRAM-SHA-256-PLUS", client.authobject())[0] == "OK"
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                           ssl_context=client_tls_context()) as c:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            c.authenticate("SCRAM-SHA-256", ScramClient(ALICE, "wrong").authobject())
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as c:
        assert "AUTH=SCRAM-SHA-256-PLUS" not in c.capabilities
