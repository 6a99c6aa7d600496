"""A store in a temp directory with one domain and some accounts, for store tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from mailserver.store.store import Store


@contextlib.asynccontextmanager
async def open_store(path: Path, *accounts: str, domain: str = "example.org",
                     ) -> AsyncIterator[Store]:
    """``Store.open(path)`` with ``domain`` and ``accounts`` (password hash "h")
    added; closed on exit."""
    store = await Store.open(path)
    try:
        await store.add_domain(domain)
        for account in accounts:
            await store.add_account(account, "h")
        yield store
    finally:
        await store.close()
