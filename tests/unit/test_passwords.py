"""argon2id parameters and the rehash decision (``auth.passwords``)."""

from __future__ import annotations

import os

from mailserver.auth.passwords import DEFAULT_PARAMS, Argon2Params, Hasher, hash_password

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
