"""The admin service in process, over a real store: the data it returns and
the rules it applies (the command line is tested through a real process in
``test_cli.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from mailserver.admin import AccountInfo, AliasInfo, DomainInfo, initialise, open_admin
from mailserver.app import resolver_for
from mailserver.auth.login import authenticate
from mailserver.config import Config, builtin, with_data_dir
from mailserver.errors import (
    AccountNotFound,
    AlreadyExists,
    Cannot,
    DomainNotFound,
    InvalidName,
    InvalidPassword,
    NotFound,
    StoreNotFound,
)
from mailserver.queue.manager import QueueManager
from mailserver.queue.settings import OutboundSettings
from mailserver.store.api import LmdbQueue


def _config(tmp_path: Path, **changes: Any) -> Config:
    """The built-in configuration without its domains, data in ``tmp_path/data``."""
    config = with_data_dir(builtin(), tmp_path / "data")
    return dataclasses.replace(config, **{"domains": (), **changes})


async def test_open_admin_needs_a_store_and_creates_none(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(StoreNotFound) as info:
        async with open_admin(config):
            pass
    assert info.value.data_dir == tmp_path / "data"
    assert not (tmp_path / "data").exists()
    assert await initialise(config) is True
    assert await initialise(config) is False
    async with open_admin(config) as admin:
        assert await admin.list_domains() == []


async def test_directory_returns_records_without_secrets(tmp_path: Path) -> None:
    config = _config(tmp_path, domains=("conf.test",))
    await initialise(config)
    async with open_admin(config) as admin:
        assert await admin.add_domain("Example.TEST.") == DomainInfo("example.test", False)
        assert await admin.list_domains() == [DomainInfo("conf.test", True),
                                              DomainInfo("example.test", False)]
        with pytest.raises(Cannot, match="remove it there first"):
            await admin.delete_domain("conf.test")

        carol = await admin.add_account("Carol@example.test", "carol-secret", quota=100)
        assert carol == AccountInfo("carol@example.test", 100, 0)
        assert not hasattr(carol, "password_hash")
        assert await admin.set_quota("carol@example.test", 0) == AccountInfo(
            "carol@example.test", 0, 0)
        with pytest.raises(InvalidPassword):
            await admin.add_account("dave@example.test", "short")
        with pytest.raises(InvalidPassword):
            await admin.set_password("carol@example.test", "short")
        with pytest.raises(InvalidName, match="local@domain"):
            await admin.add_account("no-at-sign", "long-enough-pw")
        with pytest.raises(DomainNotFound, match="'nowhere.test' is not a local domain"):
            await admin.add_account("x@nowhere.test", "long-enough-pw")
        with pytest.raises(AlreadyExists):
            await admin.add_account("carol@example.test", "long-enough-pw")
        with pytest.raises(Cannot):
            await admin.set_quota("carol@example.test", -1)
        with pytest.raises(AccountNotFound):
            await admin.get_account("nobody@example.test")

        await admin.set_password("carol@example.test", "carol-secret-2")
        assert await authenticate(admin.store, "carol@example.test", "carol-secret-2") \
            == "carol@example.test"

        carol = AliasInfo("@example.test", "carol@example.test", ("carol@example.test",))
        assert await admin.add_alias("@example.test", "carol@example.test") == carol
        assert await admin.list_aliases("example.test") == [carol]
        with pytest.raises(DomainNotFound):
            await admin.add_alias("x@nowhere.test", "carol@example.test")
        await admin.delete_alias("@example.test")
        with pytest.raises(NotFound):
            await admin.delete_alias("@example.test")
        await admin.delete_account("carol@example.test")
        assert await admin.list_accounts() == []


async def test_queue_actions_show_recipients(tmp_path: Path) -> None:
    config = _config(tmp_path)
    await initialise(config)
    async with open_admin(config) as admin:
        # Never started: nothing is delivered.
        settings = OutboundSettings(resolver_address="127.0.0.1", resolver_port=9)
        mgr = QueueManager(LmdbQueue(admin.store), settings, resolver=resolver_for(settings))
        qid = await mgr.enqueue("alice@example.test", ["bob@remote.test", "carol@remote.test"],
                                b"From: alice@example.test\r\nSubject: q\r\n\r\nq\r\n")
        [entry] = await admin.list_queue()
        assert entry.id == qid and entry.sender == "alice@example.test" and entry.to_go == 2
        assert [(r.address, r.status) for r in entry.recipients] == [
            ("bob@remote.test", "pending"), ("carol@remote.test", "pending")]
        assert await admin.queued(qid) == entry
        await admin.retry(qid)
        assert await admin.flush() == 1
        await admin.delete_queued(qid)
        assert await admin.list_queue() == []
        for action in (admin.queued, admin.retry, admin.delete_queued):
            with pytest.raises(NotFound, match=f"no queued message {qid}"):
                await action(qid)


async def test_dkim_keys_and_dns_records(tmp_path: Path) -> None:
    config = _config(tmp_path, hostname="mx.example.test", domains=("example.test",))
    await initialise(config)
    async with open_admin(config) as admin:
        with pytest.raises(DomainNotFound):
            await admin.generate_dkim_key("other.test")
        key = await admin.generate_dkim_key("example.test", algorithm="ed25519")
        assert (key.selector, key.algorithm, key.signing) == ("mail-ed25519", "ed25519", False)
        assert key.record.name == "mail-ed25519._domainkey.example.test"
        with pytest.raises(AlreadyExists):
            await admin.generate_dkim_key("example.test", algorithm="ed25519")
        assert await admin.list_dkim_keys() == [key]
        records = await admin.dns_records("example.test")
        assert [r.type for r in records][:4] == ["MX", "TXT", "TXT", "TXT"]
        assert records[0].zone_line() == "example.test. 3600 IN MX 10 mx.example.test."
        assert key.record in records
        with pytest.raises(DomainNotFound):
            await admin.dns_records("nosuch.org")
