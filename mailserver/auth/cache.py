"""The verified-credential cache (like Dovecot's auth cache): after a
successful login, remember that this password matched this account's stored
hash, so the next login with the same password costs an HMAC, not an argon2
run.

What is kept, per account: ``HMAC-SHA256(key, address NUL stored_hash NUL
password)`` and an expiry time — never the password, nor anything a thief
of the process memory could test guesses against offline without ``key``, a
random 32 octets made per process (``secrets``) and never stored.

Invariants:

* Only a *successful* verification is ever remembered, so a wrong password
  is never served from the cache: it gives another digest, which matches
  nothing (``hmac.compare_digest``).
* Invalidation needs no messages: the caller reads the account record from
  the store for every login (one LMDB read, which sees every process's last
  commit) and passes its ``password_hash``; the digest covers that string.
  A password change stores a new hash (new salt), so the old entry can no
  longer match; a deleted or disabled account is refused before the cache
  is asked.  This holds across worker processes and for the CLI/admin service
  in another process, with no window.
* An entry lives ``ttl`` seconds from the verification that made it (a hit
  does not extend it); at most ``max_entries`` are kept, least recently used
  dropped first.  ``ttl`` 0 turns the cache off.
* Used from the event loop only (no locking).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class CacheStats:
    """Counters since start, for metrics: ``hits`` (logins answered from the
    cache), ``misses`` (lookups that went to argon2, wrong passwords
    included), ``evictions`` (entries dropped for room), ``entries`` (now)."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), 0.0 before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class CredentialCache:
    """Verified (account, password) pairs; see the module docstring.

    ``ttl``: seconds; ``max_entries``: accounts kept; ``clock``: monotonic
    seconds (tests may pass their own).
    """

    def __init__(self, ttl: float, max_entries: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.stats = CacheStats()
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.max_entries > 0

    def _digest(self, address: str, stored_hash: str, password: str) -> bytes:
        message = b"\0".join((address.encode(), stored_hash.encode(),
                              password.encode("utf-8", "surrogatepass")))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def check(self, address: str, stored_hash: str, password: str) -> bool:
        """True when ``password`` was verified against ``stored_hash`` of
        ``address`` within ``ttl``; counts a hit or a miss."""
        entry = self._entries.get(address) if self.enabled else None
        if entry is not None:
            digest, expires = entry
            if self._clock() >= expires:
                del self._entries[address]
                self.stats.entries = len(self._entries)
            elif hmac.compare_digest(digest, self._digest(address, stored_hash, password)):
                self._entries.move_to_end(address)
                self.stats.hits += 1
                return True
        self.stats.misses += 1
        return False

    def remember(self, address: str, stored_hash: str, password: str) -> None:
        """Record that ``password`` matched ``stored_hash`` of ``address`` just now."""
        if not self.enabled:
            return
        self._entries[address] = (self._digest(address, stored_hash, password),
                                  self._clock() + self.ttl)
        self._entries.move_to_end(address)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.stats.evictions += 1
        self.stats.entries = len(self._entries)

    def forget(self, address: str) -> None:
        """Drop ``address``'s entry (a caller in this process that changed the
        account; not needed for correctness, see the module docstring)."""
        self._entries.pop(address, None)
        self.stats.entries = len(self._entries)
