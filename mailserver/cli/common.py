"""What every command shares: finding the configuration, reaching the admin
service, reporting an error.

Which configuration is used, first match wins:

1. ``-c FILE`` / ``--config FILE``;
2. ``$MAILSERVER_CONFIG``;
3. ``conf/mailserver.toml`` in the current directory (the source checkout);
4. ``/etc/mailserver/mailserver.toml``;
5. the built-in development configuration (``config.builtin()``: loopback,
   ports 2525/2587/2465/1143/1993, data in ``./var``, demo account).

``--data-dir DIR`` overrides the file's ``data_dir`` (tests, trying things out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from mailserver.config import Config, builtin, load, with_data_dir
from mailserver.errors import MailserverError, StoreNotFound

if TYPE_CHECKING:  # the daemon-free commands (check-config) do not load the store
    from mailserver.admin import AdminService

PROG = "mailserver"
ENV_CONFIG = "MAILSERVER_CONFIG"
DEV_CONFIG = Path("conf/mailserver.toml")
SYSTEM_CONFIG = Path("/etc/mailserver/mailserver.toml")

T = TypeVar("T")


class CliError(MailserverError):
    """A command-line problem worth one line on stderr (bad password input, ...)."""


def error(message: str) -> None:
    """Print ``mailserver: error: message`` on stderr (argparse's own format)."""
    print(f"{PROG}: error: {message}", file=sys.stderr)


def find_config(explicit: Path | None) -> Path | None:
    """The config file to read (see the module docstring), or None for the built-in one."""
    if explicit is not None:
        return explicit
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    for candidate in (DEV_CONFIG, SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def load_config(args: argparse.Namespace) -> Config:
    """Read the configuration the options point at and apply ``--data-dir``."""
    path = find_config(getattr(args, "config", None))
    config = load(path) if path is not None else builtin()
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None:
        config = with_data_dir(config, data_dir)
    return config


def _no_store(data_dir: object) -> CliError:
    return CliError(f"no store at {data_dir} (start the daemon once or run "
                    f"'{PROG} init', or pass --data-dir/-c)")


def admin_config(args: argparse.Namespace) -> Config:
    """The configuration of an admin command, once its store is known to exist.

    Names the data directory on stderr (a command run from the wrong
    directory must not look as if it worked); raises CliError when there is
    no store there: admin commands never create one.
    """
    from mailserver.store.store import Store

    config = load_config(args)
    if config.store.backend == "postgresql":  # the database is checked when opened
        print(f"{PROG}: using the PostgreSQL store of [store] dsn", file=sys.stderr)
        return config
    if not Store.exists(config.data_dir):
        raise _no_store(config.data_dir)
    print(f"{PROG}: using data directory {config.data_dir}", file=sys.stderr)
    return config


def with_admin(config: Config, fn: Callable[[AdminService], Awaitable[T]]) -> T:
    """Open the admin service over the store of ``config``, ``await fn(admin)``, close."""
    from mailserver.admin import open_admin

    async def main() -> T:
        async with open_admin(config) as admin:
            return await fn(admin)

    try:
        return asyncio.run(main())
    except StoreNotFound as exc:  # removed since admin_config looked
        raise _no_store(exc.data_dir) from None
