"""argon2id parameters and the rehash decision (``auth.passwords``)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from mailserver.auth.passwords import DEFAULT_PARAMS, Argon2Params, Hasher, hash_password
from mailserver.auth.slots import CoreSlots

OLD = Argon2Params(memory_kib=256, time_cost=1, parallelism=2)
NEW = Argon2Params(memory_kib=512, time_cost=2, parallelism=1)


def test_hashes_carry_their_parameters_and_old_ones_still_verify() -> None:
    old_hash = hash_password("pw", OLD)
    assert old_hash.startswith("$argon2id$v=19$m=256,t=1,p=2$")
    hasher = Hasher(NEW, threads=1)
    try:
        assert hasher.verify(old_hash, "pw") and not hasher.verify(old_hash, "pW")
        assert hasher.needs_rehash(old_hash)
        new_hash = hasher.hash("pw")
        assert new_hash.startswith("$argon2id$v=19$m=512,t=2,p=1$")
        assert not hasher.needs_rehash(new_hash)
        assert not hasher.verify("not a hash", "pw") and not hasher.needs_rehash("not a hash")
    finally:
        hasher.close()


def test_defaults_and_pool_size() -> None:
    assert DEFAULT_PARAMS == Argon2Params(65536, 3, 1)
    hasher = Hasher(OLD)
    try:
        assert hasher.threads == max(1, len(os.sched_getaffinity(0)) - 1)
    finally:
        hasher.close()


def _taken(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_core_slots_bound_hashes_across_processes(tmp_path: Path) -> None:
    # Two CoreSlots on one directory stand for two worker processes: flock
    # locks belong to open file descriptions, so they exclude each other too.
    one, other = CoreSlots(tmp_path, 2), CoreSlots(tmp_path, 2)
    paths = [tmp_path / "argon2-slot.0", tmp_path / "argon2-slot.1"]
    with one.hold():
        assert sum(_taken(p) for p in paths) == 1
        with other.hold():
            assert all(_taken(p) for p in paths)  # both slots held: a third would block
        assert sum(_taken(p) for p in paths) == 1
    assert not any(_taken(p) for p in paths)
