"""Our lean ``SmtpConnection.__init__`` against aiosmtpd's own (see adapter.py).

We skip aiosmtpd's ``SMTP.__init__`` (it rebuilds its tables with ``inspect``
on every connection) and set its attributes ourselves; these tests fail when
an aiosmtpd upgrade adds or renames one, or when our tables drift from what
its ``dir()``/``inspect`` scan would have found.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

import uvloop
from aiosmtpd.smtp import SMTP

from mailserver.config import Limits
from mailserver.log import next_conn_id
from mailserver.protocol.queue_id import LENGTH, new_queue_id
from mailserver.smtp.adapter import ConnectionSettings, SmtpConnection

OURS = {"settings", "conn_id", "peer_ip", "log", "_registry", "_state", "lines",
        "line_length_limit", "_idle_deadline", "_idle_armed"}


class _Handler:
    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        return "250 OK"


class _Registry:
    async def admit(self, conn: SmtpConnection) -> bool:
        return True

    def release(self, conn: SmtpConnection) -> None:
        pass


def _settings(submission: bool) -> ConnectionSettings:
    return ConnectionSettings(listener_name="t", hostname="mx.test", limits=Limits(),
                              submission=submission, starttls_context=None, implicit_tls=False)


async def test_lean_init_sets_every_attribute_aiosmtpd_sets() -> None:
    handler = _Handler()
    stock = SMTP(handler, hostname="mx.test", loop=asyncio.get_running_loop())
    ours = SmtpConnection(handler, _settings(True), _Registry())
    assert set(vars(stock)) - set(vars(ours)) == set()
    assert set(vars(ours)) - set(vars(stock)) <= OURS
    # aiosmtpd calls no hook of ours (its STARTTLS path asks for one: there is none).
    assert stock._handle_hooks.keys() == {"DATA"} and not ours._handle_hooks


async def test_every_verb_is_answered_by_our_code() -> None:
    """The command loop's table (``adapter.VERBS``): our methods, none of aiosmtpd's."""
    from mailserver.smtp.adapter import VERBS

    assert set(VERBS) == {"AUTH", "BDAT", "DATA", "EHLO", "EXPN", "HELO", "HELP", "MAIL", "NOOP",
                          "QUIT", "RCPT", "RSET", "STARTTLS", "VRFY"}
    assert all(fn.__module__.startswith("mailserver.smtp.") for fn in VERBS.values())


def test_ids_are_unique_and_cheap() -> None:
    ids = [new_queue_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000 and {len(i) for i in ids} == {LENGTH}
    assert all(c in "0123456789BCDFGHJKLMNPQRSTVWXZ" for c in "".join(ids))
    assert next_conn_id() != next_conn_id()


async def _served(factory: Callable[[], SMTP]) -> tuple[SMTP, bytes, dict[str, object]]:
    """Connect once to a listener of ``factory``'s protocol; its instance, greeting and
    attributes once the greeting was read."""
    made: list[SMTP] = []

    def protocol() -> SMTP:
        made.append(factory())
        return made[-1]

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        greeting = await reader.readline()
        conn = made[0]
        live = dict(vars(conn))
        writer.write(b"QUIT\r\n")
        await reader.read()
        writer.close()
        await writer.wait_closed()
    return conn, greeting, live


async def test_lean_connection_made_sets_what_the_stock_one_sets() -> None:
    """Our one-pass ``connection_made`` (see ``SmtpConnection._start``) against aiosmtpd's
    and asyncio's: the same attributes, the same session facts, and it serves."""
    seen: dict[str, dict[str, object]] = {}
    handler, loop = _Handler(), asyncio.get_running_loop()
    stock, _, seen["stock"] = await _served(lambda: SMTP(handler, hostname="mx.test", loop=loop))
    ours, greeting, seen["ours"] = await _served(
        lambda: SmtpConnection(handler, _settings(False), _Registry()))
    assert greeting.startswith(b"220 mx.test ")
    assert set(seen["stock"]) - set(seen["ours"]) == set()
    assert set(seen["ours"]) - set(seen["stock"]) <= OURS
    live = seen["ours"]
    assert live["_strong_reader"] is None and live["_reader"] is not None
    assert live["_stream_writer"] is live["_writer"] and live["_transport"] is live["transport"]
    assert live["_over_ssl"] is False and live["_handler_coroutine"] is not None
    assert ours.session is not None and ours.session.peer[0] == "127.0.0.1"
    assert ours.peer_ip == "127.0.0.1" and stock.session is not None


def test_a_finished_connection_is_freed_by_reference_counting() -> None:
    """A connection that ended (QUIT, a mail transaction, a client hanging up
    mid-session) leaves no reference cycle for the cyclic collector: with the
    collector off, nothing of it is alive once its task has ended (under uvloop,
    as the daemon runs)."""

    async def session(port: int, lines: list[bytes], hang_up: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        for line in lines:
            writer.write(line)
            while (reply := await reader.readline())[3:4] == b"-":
                pass
            assert reply[:1] in (b"2", b"3"), reply
        if not hang_up:
            writer.write(b"QUIT\r\n")
            await reader.read()
        writer.close()
        await writer.wait_closed()

    async def main() -> list[object]:
        refs: list[weakref.ref[SmtpConnection]] = []

        def protocol() -> SmtpConnection:
            conn = SmtpConnection(_Handler(), _settings(False), _Registry())
            refs.append(weakref.ref(conn))
            return conn

        server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            mail = [b"EHLO c.test\r\n", b"MAIL FROM:<a@b.test>\r\n", b"RCPT TO:<c@d.test>\r\n",
                    b"DATA\r\n", b"Subject: x\r\n\r\nhi\r\n.\r\n"]
            await session(port, [], hang_up=False)
            await session(port, mail, hang_up=False)
            await session(port, [b"EHLO c.test\r\n"], hang_up=True)
            for _ in range(50):  # the connections' tasks see the close and end
                await asyncio.sleep(0.001)
        assert len(refs) == 3
        return [ref() for ref in refs]

    gc.collect()
    gc.disable()
    try:
        alive = uvloop.run(main())
    finally:
        gc.enable()
    assert alive == [None, None, None]


async def test_smtp_and_imap_share_one_conn_id_counter() -> None:
    """Issue 10 §2: an SMTP and an IMAP connection of one process never get the
    same ``conn_id`` (one counter in ``mailserver.log`` for both protocols)."""
    import inspect

    from mailserver.imap import server as imap_server

    # The IMAP listener takes its ids from mailserver.log's counter too.
    assert "next_conn_id" in inspect.getsource(imap_server)
    ids = []
    for _ in range(3):
        ids.append(SmtpConnection(_Handler(), _settings(False), _Registry()).conn_id)
        ids.append(next_conn_id())  # what the IMAP listener gives its next connection
    assert len(set(ids)) == len(ids)
