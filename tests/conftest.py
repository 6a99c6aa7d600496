"""Shared fixtures: the real server (``support.server``) and clients of it.

Helpers that tests import live in tests/support/, not here.
"""

from __future__ import annotations

import imaplib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemon import Daemon
from support.server import USERS, ServerThread, make_config, running_server
from support.wire import RawImap, RawSmtp, client_tls_context

from mailserver.config import LogSettings
from mailserver.log import configure as configure_logging

# Servers in tests log warnings and errors only, so the test output stays readable.
configure_logging(LogSettings(format="console", level="warning"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """A running server with domain example.test and users alice and bob (see USERS)."""
    with running_server(make_config(tmp_path / "data")) as srv:
        yield srv


@pytest.fixture
def imaps(server: ServerThread) -> Iterator[imaplib.IMAP4_SSL]:
    """imaplib over implicit TLS (RFC 8314) to ``server``'s imaps listener,
    logged in as alice; logged out after the test."""
    c = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=client_tls_context())
    c.login("alice@example.test", USERS["alice@example.test"])
    try:
        yield c
    finally:
        c.logout()


@pytest.fixture
def raw_imap(server: ServerThread) -> Iterator[RawImap]:
    """A ``RawImap`` to ``server``'s plain imap listener, logged in as alice."""
    with RawImap(server.port("imap")) as c:
        c.login()
        yield c


@pytest.fixture
def raw_smtp(server: ServerThread) -> Iterator[Callable[..., RawSmtp]]:
    """Open ``RawSmtp`` connections: ``raw_smtp("submission", srv=other)``
    (default: ``server``'s smtp listener); all are closed after the test."""
    conns: list[RawSmtp] = []

    def connect(port_name: str = "smtp", srv: ServerThread = server) -> RawSmtp:
        conns.append(RawSmtp(srv.port(port_name)))
        return conns[-1]

    yield connect
    for conn in conns:
        conn.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Build servers with custom limits: ``server_factory(max_message_size=1000)``."""
    started: list[ServerThread] = []

    def factory(**limits: Any) -> ServerThread:
        srv = ServerThread(make_config(tmp_path / f"data{len(started)}", **limits))
        started.append(srv)
        for address, password in USERS.items():
            srv.add_user(address, password)
        return srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test starts (append them): killed at the end, whatever happened."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for one test file (``support.postgres``); its DSN."""
    from support.postgres import throwaway_postgres

    with throwaway_postgres() as dsn:
        yield dsn


@pytest.fixture
async def db(cluster: str) -> AsyncIterator[str]:
    """A fresh database at the current schema in ``cluster``, for one test; its DSN."""
    from support.postgres import new_database

    async with new_database(cluster) as dsn:
        yield dsn
