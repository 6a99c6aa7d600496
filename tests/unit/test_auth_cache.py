"""The verified-credential cache (``auth.cache``), pure: a clock of our own."""

from __future__ import annotations

from mailserver.auth.cache import CacheStats, CredentialCache

A, B, C = "a@example.test", "b@example.test", "c@example.test"
HASH = "$argon2id$v=19$m=256,t=1,p=1$salt$tag"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_only_the_verified_password_and_hash_hit() -> None:
    cache = CredentialCache(60, 10, clock=Clock())
    assert not cache.check(A, HASH, "pw")
    cache.remember(A, HASH, "pw")
    assert cache.check(A, HASH, "pw")
    assert not cache.check(A, HASH, "pW")  # a wrong password
    assert not cache.check(A, HASH + "x", "pw")  # the stored hash changed
    assert not cache.check(B, HASH, "pw")  # another account
    assert cache.stats == CacheStats(hits=1, misses=4, entries=1)
    assert cache.stats.hit_rate == 0.2


def test_nothing_like_the_password_is_kept() -> None:
    cache = CredentialCache(60, 10)
    cache.remember(A, HASH, "very-secret-password")
    digest, _ = cache._entries[A]
    assert len(digest) == 32 and b"very-secret" not in digest
    # The key is per instance (per process): another cache's digest differs.
    other = CredentialCache(60, 10)
    other.remember(A, HASH, "very-secret-password")
    assert other._entries[A][0] != digest


def test_entries_expire_after_ttl_from_the_verification() -> None:
    clock = Clock()
    cache = CredentialCache(60, 10, clock=clock)
    cache.remember(A, HASH, "pw")
    clock.now += 59
    assert cache.check(A, HASH, "pw")  # a hit does not extend the entry
    clock.now += 1
    assert not cache.check(A, HASH, "pw")
    assert cache.stats.entries == 0


def test_bounded_least_recently_used_first() -> None:
    cache = CredentialCache(60, 2, clock=Clock())
    cache.remember(A, HASH, "pw")
    cache.remember(B, HASH, "pw")
    assert cache.check(A, HASH, "pw")  # A is now the most recently used
    cache.remember(C, HASH, "pw")
    assert cache.stats.evictions == 1 and cache.stats.entries == 2
    assert cache.check(A, HASH, "pw") and cache.check(C, HASH, "pw")
    assert not cache.check(B, HASH, "pw")


def test_off_when_ttl_or_size_is_zero() -> None:
    for cache in (CredentialCache(0, 10), CredentialCache(60, 0)):
        cache.remember(A, HASH, "pw")
        assert not cache.check(A, HASH, "pw")
        assert cache.stats == CacheStats(hits=0, misses=1, entries=0)


def test_forget() -> None:
    cache = CredentialCache(60, 10)
    cache.remember(A, HASH, "pw")
    cache.forget(A)
    assert not cache.check(A, HASH, "pw")
