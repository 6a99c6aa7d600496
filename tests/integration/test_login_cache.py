"""Logins through the verified-credential cache, the configured argon2id
parameters and the rehash (issue #13 §1), by real IMAP and SMTP clients.

The server hashes with cheap parameters here (a test needs the behaviour,
not the cost); the cache's ``stats`` show what went to argon2.
"""

from __future__ import annotations

import base64
import dataclasses
import imaplib
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import run_cli
from support.server import ServerThread, make_config, running_server

from mailserver.auth.cache import CacheStats
from mailserver.auth.passwords import Argon2Params, hash_password
from mailserver.config import AuthSettings

ALICE = "alice@example.test"
SECRET = "alice-secret"
#: Failed logins are throttled (``auth.throttle``); not the subject here.
#: What the server is configured with (cheap, see the module docstring).
CHEAP = AuthSettings(argon2_memory=256, argon2_time_cost=1, argon2_parallelism=1,
                     hash_threads=1)
CHEAP_PARAMS = Argon2Params(256, 1, 1)


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _serve(tmp_path: Path, auth: AuthSettings = CHEAP,
           user_params: Argon2Params = CHEAP_PARAMS) -> ServerThread:
    config = dataclasses.replace(make_config(tmp_path / "data", auth_failure_delay=0.0), auth=auth)
    srv = ServerThread(config)
    srv.run(srv.store.add_account(ALICE, hash_password(SECRET, user_params)))
    return srv


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = _serve(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def imap_login(srv: ServerThread, password: str, user: str = ALICE) -> bool:
    with imaplib.IMAP4("127.0.0.1", srv.port("imap")) as client:
        try:
            client.login(user, password)
        except imaplib.IMAP4.error:
            return False
        client.logout()
        return True


def imap_authenticate(srv: ServerThread, password: str) -> bool:
    with imaplib.IMAP4("127.0.0.1", srv.port("imap")) as client:
        try:
            client.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{password}".encode())
        except imaplib.IMAP4.error:
            return False
        client.logout()
        return True


def smtp_login(srv: ServerThread, password: str) -> bool:
    with smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"), context=_tls()) as client:
        client.ehlo("client.test")
        # One AUTH PLAIN (RFC 4616): smtplib's login() would try further mechanisms.
        response = base64.b64encode(f"\0{ALICE}\0{password}".encode()).decode()
        code, _ = client.docmd("AUTH", "PLAIN " + response)
        assert code in (235, 535), code
        return code == 235


def stats(srv: ServerThread) -> CacheStats:
    assert srv.app.services is not None
    return dataclasses.replace(srv.app.services.authenticator.cache.stats)


def test_imap_and_smtp_logins_share_the_cache(server: ServerThread) -> None:
    assert imap_login(server, SECRET)
    assert stats(server) == CacheStats(hits=0, misses=1, entries=1)
    assert imap_login(server, SECRET)
    assert imap_authenticate(server, SECRET)
    assert smtp_login(server, SECRET)  # SMTP AUTH: the same cache below SmtpHooks.authenticate
    assert stats(server) == CacheStats(hits=3, misses=1, entries=1)
    # A wrong password is never answered from the cache, by either protocol.
    assert not imap_login(server, "alice-secreT")
    assert not smtp_login(server, SECRET + " ")
    after = stats(server)
    assert (after.hits, after.misses) == (3, 3)
    # The login name is case-insensitive: the same account, the same entry.
    assert imap_login(server, SECRET, user="ALICE@Example.TEST")
    assert stats(server).hits == 4
    # An unknown account costs a (dummy) verification; the cache is not asked.
    assert not imap_login(server, SECRET, user="nobody@example.test")
    assert stats(server) == CacheStats(hits=4, misses=3, entries=1)


def test_password_change_disable_delete_invalidate(server: ServerThread) -> None:
    store = server.store
    assert imap_login(server, SECRET) and imap_login(server, SECRET)
    assert stats(server).hits == 1
    # Password change (in this process): the old password fails at once.
    server.run(store.set_password_hash(ALICE, hash_password("new-secret", CHEAP_PARAMS)))
    assert not imap_login(server, SECRET)
    assert not smtp_login(server, SECRET)
    assert imap_login(server, "new-secret") and smtp_login(server, "new-secret")
    assert stats(server).hits == 2
    # Disabled: refused though cached; enabled again: the cache serves it.
    server.run(store.set_disabled(ALICE, True))
    assert not imap_login(server, "new-secret") and not smtp_login(server, "new-secret")
    server.run(store.set_disabled(ALICE, False))
    hits = stats(server).hits
    assert imap_login(server, "new-secret")
    assert stats(server).hits == hits + 1
    # Deleted, then made again with the same password: a new hash, a miss.
    server.run(store.delete_account(ALICE))
    assert not imap_login(server, "new-secret")
    server.run(store.add_account(ALICE, hash_password("new-secret", CHEAP_PARAMS)))
    misses = stats(server).misses
    assert imap_login(server, "new-secret")
    assert stats(server).misses == misses + 1


def test_changes_by_the_cli_in_another_process(server: ServerThread, tmp_path: Path) -> None:
    conf = tmp_path / "mailserver.toml"
    conf.write_text(f'hostname = "mx.example.test"\ndata_dir = "{server.config.data_dir}"\n'
                    "[auth]\nargon2_memory = 256\nargon2_time_cost = 1\n", encoding="utf-8")

    def cli(*args: str, stdin: str = "") -> None:
        result = run_cli(*args, "-c", conf, stdin=stdin)
        assert result.returncode == 0, result.stderr

    assert imap_login(server, SECRET) and smtp_login(server, SECRET)
    assert stats(server).hits == 1
    cli("user", "passwd", ALICE, "--password-stdin", stdin="cli-secret\n")
    assert not imap_login(server, SECRET) and not smtp_login(server, SECRET)
    assert imap_login(server, "cli-secret") and imap_login(server, "cli-secret")
    # The CLI hashed with the configured parameters: no rehash was needed.
    assert server.call(server.store.get_account, ALICE).password_hash.startswith(
        "$argon2id$v=19$m=256,t=1,p=1$")
    cli("user", "disable", ALICE)
    assert not imap_login(server, "cli-secret") and not smtp_login(server, "cli-secret")
    cli("user", "enable", ALICE)
    assert imap_login(server, "cli-secret")
    cli("user", "del", ALICE)
    assert not imap_login(server, "cli-secret") and not smtp_login(server, "cli-secret")


def test_rehash_on_the_next_login_when_the_parameters_changed(tmp_path: Path) -> None:
    # Alice's hash was made under the old settings (m=256, t=1); the server
    # now asks for m=512, t=2.
    new = dataclasses.replace(CHEAP, argon2_memory=512, argon2_time_cost=2)
    srv = _serve(tmp_path, auth=new)
    try:
        old_hash = srv.call(srv.store.get_account, ALICE).password_hash
        assert "$m=256,t=1,p=1$" in old_hash
        assert not imap_login(srv, "wrong")  # a failed login changes nothing
        assert srv.call(srv.store.get_account, ALICE).password_hash == old_hash
        assert imap_login(srv, SECRET)  # the old hash still verifies...
        rehashed = srv.call(srv.store.get_account, ALICE).password_hash
        assert rehashed.startswith("$argon2id$v=19$m=512,t=2,p=1$")  # ...and is replaced
        assert smtp_login(srv, SECRET) and not smtp_login(srv, "wrong")
        assert srv.call(srv.store.get_account, ALICE).password_hash == rehashed
    finally:
        srv.stop()
    # Durable: the next process reads the new hash, and the password still works.
    srv = ServerThread(dataclasses.replace(srv.config, auth=new))
    try:
        assert srv.call(srv.store.get_account, ALICE).password_hash == rehashed
        assert imap_login(srv, SECRET)
        assert stats(srv) == CacheStats(hits=0, misses=1, entries=1)
    finally:
        srv.stop()


def test_no_cache_when_ttl_is_zero(tmp_path: Path) -> None:
    with running_server(dataclasses.replace(make_config(tmp_path / "data", auth_failure_delay=0.0),
                                            auth=dataclasses.replace(CHEAP, cache_ttl=0)),
                        users={}) as srv:
        srv.run(srv.store.add_account(ALICE, hash_password(SECRET, CHEAP_PARAMS)))
        assert imap_login(srv, SECRET) and imap_login(srv, SECRET)
        assert stats(srv) == CacheStats(hits=0, misses=2, entries=0)
