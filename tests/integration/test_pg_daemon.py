"""The daemon on the PostgreSQL store (issue #17), as real processes on one
throwaway cluster: ``[store] backend = "postgresql"`` serves the MX and
submission listeners (IMAP is not on this backend yet and the configuration
says so); mail for a local account lands in the database; outbound mail goes
through the queue in the database; and two nodes share it: a node killed
with -9 while its queued message waits for a retry leaves it to the other
node, which delivers it, once.
"""

from __future__ import annotations

import asyncio
import smtplib
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from support.daemon import Daemon, run_cli
from support.dnsserver import dest_dns
from support.postgres import new_database
from support.smtpreceiver import Receiver
from support.wire import client_tls_context

from mailserver.auth.passwords import Argon2Params, hash_password
from mailserver.store.model import MessageRecord
from mailserver.store.pg.directory import PgDirectory
from mailserver.store.pg.messages import PgMessages
from mailserver.store.pg.writer import PgWriter

ALICE, PASSWORD = "alice@example.test", "alice-secret"
#: Cheap hashes, and the same parameters in [auth] so no login rehashes them.
CHEAP = Argon2Params(memory_kib=64, time_cost=1, parallelism=1)


def node_config(tmp_path: Path, name: str, dsn: str, *, dns_port: int, smtp_port: int) -> Path:
    """A node's configuration: its own data directory, the shared database."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
hostname = "{name}.example.test"
data_dir = "{name}-data"
domains = ["example.test"]

[store]
backend = "postgresql"
dsn = "{dsn}"
writer_connections = 2

[auth]
argon2_memory = {CHEAP.memory_kib}
argon2_time_cost = {CHEAP.time_cost}
argon2_parallelism = {CHEAP.parallelism}

[dns]
resolver_address = "127.0.0.1"
resolver_port = {dns_port}

[outbound]
smtp_port = {smtp_port}
backoff = [2.0]
jitter = 0.0
connect_timeout = 2

[log]
format = "json"

[listeners.mx]
protocol = "smtp"
address = "127.0.0.1"
port = 0
tls = "none"

[listeners.submission]
protocol = "submission"
address = "127.0.0.1"
port = 0
tls = "starttls"

[listeners.http]
protocol = "http"
address = "127.0.0.1"
port = 0
""", encoding="utf-8")
    return path


@asynccontextmanager
async def database(cluster: str) -> AsyncIterator[tuple[str, PgDirectory, PgMessages]]:
    """A migrated database with example.test and alice; its DSN and store parts."""
    async with new_database(cluster) as dsn:
        writer = PgWriter(dsn)
        await writer.start()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            directory = PgDirectory(writer, pool)
            await directory.add_domain("example.test")
            await directory.add_account(ALICE, hash_password(PASSWORD, CHEAP))
            yield dsn, directory, PgMessages(writer, pool)
        finally:
            await pool.close()
            await writer.stop()


async def start(conf: Path) -> Daemon:
    daemon = Daemon("-c", conf)
    await asyncio.to_thread(daemon.ready)
    return daemon


def send(port: int, rcpt: str, body: bytes, *, login: bool = False) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        if login:  # AUTH only over TLS (RFC 4954 §4); the certificate is self-signed
            smtp.starttls(context=client_tls_context())
            smtp.login(ALICE, PASSWORD)
        smtp.sendmail(ALICE if login else "someone@elsewhere.test", [rcpt], body)


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return str(response.read().decode())


async def inbox(messages: PgMessages) -> list[MessageRecord]:
    box = await messages.get_mailbox(ALICE, "INBOX")
    return await messages.list_messages(box.id)


def test_the_configuration_says_what_does_not_run_on_postgresql(tmp_path: Path) -> None:
    conf = node_config(tmp_path, "a", "postgresql://x@127.0.0.1:9/db", dns_port=53, smtp_port=25)
    conf.write_text(conf.read_text(encoding="utf-8")
                    + '[listeners.imap]\nprotocol = "imap"\naddress = "127.0.0.1"\nport = 0\n',
                    encoding="utf-8")
    result = run_cli("run", "-c", conf)
    assert result.returncode != 0
    assert "imap does not run on the PostgreSQL store yet" in result.stderr


async def test_mx_and_submission_on_postgresql(cluster: str, tmp_path: Path) -> None:
    rx = Receiver()
    await rx.start()
    dns = dest_dns()
    try:
        async with database(cluster) as (dsn, directory, messages):
            conf = node_config(tmp_path, "a", dsn, dns_port=dns.port, smtp_port=rx.port)
            daemon = await start(conf)
            try:
                body = b"Subject: to alice\r\nMessage-ID: <in@else.test>\r\n\r\nhello\r\n"
                await asyncio.to_thread(send, daemon.ports["mx"], ALICE, body)
                # The 250 came after the commit: the message is in the database now.
                (rec,) = await inbox(messages)
                stored = rec.prefix + await messages.get_blob(rec.blob_id)
                assert stored.endswith(body) and b"\r\nReceived: from " in stored
                assert b"Delivered-To: alice@example.test\r\n" in rec.prefix
                # Unknown recipients are refused by the directory in the database.
                with pytest.raises(smtplib.SMTPRecipientsRefused):
                    await asyncio.to_thread(send, daemon.ports["mx"], "nobody@example.test",
                                            body)
                # Submission: AUTH against the database, then the queue there.
                out = b"Subject: out\r\nMessage-ID: <out@example.test>\r\n\r\nbye\r\n"
                await asyncio.to_thread(send, daemon.ports["submission"], "bob@dest.test",
                                        out, login=True)
                (got,) = await rx.wait_for(1)
                assert got.rcpt_tos == ["bob@dest.test"] and got.data.endswith(out)
                assert await directory.has_sent_to(ALICE, "bob@dest.test")
                # /metrics: the process's figures and the database's queue.
                conn = await asyncpg.connect(dsn)
                try:
                    async with asyncio.timeout(30):  # the round settles after the 250
                        while await conn.fetchval("SELECT count(*) FROM queue"):
                            await asyncio.sleep(0.05)
                finally:
                    await conn.close()
                page = await asyncio.to_thread(_get, daemon.ports["http"], "/metrics")
                assert "\nmailserver_queue_messages 0.0\n" in page  # delivered: empty
                assert "mailserver_smtp_transactions_total{" in page
                assert "mailserver_store_map_fill_ratio" not in page  # no LMDB map here
            finally:
                assert await asyncio.to_thread(daemon.stop) == 0
    finally:
        dns.stop()
        await rx.stop()


async def test_a_killed_nodes_queued_mail_is_delivered_by_the_other(
        cluster: str, tmp_path: Path) -> None:
    rx = Receiver()
    await rx.start()
    port = rx.port
    await rx.stop()  # the destination is down at first: the first attempt defers
    dns = dest_dns()
    try:
        async with database(cluster) as (dsn, _directory, _messages):
            node_a = await start(node_config(tmp_path, "a", dsn, dns_port=dns.port,
                                             smtp_port=port))
            try:
                out = b"Subject: queued\r\nMessage-ID: <q@example.test>\r\n\r\nlater\r\n"
                await asyncio.to_thread(send, node_a.ports["submission"], "bob@dest.test",
                                        out, login=True)
                await asyncio.to_thread(node_a.wait_for, "delivery_deferred")
            finally:
                await asyncio.to_thread(node_a.kill)  # kill -9: nothing settles
            rx = Receiver(port=port)
            await rx.start()
            node_b = await start(node_config(tmp_path, "b", dsn, dns_port=dns.port,
                                             smtp_port=port))
            try:
                (got,) = await rx.wait_for(1, timeout=60)
                assert got.data.endswith(out)
                await asyncio.to_thread(node_b.wait_for, "queue_done")
                await asyncio.sleep(0.5)
                assert len(rx.received) == 1, "delivered once"
            finally:
                assert await asyncio.to_thread(node_b.stop) == 0
    finally:
        dns.stop()
        await rx.stop()


def test_the_directory_commands_on_postgresql(cluster: str, tmp_path: Path) -> None:
    """``mailserver domain|user|alias`` administer the database's directory; what
    is not on this backend yet says so."""

    async def make() -> str:
        async with new_database(cluster) as dsn:
            conf = node_config(tmp_path, "a", dsn, dns_port=53, smtp_port=25)
            steps = [
                (("user", "add", "carol@example.test", "--password-stdin"), "c4rol-secret!x"),
                (("domain", "add", "other.test"), ""),
                (("alias", "add", "team@example.test", "carol@example.test",
                  "someone@far.test"), ""),
            ]
            for args, stdin in steps:
                done = await asyncio.to_thread(run_cli, *args, "-c", conf, stdin=stdin + "\n")
                assert done.returncode == 0, done.stderr
            users = await asyncio.to_thread(run_cli, "user", "list", "-c", conf)
            assert "carol@example.test" in users.stdout
            domains = await asyncio.to_thread(run_cli, "domain", "list", "-c", conf)
            assert domains.stdout.split() == ["example.test", "other.test"]
            not_yet = await asyncio.to_thread(run_cli, "junk", "stats", "carol@example.test",
                                              "-c", conf)
            assert not_yet.returncode == 1 and "not on the PostgreSQL store yet" in \
                not_yet.stderr
            writer = PgWriter(dsn)
            await writer.start()
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
            try:
                directory = PgDirectory(writer, pool)
                carol = await directory.get_account("carol@example.test")
                assert carol is not None and carol.scram is not None  # made with the hash
                team = await directory.recipient_status("team@example.test")
                assert team.accounts == ("carol@example.test",)
                assert team.forwards == ("someone@far.test",)
            finally:
                await pool.close()
                await writer.stop()
            return dsn

    asyncio.run(make())
