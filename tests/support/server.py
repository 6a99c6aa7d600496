"""The real server for tests, in a thread of its own, on ephemeral loopback ports.

The server runs its own event loop in a background thread so that blocking
clients (smtplib, imaplib, imapclient, ``support.wire``) can be used from the
test body.  The fixtures built on it are in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any

from mailserver.app import App
from mailserver.auth.passwords import hash_password
from mailserver.config import Config, Limits, Listener
from mailserver.queue.settings import OutboundSettings

ROOT = Path(__file__).resolve().parents[2]
CORPUS = (ROOT / ".." / "shared" / "corpus").resolve()

DOMAIN = "example.test"
USERS = {"alice@example.test": "alice-secret", "bob@example.test": "bob-secret"}

#: Listeners every test server has; all on 127.0.0.1 port 0.
TEST_LISTENERS = (
    Listener(name="smtp", protocol="smtp", tls="starttls"),
    Listener(name="submission", protocol="submission", tls="starttls"),
    Listener(name="submissions", protocol="submission", tls="implicit"),
    Listener(name="imap", protocol="imap", tls="starttls"),
    Listener(name="imaps", protocol="imap", tls="implicit"),
)


def corpus_messages() -> list[Path]:
    """Every corpus message path, sorted; fails loudly when the corpus is missing."""
    messages = sorted((CORPUS / "messages").glob("*.eml"))
    assert messages, f"shared corpus missing at {CORPUS}"
    return messages


class ServerThread:
    """An ``App`` running on its own event loop in a daemon thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.app = App(config)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.run(self.app.start())

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run ``coro`` on the server's loop and return its result."""
        fut: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def call(self, fn: Any, *args: Any) -> Any:
        """Call a plain function on the server's loop thread (e.g. a store read)."""

        async def _call() -> Any:
            return fn(*args)

        return self.run(_call())

    def port(self, name: str) -> int:
        return self.app.port(name)

    @property
    def store(self) -> Any:
        return self.app.store

    def add_user(self, address: str, password: str, quota: int = 0) -> None:
        self.run(self.store.add_account(address, hash_password(password), quota=quota))

    def stop(self) -> None:
        try:
            self.run(self.app.stop(grace=2.0))
            # A few more loop turns: transports closed just now finish closing
            # (connection_lost), instead of warning when garbage-collected.
            self.run(asyncio.sleep(0.05))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


#: Outbound settings of tests that do not serve DNS themselves: the queue asks
#: a loopback port where nothing answers (the discard port), so a test never
#: sends a DNS query off the machine; lookups fail temporarily (deferred).
LOOPBACK_ONLY_OUTBOUND = OutboundSettings(
    hostname="mx.example.test", resolver_address="127.0.0.1", resolver_port=9, dns_timeout=2.0,
    delay_warning=None,
)


def make_config(
    data_dir: Path, *, outbound: OutboundSettings | None = None, **limits: Any
) -> Config:
    """A test configuration: every listener on 127.0.0.1:0, data in ``data_dir``.

    ``outbound``: the queue's settings (default ``LOOPBACK_ONLY_OUTBOUND``).
    """
    return Config(
        hostname="mx.example.test",
        data_dir=data_dir,
        domains=(DOMAIN,),
        listeners=TEST_LISTENERS,
        limits=Limits(**limits),
        outbound=outbound or LOOPBACK_ONLY_OUTBOUND,
    )


@contextlib.contextmanager
def running_server(config: Config, users: Mapping[str, str] = USERS) -> Iterator[ServerThread]:
    """A server for ``config`` with ``users`` (address: password), stopped on exit;
    for fixtures of a wider scope than ``server``'s."""
    srv = ServerThread(config)
    try:
        for address, password in users.items():
            srv.add_user(address, password)
        yield srv
    finally:
        srv.stop()


def inbox_of(server: ServerThread, address: str, mailbox: str = "INBOX") -> list[bytes]:
    """The stored octets of every message in ``address``'s ``mailbox``, by UID."""
    mb = server.call(server.store.get_mailbox, address, mailbox)
    return [server.call(server.store.get_blob, r.blob_id)
            for r in server.call(server.store.list_messages, mb.id)]
