"""Password hashing with argon2id (argon2-cffi, RFC 9106).

Hashing and verifying cost tens of milliseconds of CPU by design: async code
calls ``verify_async``/``hash_async`` so the event loop keeps running.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id, RFC 9106 second recommended parameter set


def hash_password(password: str) -> str:
    """Return the argon2id PHC string (``$argon2id$v=19$...``) for ``password``."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; False on mismatch or a bad hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_async(password_hash: str, password: str) -> bool:
    """``verify_password`` on a worker thread."""
    return await asyncio.to_thread(verify_password, password_hash, password)


async def hash_async(password: str) -> str:
    """``hash_password`` on a worker thread."""
    return await asyncio.to_thread(hash_password, password)
