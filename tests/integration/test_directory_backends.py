"""One set of tests, two backends (issue #17 §3: "the same test suite passing
on both"): the directory (``store.api.Directory``) on LMDB and on
PostgreSQL (a throwaway cluster), held to the same answers and the same
errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.postgres import new_database, writer_and_pool

from mailserver.errors import (
    AccountNotFound,
    AlreadyExists,
    Cannot,
    DomainNotFound,
    InvalidName,
    NotFound,
)
from mailserver.store.api import Directory, LmdbDirectory
from mailserver.store.model import ScramKeys
from mailserver.store.pg.directory import PgDirectory
from mailserver.store.store import Store

HASH = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.fixture(params=["lmdb", "postgresql"])
async def directory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Directory]:
    if request.param == "lmdb":
        store = await Store.open(tmp_path / "store")
        try:
            yield LmdbDirectory(store)
        finally:
            await store.close()
        return
    cluster = request.getfixturevalue("cluster")
    async with new_database(cluster) as dsn, writer_and_pool(dsn) as (writer, pool):
        yield PgDirectory(writer, pool)


async def test_domains(directory: Directory) -> None:
    assert (await directory.add_domain("Example.TEST")).name == "example.test"
    await directory.add_domain("b.test")
    with pytest.raises(AlreadyExists):
        await directory.add_domain("example.test")
    with pytest.raises(InvalidName):
        await directory.add_domain("has space.test")
    assert [d.name for d in await directory.list_domains()] == ["b.test", "example.test"]
    assert await directory.is_local_domain("EXAMPLE.test")
    assert not await directory.is_local_domain("other.test")
    assert not await directory.is_local_domain("not a name")
    await directory.add_account("alice@example.test", HASH)
    with pytest.raises(Cannot):
        await directory.delete_domain("example.test")
    with pytest.raises(DomainNotFound):
        await directory.delete_domain("nowhere.test")
    await directory.add_alias("info@b.test", "alice@example.test")
    await directory.delete_domain("b.test")  # its aliases go with it
    assert await directory.list_aliases() == []


async def test_accounts(directory: Directory) -> None:
    await directory.add_domain("example.test")
    alice = await directory.add_account("Alice@Example.test", HASH, quota=1000)
    assert (alice.address, alice.quota, alice.used, alice.disabled) == (
        "alice@example.test", 1000, 0, False)
    with pytest.raises(AlreadyExists):
        await directory.add_account("alice@example.test", HASH)
    with pytest.raises(DomainNotFound):
        await directory.add_account("bob@nowhere.test", HASH)
    with pytest.raises(ValueError):
        await directory.add_account("bob@example.test", HASH, quota=-1)
    got = await directory.get_account("ALICE@example.test")
    assert got is not None and got.password_hash == HASH
    assert await directory.get_account("nobody@example.test") is None
    assert await directory.get_account("not an address") is None
    await directory.set_disabled("alice@example.test", True)
    await directory.set_quota("alice@example.test", 5)
    got = await directory.get_account("alice@example.test")
    assert got is not None and got.disabled and got.quota == 5
    for action in (directory.set_disabled("nobody@example.test", True),
                   directory.set_quota("nobody@example.test", 1),
                   directory.delete_account("nobody@example.test")):
        with pytest.raises(AccountNotFound):
            await action
    await directory.add_account("bob@example.test", HASH)
    assert [a.address for a in await directory.list_accounts()] == [
        "alice@example.test", "bob@example.test"]
    assert await directory.list_accounts("other.test") == []


async def test_login_writes_lose_to_a_password_set_meanwhile(directory: Directory) -> None:
    """A rehash or SCRAM keys made at login (``auth.login``) are stored only
    while the hash the password was checked against is still the account's."""
    await directory.add_domain("example.test")
    await directory.add_account("alice@example.test", HASH)
    keys = ScramKeys(b"salt" * 4, 4096, b"s" * 32, b"k" * 32)
    assert not await directory.set_scram_keys("alice@example.test", "other-hash", keys)
    assert not await directory.rehash_password("alice@example.test", "other-hash", "x")
    assert not await directory.set_scram_keys("nobody@example.test", HASH, keys)
    assert not await directory.rehash_password("nobody@example.test", HASH, "x")
    got = await directory.get_account("alice@example.test")
    assert got is not None and got.scram is None and got.password_hash == HASH
    assert await directory.set_scram_keys("Alice@example.test", HASH, keys)
    new_hash = HASH.replace("t=1", "t=2")
    assert await directory.rehash_password("alice@example.test", HASH, new_hash)
    got = await directory.get_account("alice@example.test")
    assert got is not None and got.scram == keys and got.password_hash == new_hash


async def test_aliases_and_recipients(directory: Directory) -> None:
    await directory.add_domain("example.test")
    for user in ("alice", "bob"):
        await directory.add_account(f"{user}@example.test", HASH)
    team = await directory.add_alias("Team@example.test",
                                     ["alice@example.test", "bob@example.test",
                                      "someone@gmail.example", "alice@example.test"])
    assert team.targets == ("alice@example.test", "bob@example.test", "someone@gmail.example")
    with pytest.raises(AccountNotFound):
        await directory.add_alias("x@example.test", "nobody@example.test")
    with pytest.raises(AlreadyExists):
        await directory.add_alias("team@example.test", "bob@example.test")
    with pytest.raises(AlreadyExists):
        await directory.add_alias("alice@example.test", "bob@example.test")
    with pytest.raises(DomainNotFound):
        await directory.add_alias("x@other.test", "bob@example.test")
    with pytest.raises(ValueError):
        await directory.add_alias("x@example.test", [])
    await directory.add_alias("@example.test", "bob@example.test")  # catch-all

    status = await directory.recipient_status("team@example.test")
    assert status.accounts == ("alice@example.test", "bob@example.test")
    assert status.forwards == ("someone@gmail.example",) and status.known
    assert (await directory.recipient_status("alice+news@example.test")).account == \
        "alice@example.test"
    assert (await directory.recipient_status("anyone@example.test")).account == \
        "bob@example.test"  # the catch-all
    # recipient_account: the first account, in the same order (RFC 5321 §4.5.1
    # leaves local-part matching to the server; the order is the module doc's).
    assert await directory.recipient_account("ALICE+news@Example.test") == "alice@example.test"
    assert await directory.recipient_account("team@example.test") == "alice@example.test"
    assert await directory.recipient_account("anyone@example.test") == "bob@example.test"
    assert await directory.recipient_account("x@other.test") is None
    assert await directory.recipient_account("not an address") is None
    outside = await directory.recipient_status("x@other.test")
    assert not outside.local_domain and not outside.known
    await directory.delete_alias("@example.test")
    unknown = await directory.recipient_status("anyone@example.test")
    assert unknown.local_domain and not unknown.known
    with pytest.raises(NotFound):
        await directory.delete_alias("@example.test")

    # Deleting an account takes it out of every alias; an alias left empty goes.
    await directory.add_alias("solo@example.test", "alice@example.test")
    await directory.delete_account("alice@example.test")
    aliases = {a.address: a.targets for a in await directory.list_aliases()}
    assert aliases == {"team@example.test": ("bob@example.test", "someone@gmail.example")}
    assert [a.address for a in await directory.list_aliases("example.test")] == [
        "team@example.test"]


async def test_sent_to_marks(directory: Directory) -> None:
    """Whom an account has sent to (the first-time recipient limit), in any case."""
    await directory.add_domain("example.test")
    await directory.add_account("alice@example.test", HASH)
    assert not await directory.has_sent_to("alice@example.test", "bob@far.test")
    await directory.remember_sent("alice@example.test", ["Bob@Far.test", "carol@far.test"])
    await directory.remember_sent("alice@example.test", ["bob@far.test"])  # again: no error
    await directory.remember_sent("alice@example.test", [])
    assert await directory.has_sent_to("ALICE@example.test", "bob@FAR.test")
    assert await directory.has_sent_to("alice@example.test", "carol@far.test")
    assert not await directory.has_sent_to("alice@example.test", "dave@far.test")
