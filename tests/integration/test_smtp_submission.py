"""Message submission (RFC 6409, RFC 8314): AUTH over TLS, sender ownership, fix-ups."""

from __future__ import annotations

import base64
import smtplib
import ssl

import aiosmtplib
import pytest

ALICE = "alice@example.test"
BOB = "bob@example.test"


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def inbox(server, account: str) -> list:
    mailbox = server.call(server.store.get_mailbox, account, "INBOX")
    return server.call(server.store.list_messages, mailbox.id)


def blob_of(server, record) -> bytes:
    return server.call(server.store.get_blob, record.blob_id)


def test_auth_refused_before_tls(server):
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as client:
        code, text = client.ehlo("client.test")
        keywords = text.decode().split("\n")
        assert "STARTTLS" in keywords
        assert not any(k.startswith("AUTH") for k in keywords)
        code, text = client.docmd("AUTH", "PLAIN " + b64(b"\0alice@example.test\0alice-secret"))
        assert (code, text[:7]) == (538, b"5.7.11 ")
        code, text = client.docmd("MAIL FROM:<alice@example.test>")
        assert (code, text[:6]) == (530, b"5.7.0 ")


def test_submission_flow(server):
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as client:
        client.starttls(context=client_tls())
        client.ehlo("laptop.test")
        assert "PLAIN" in client.esmtp_features["auth"].split()
        assert "LOGIN" in client.esmtp_features["auth"].split()
        # Not yet authenticated.
        code, text = client.docmd("MAIL FROM:<alice@example.test>")
        assert (code, text[:6]) == (530, b"5.7.0 ")
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login(ALICE, "wrong")
        assert info.value.smtp_code == 535
        assert info.value.smtp_error.startswith(b"5.7.8 ")
        assert client.login(ALICE, "alice-secret")[0] == 235
        # Someone else's address is refused.
        code, text = client.docmd("MAIL FROM:<bob@example.test>")
        assert (code, text[:6]) == (553, b"5.7.1 ")
        client.rset()
        assert client.mail(ALICE)[0] == 250
        assert client.rcpt(BOB)[0] == 250
        # Remote recipients are queued: see test_submission_outbound.py.
        assert (
            client.data(b"From: alice@example.test\r\nSubject: hi bob\r\n\r\nhello\r\n")[0] == 250
        )
    [record] = inbox(server, BOB)
    blob = blob_of(server, record)
    assert record.prefix.startswith(b"Return-Path: <alice@example.test>\r\n")
    header = blob.split(b"\r\n\r\n", 1)[0]
    assert b" with ESMTPSA id " in header
    assert b"\r\nMessage-ID: <" in header
    assert b"\r\nDate: " in header
    assert blob.endswith(b"From: alice@example.test\r\nSubject: hi bob\r\n\r\nhello\r\n")


def test_existing_message_id_and_date_are_kept(server):
    body = (
        b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nmessage-id: <given@laptop.test>\r\n"
        b"Subject: x\r\n\r\nx\r\n"
    )
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as client:
        client.starttls(context=client_tls())
        client.login(ALICE, "alice-secret")
        assert client.sendmail(ALICE, [BOB], body) == {}
    [record] = inbox(server, BOB)
    blob = blob_of(server, record)
    assert blob.count(b"Message-ID") + blob.count(b"message-id") == 1
    assert blob.count(b"Date: ") == 1
    assert blob.endswith(body)


def test_auth_login_and_alias_sender(server):
    server.run(server.store.add_alias("alice.smith@example.test", ALICE))
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as client:
        client.starttls(context=client_tls())
        client.ehlo()
        client.user, client.password = ALICE, "alice-secret"
        assert client.auth("LOGIN", client.auth_login)[0] == 235
        assert client.docmd("AUTH PLAIN")[0] == 503  # already authenticated
        assert client.sendmail("alice.smith@example.test", [BOB], b"Subject: a\r\n\r\na\r\n") == {}
        assert client.sendmail("Alice+lists@example.test", [BOB], b"Subject: b\r\n\r\nb\r\n") == {}
    assert len(inbox(server, BOB)) == 2


def test_auth_plain_cancel_and_bad_base64(server):
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as client:
        client.starttls(context=client_tls())
        client.ehlo()
        assert client.docmd("AUTH PLAIN")[0] == 334
        code, text = client.docmd("*")
        assert (code, text[:6]) == (501, b"5.7.0 ")
        code, text = client.docmd("AUTH", "PLAIN !!notbase64")
        assert (code, text[:6]) == (501, b"5.5.2 ")
        code, text = client.docmd("AUTH", "NTLM")
        assert (code, text[:6]) == (504, b"5.5.4 ")
        # Initial response given in lower-case mechanism name (case-insensitive).
        code, _ = client.docmd("AUTH", "plain " + b64(b"\0alice@example.test\0alice-secret"))
        assert code == 235


def test_over_long_auth_answer(server):
    limit = server.config.limits.smtp_max_line_length
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as client:
        client.starttls(context=client_tls())
        client.ehlo()
        assert client.docmd("AUTH LOGIN")[0] == 334
        code, text = client.docmd("x" * (limit * 2))
        assert (code, text[:6]) == (500, b"5.5.2 ")
        assert client.noop()[0] == 250
        assert client.login(ALICE, "alice-secret")[0] == 235


def test_auth_failures_close_the_connection(server_factory):
    server = server_factory(max_auth_failures=2)
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as client:
        client.starttls(context=client_tls())
        client.ehlo()
        bad = "PLAIN " + b64(b"\0alice@example.test\0nope")
        assert client.docmd("AUTH", bad)[0] == 535
        code, text = client.docmd("AUTH", bad)
        assert code == 535
        # The 421 follows the second 535; then the server hangs up.
        assert client.getreply()[0] == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_authzid_other_than_user_is_refused(server):
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as client:
        client.starttls(context=client_tls())
        client.ehlo()
        code, _ = client.docmd(
            "AUTH", "PLAIN " + b64(b"bob@example.test\0alice@example.test\0alice-secret")
        )
        assert code == 535


async def test_implicit_tls_submission(server):
    message = b"From: bob@example.test\r\nSubject: implicit\r\n\r\nvia 465\r\n"
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=server.port("submissions"),
        use_tls=True,
        tls_context=client_tls(),
    ) as client:
        await client.ehlo()
        assert client.supports_extension("auth")
        assert not client.supports_extension("starttls")
        await client.login(BOB, "bob-secret")
        errors, response = await client.sendmail(BOB, [ALICE], message)
        assert errors == {}
        assert response.startswith("2.0.0 Ok: queued as ")
    mailbox = server.call(server.store.get_mailbox, ALICE, "INBOX")
    [record] = server.call(server.store.list_messages, mailbox.id)
    blob = server.call(server.store.get_blob, record.blob_id)
    assert b" with ESMTPSA id " in blob
    assert blob.endswith(message)
