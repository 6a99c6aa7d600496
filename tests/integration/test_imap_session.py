"""IMAP sessions over real sockets: greeting, capabilities, login, TLS, limits,
bad input, logout and shutdown (RFC 3501 §6.1, §6.2, §7.1; RFC 4959; RFC 2971).

``RawImap`` (tests/support/wire.py) speaks the protocol byte for byte, where
imaplib would hide or rewrite what we want to check.
"""

from __future__ import annotations

import base64
import imaplib
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient
from support.server import USERS, ServerThread, make_config
from support.wire import ALICE, RawImap, client_tls_context

# ------------------------------------------------------------------ greeting


def test_greeting_and_capability(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    assert b"mx.example.test" in c.greeting
    lines = c.cmd("a1", "CAPABILITY")
    caps = lines[0].split()
    assert lines[0].startswith(b"* CAPABILITY ")
    for cap in (b"IMAP4rev1", b"LITERAL+", b"SASL-IR", b"IDLE", b"UNSELECT", b"ID",
                b"NAMESPACE", b"ENABLE", b"UIDPLUS", b"MOVE", b"CHILDREN", b"SPECIAL-USE",
                b"STARTTLS", b"AUTH=PLAIN"):
        assert cap in caps
    assert b"LOGINDISABLED" not in caps  # loopback peer: plaintext allowed
    assert lines[-1].startswith(b"a1 OK")
    c.login()
    caps = c.cmd("a2", "CAPABILITY")[0].split()
    assert b"STARTTLS" not in caps and b"AUTH=PLAIN" not in caps
    c.close()


def test_imaps_does_not_offer_starttls(server: ServerThread) -> None:
    c = RawImap(server.port("imaps"), tls=True)
    assert b"STARTTLS" not in c.greeting and b"AUTH=PLAIN" in c.greeting
    c.login()
    assert c.cmd("z", "LOGOUT")[0] == b"* BYE Logging out\r\n"
    c.close()


def test_imapclient_over_implicit_tls(server: ServerThread) -> None:
    with IMAPClient("127.0.0.1", port=server.port("imaps"),
                    ssl_context=client_tls_context()) as c:
        c.login(*ALICE)
        assert c.select_folder("INBOX")[b"EXISTS"] == 0


def test_starttls_then_login(server: ServerThread) -> None:
    c = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    c.starttls(ssl_context=client_tls_context())
    typ, caps = c.capability()
    assert b"STARTTLS" not in caps[0].split()
    assert c.login(*ALICE)[0] == "OK"
    c.logout()


def test_starttls_discards_pipelined_plaintext(server: ServerThread) -> None:
    """Commands sent in the same packet as STARTTLS must not run (injection)."""
    c = RawImap(server.port("imap"))
    c.send(b"s1 STARTTLS\r\ns2 CAPABILITY\r\n")
    assert c.readline().startswith(b"s1 OK")
    c.start_tls()
    c.send(b"s3 NOOP\r\n")
    assert c.readline().startswith(b"s3 OK")
    c.close()


def test_starttls_refused_on_implicit_and_after_login(server: ServerThread) -> None:
    c = RawImap(server.port("imaps"), tls=True)
    assert c.cmd("t", "STARTTLS")[-1].startswith(b"t NO")
    c.login()
    assert c.cmd("u", "STARTTLS")[-1].startswith(b"u BAD")
    c.close()


# --------------------------------------------------------------------- login


def test_bad_login_then_too_many_failures(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    assert c.cmd("a", 'LOGIN alice@example.test "wrong"')[-1].startswith(
        b"a NO [AUTHENTICATIONFAILED]")
    assert c.cmd("b", 'LOGIN nobody@example.test "x"')[-1].startswith(
        b"b NO [AUTHENTICATIONFAILED]")
    assert c.cmd("c", 'LOGIN alice@example.test "x"')[-1].startswith(
        b"c NO [AUTHENTICATIONFAILED]")
    rest = c.read_all()
    assert rest and rest[0].startswith(b"* BYE")
    c.close()


def test_login_case_insensitive_user_and_wrong_state(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    assert c.cmd("a", "SELECT INBOX")[-1].startswith(b"a BAD")
    c.login("ALICE@Example.TEST", ALICE[1])
    assert c.cmd("b", 'LOGIN "a" "b"')[-1].startswith(b"b BAD")
    assert c.cmd("c", "FETCH 1 FLAGS")[-1].startswith(b"c BAD")
    c.close()


def test_authenticate_plain_sasl_ir(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    ir = base64.b64encode(b"\0alice@example.test\0alice-secret").decode()
    lines = c.cmd("a", f"AUTHENTICATE PLAIN {ir}")
    assert lines[-1].startswith(b"a OK [CAPABILITY ")
    assert c.cmd("b", "SELECT INBOX")[-1].startswith(b"b OK [READ-WRITE]")
    c.close()


def test_authenticate_plain_with_continuation_and_cancel(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    c.send(b"a AUTHENTICATE PLAIN\r\n")
    assert c.readline().startswith(b"+")
    c.send(b"*\r\n")
    assert c.readline().startswith(b"a BAD")
    c.send(b"b AUTHENTICATE PLAIN\r\n")
    assert c.readline().startswith(b"+")
    c.send(base64.b64encode(b"\0bob@example.test\0bob-secret") + b"\r\n")
    assert c.readline().startswith(b"b OK")
    c.send(b"c AUTHENTICATE PLAIN\r\n")  # not in this state
    assert c.readline().startswith(b"c BAD")
    c.close()


def test_authenticate_bad_credentials_and_mechanism(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    bad = base64.b64encode(b"\0alice@example.test\0nope").decode()
    assert c.cmd("a", f"AUTHENTICATE PLAIN {bad}")[-1].startswith(b"a NO [AUTHENTICATIONFAILED]")
    assert c.cmd("b", "AUTHENTICATE CRAM-MD5")[-1].startswith(b"b NO")
    c.send(b"c AUTHENTICATE PLAIN\r\n")
    c.readline()
    c.send(b"!!!not base64\r\n")
    assert c.readline().startswith(b"c BAD")
    c.login()
    c.close()


def test_imapclient_plain_login_over_starttls(server: ServerThread) -> None:
    c = IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False)
    c.starttls(client_tls_context())
    c.plain_login(*ALICE)
    assert b"INBOX" in [f[2].encode() for f in c.list_folders()]
    c.logout()


# ------------------------------------------------------------ small commands


def test_id_namespace_enable_noop_logout(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    lines = c.cmd("a", 'ID ("name" "pytest" "version" "1")')
    assert lines[0].startswith(b'* ID ("name" "mailserver"') and lines[-1].startswith(b"a OK")
    assert c.cmd("b", "ID NIL")[-1].startswith(b"b OK")
    c.login()
    assert c.cmd("c", "NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    lines = c.cmd("d", "ENABLE CONDSTORE")
    assert lines[0] == b"* ENABLED CONDSTORE\r\n" and lines[-1].startswith(b"d OK")
    assert c.cmd("e", "NOOP") == [b"e OK NOOP completed\r\n"]
    lines = c.cmd("f", "LOGOUT")
    assert lines[0].startswith(b"* BYE") and lines[-1].startswith(b"f OK")
    assert c.read_all() == []
    c.close()


# ---------------------------------------------------------------- bad input


def test_bad_input_keeps_connection_usable(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    assert c.cmd("a", "FROBNICATE now")[-1].startswith(b"a BAD")
    c.send(b"\r\n")  # empty line: untagged BAD
    assert c.readline().startswith(b"* BAD")
    c.send(b"no-space-no-command\r\n")
    assert b"BAD" in c.readline()
    c.login()
    c.cmd("b", "SELECT INBOX")
    c.cmd("c", 'APPEND INBOX {6+}\r\nhi\r\n\r\n')
    assert c.cmd("d", "FETCH 2 FLAGS")[-1].startswith(b"d BAD")  # out of range
    assert c.cmd("e", "FETCH 0 FLAGS")[-1].startswith(b"e BAD")
    assert c.cmd("f", "FETCH x:y FLAGS")[-1].startswith(b"f BAD")
    assert c.cmd("g", "FETCH 1 (FLAGS")[-1].startswith(b"g BAD")
    assert c.cmd("h", "STORE 1 +FLAGS (\\Seen")[-1].startswith(b"h BAD")
    assert c.cmd("i", "UID FETCH 99 FLAGS") == [b"i OK UID FETCH completed\r\n"]
    assert c.cmd("j", "NOOP")[-1].startswith(b"j OK")
    c.close()


def test_oversize_literal_and_long_line(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path / "d", imap_max_literal_size=1000,
                                   imap_max_line_length=1024))
    try:
        srv.add_user(*ALICE)
        c = RawImap(srv.port("imap"))
        c.login()
        c.send(b"a APPEND INBOX {5000}\r\n")
        assert c.readline().startswith(b"a NO [TOOBIG]")
        c.send(b"b NOOP " + b"x" * 5000 + b"\r\n")
        assert c.readline().startswith(b"b BAD")
        assert c.cmd("c", "NOOP")[-1].startswith(b"c OK")
        # A non-synchronizing literal that is too big cannot be skipped: BYE.
        c.send(b"d APPEND INBOX {5000+}\r\n")
        rest = c.read_all()
        assert any(line.startswith(b"* BYE") for line in rest)
        c.close()
    finally:
        srv.stop()


def test_autologout(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path / "d", imap_idle_timeout=0.3))
    try:
        c = RawImap(srv.port("imap"))
        assert c.read_all()[0].startswith(b"* BYE Autologout")
        c.close()
        with RawImap(srv.port("imap")) as d:  # the next client is served
            assert d.cmd("n", "NOOP")[-1].startswith(b"n OK")
    finally:
        srv.stop()


def test_connections_per_ip_limit(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path / "d", max_connections_per_ip=2))
    try:
        a = RawImap(srv.port("imap"))
        b = RawImap(srv.port("imap"))
        c = RawImap(srv.port("imap"))
        assert a.greeting.startswith(b"* OK") and b.greeting.startswith(b"* OK")
        assert c.greeting == b"* BYE Too many connections\r\n"
        a.cmd("x", "LOGOUT")
        a.read_all()
        for x in (a, b, c):
            x.close()
        # The next client is served once the server has seen a slot freed
        # (it may come a moment too early and retry).
        for _ in range(100):
            d = RawImap(srv.port("imap"))
            if d.greeting.startswith(b"* OK"):
                break
            d.close()
            time.sleep(0.02)
        with d:
            assert d.cmd("n", "NOOP")[-1].startswith(b"n OK")
    finally:
        srv.stop()


def test_shutdown_says_bye_to_idle_sessions(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path / "d"))
    stopped = False
    try:
        for address, password in USERS.items():
            srv.add_user(address, password)
        c = RawImap(srv.port("imap"))
        c.login()
        d = RawImap(srv.port("imap"))
        d.login()
        d.cmd("s", "SELECT INBOX")
        d.send(b"i IDLE\r\n")
        assert d.readline().startswith(b"+")
        srv.stop()
        stopped = True
        assert c.read_all() == [b"* BYE Server shutting down\r\n"]
        assert d.read_all() == [b"* BYE Server shutting down\r\n"]
        c.close()
        d.close()
    finally:
        if not stopped:
            srv.stop()


@pytest.mark.parametrize("listener", ["imap", "imaps"])
def test_client_vanishing_mid_command(server: ServerThread, listener: str) -> None:
    c = RawImap(server.port(listener), tls=listener == "imaps")
    c.login()
    c.send(b"a APPEND INBOX {100}\r\n")
    assert c.readline().startswith(b"+")
    c.send(b"partial")
    c.close()
    # The server is still fine for others.
    d = RawImap(server.port("imap"))
    d.login()
    assert d.cmd("b", "STATUS INBOX (MESSAGES)")[0] == b'* STATUS "INBOX" (MESSAGES 0)\r\n'
    d.close()
