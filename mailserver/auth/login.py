"""Checking a login against the accounts in the store.

Shared by SMTP AUTH (RFC 4954) and IMAP LOGIN/AUTHENTICATE (RFC 3501 §6.2).
"""

from __future__ import annotations

from mailserver.auth.passwords import verify_async
from mailserver.store.store import Store

# A valid hash of a random password: verifying against it when the account does
# not exist costs the same time as a real check, so timing does not reveal
# which addresses exist.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$"
    "m2rQ0Av3CC5xkQ9G9T2zmWGl1mIhC3xSMRuj6uH1kPQ"
)


async def authenticate(store: Store, username: str, password: str) -> str | None:
    """Return the account address for a correct ``username``/``password``, else None.

    ``username`` is the account address (case-insensitive).  Never raises for
    bad credentials.
    """
    account = store.get_account(username.strip())
    if account is None:
        await verify_async(_DUMMY_HASH, password)
        return None
    if await verify_async(account.password_hash, password):
        return account.address
    return None
