"""Our lean ``SmtpConnection.__init__`` against aiosmtpd's own (see adapter.py).

We skip aiosmtpd's ``SMTP.__init__`` (it rebuilds its tables with ``inspect``
on every connection) and set its attributes ourselves; these tests fail when
an aiosmtpd upgrade adds or renames one, or when our tables drift from what
its ``dir()``/``inspect`` scan would have found.
"""

from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP

from mailserver.config import Limits
from mailserver.smtp.adapter import ConnectionSettings, SmtpConnection, next_conn_id
from mailserver.smtp.trace import new_queue_id

OURS = {"settings", "conn_id", "peer_ip", "log", "_registry", "_state", "command_size_limit",
        "command_size_limits", "line_length_limit", "_idle_deadline", "_idle_armed"}


class _Handler:
    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        return "250 OK"


class _Registry:
    def admit(self, conn: SmtpConnection) -> bool:
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
    assert ours._handle_hooks.keys() == stock._handle_hooks.keys() == {"DATA"}


async def test_command_and_auth_tables_match_an_inspect_scan() -> None:
    conn = SmtpConnection(_Handler(), _settings(True), _Registry())
    scanned = {m[len("smtp_"):] for m in dir(conn) if m.startswith("smtp_")}
    assert {name for name, _ in conn._smtp_methods.items()} == scanned
    assert conn._smtp_methods.get("NOPE") is None
    assert conn._smtp_methods.get("HELP").__smtp_syntax__ == "HELP [command]"
    # Only our mechanisms (the handler's auth_failed hook is not one).
    assert set(conn._auth_methods) == {"PLAIN", "LOGIN"}
    assert SmtpConnection(_Handler(), _settings(False), _Registry())._auth_methods == {}


def test_ids_are_unique_and_cheap() -> None:
    ids = [new_queue_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000 and {len(i) for i in ids} == {12}
    assert all(c in "0123456789BCDFGHJKLMNPQRSTVWXZ" for c in "".join(ids))
    assert next_conn_id() != next_conn_id()
