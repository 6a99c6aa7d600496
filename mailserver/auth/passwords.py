"""Password hashing with argon2id (argon2-cffi, RFC 9106), in a bounded pool.

Hashing and verifying cost tens to hundreds of milliseconds of CPU by design.
A login storm must not take every core: ``Hasher`` runs them on its own
``ThreadPoolExecutor`` of ``threads`` threads (argon2-cffi releases the GIL
while it hashes), and the parameters have parallelism 1, so at most
``threads`` cores hash at once and the rest stay with the event loops that
serve every other session's commands.  Logins beyond that wait in the pool's
queue, not on the CPU.

Every PHC string carries its own parameters (``$argon2id$v=19$m=..,t=..,p=..``),
so hashes made under older settings keep verifying; ``needs_rehash`` says
when one should be replaced (``auth.login`` does that after a successful
login).  The module-level functions use ``DEFAULT_PARAMS`` for callers
without a configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailserver.auth.slots import CoreSlots

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """argon2id cost parameters (RFC 9106 §3.1).

    ``memory_kib``: m, KiB (1 KiB blocks); ``time_cost``: t, passes;
    ``parallelism``: p, lanes.

    The default, m = 64 MiB, t = 3, p = 1, is RFC 9106 §4's second
    recommended option ("if much less memory is available": t = 3,
    m = 2^16 KiB) with one lane instead of four, because:

    * a server verifies many logins at once; the lanes of one hash would run
      on several cores, so p = 4 lets four logins' worth of threads take the
      whole machine (issue #13: the event loop starved).  With p = 1 one
      verification is one core, and ``Hasher``'s pool bounds how many run.
      Lanes do not change the attacker's cost (m × t blocks to fill either
      way), only how many cores the defender may spread one hash over;
    * it keeps m and t of the hashes made before (argon2-cffi's defaults:
      m = 64 MiB, t = 3, p = 4), so moving to it is no downgrade, and it is
      what the Dovecot reference in the bench uses;
    * memory is bounded by the pool: ``threads`` × 64 MiB at most.

    OWASP's current floor (Password Storage Cheat Sheet: m = 19 MiB, t = 2,
    p = 1, "equivalent" to m = 46 MiB, t = 1) costs about a seventh of the
    CPU per login and is the setting to choose where logins per second
    matter more than margin (``[auth] argon2_memory = 19456``,
    ``argon2_time_cost = 2``).
    """

    memory_kib: int = 65536
    time_cost: int = 3
    parallelism: int = 1


DEFAULT_PARAMS = Argon2Params()


def default_threads() -> int:
    """Hashing threads when the configuration says 0: one core fewer than
    this process may use, at least one (``os.sched_getaffinity``)."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


class Hasher:
    """argon2id hashing and verifying with ``params``, on a pool of ``threads``.

    The async methods run on the pool, each inside one of ``slots`` when
    given (``auth.slots``: the bound shared by several worker processes); the
    plain ones on the caller's thread.  ``close`` drops queued work (a
    stopping server) without waiting.
    """

    def __init__(self, params: Argon2Params = DEFAULT_PARAMS, threads: int = 0,
                 slots: CoreSlots | None = None) -> None:
        self.params = params
        self.threads = threads or default_threads()
        self._slots = slots
        self._ph = PasswordHasher(time_cost=params.time_cost, memory_cost=params.memory_kib,
                                  parallelism=params.parallelism, type=Type.ID)
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="argon2")

    def hash(self, password: str) -> str:
        """The argon2id PHC string (``$argon2id$v=19$m=...``) of ``password``."""
        return self._ph.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` matches ``password_hash`` (whatever parameters it
        carries); False on a mismatch or a malformed hash."""
        try:
            return self._ph.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when ``password_hash`` was made with other parameters than ours
        (argon2-cffi ``check_needs_rehash``); False for a malformed one."""
        try:
            return self._ph.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return False

    async def hash_async(self, password: str) -> str:
        """``hash`` on the pool."""
        return await self._run(self.hash, password)

    async def verify_async(self, password_hash: str, password: str) -> bool:
        """``verify`` on the pool."""
        return await self._run(self.verify, password_hash, password)

    async def run_async(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the pool, inside a slot: other CPU-bound work of the
        login path (PBKDF2 of SCRAM keys, ``auth.scram.make_keys``)."""
        return await self._run(fn, *args)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        slots = self._slots

        def job() -> T:
            with slots.hold() if slots is not None else contextlib.nullcontext():
                return fn(*args)

        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    def close(self) -> None:
        """Stop the pool: queued work is cancelled, running hashes finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)


_default = PasswordHasher(time_cost=DEFAULT_PARAMS.time_cost,
                          memory_cost=DEFAULT_PARAMS.memory_kib,
                          parallelism=DEFAULT_PARAMS.parallelism, type=Type.ID)


def hash_password(password: str, params: Argon2Params | None = None) -> str:
    """The argon2id PHC string of ``password`` with ``params`` (default ``DEFAULT_PARAMS``)."""
    if params is None or params == DEFAULT_PARAMS:
        return _default.hash(password)
    return PasswordHasher(time_cost=params.time_cost, memory_cost=params.memory_kib,
                          parallelism=params.parallelism, type=Type.ID).hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; False on mismatch or a bad hash."""
    try:
        return _default.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_async(password_hash: str, password: str) -> bool:
    """``verify_password`` on a worker thread (callers outside the serving path)."""
    return await asyncio.to_thread(verify_password, password_hash, password)


async def hash_async(password: str, params: Argon2Params | None = None) -> str:
    """``hash_password`` on a worker thread (the admin service, the CLI)."""
    return await asyncio.to_thread(hash_password, password, params)
