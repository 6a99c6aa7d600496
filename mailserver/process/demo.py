"""The demo account and the friendly start-up banner (``demo_account = true``)."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import structlog

from mailserver.auth.passwords import hash_async
from mailserver.auth.scram import make_keys
from mailserver.config import Config
from mailserver.fsutil import write_atomic
from mailserver.services import argon2_params, ensure_domains
from mailserver.store.api import LmdbDirectory
from mailserver.store.store import Store

log = structlog.get_logger("mailserver.daemon")

#: Name of the file, in ``data_dir``, that keeps the demo credentials (mode 0600).
DEMO_CREDENTIALS = "demo-credentials"
#: Local part of the demo account.
DEMO_LOCAL_PART = "demo"
#: Domain used for the demo account when the config lists none.
DEMO_DOMAIN = "example.test"


@dataclass(frozen=True, slots=True)
class DemoAccount:
    """The demo account (``demo_account = true``) and where its credentials are kept."""

    address: str
    password: str
    created: bool  # made by this start (so the password is worth printing)
    path: Path  # the credentials file


def _read_credentials(path: Path) -> tuple[str, str] | None:
    try:
        fields = dict(
            line.split("=", 1) for line in path.read_text("utf-8").splitlines() if "=" in line
        )
    except FileNotFoundError:
        return None
    if "user" in fields and "password" in fields:
        return fields["user"], fields["password"]
    return None


async def ensure_demo_account(config: Config, store: Store) -> DemoAccount | None:
    """Make sure the demo account exists; return it (None if it cannot be vouched for).

    The credentials file is written (synced) *before* the account, so a crash
    in between is repaired on the next start from the file.  An account made
    by hand under the demo address is left alone: we do not know its password.
    """
    path = config.data_dir / DEMO_CREDENTIALS
    saved = await asyncio.to_thread(_read_credentials, path)
    if saved is not None:
        address, password = saved
        created = False
    else:
        domain = config.domains[0] if config.domains else DEMO_DOMAIN
        address = f"{DEMO_LOCAL_PART}@{domain}"
        if store.get_account(address) is not None:
            log.warning("demo_account_unknown_password", user=address, file=str(path))
            return None
        password = secrets.token_urlsafe(12)
        await asyncio.to_thread(
            write_atomic, path, f"user={address}\npassword={password}\n".encode(), 0o600
        )
        created = True
    if store.get_account(address) is None:
        await ensure_domains(LmdbDirectory(store), (address.rpartition("@")[2],))
        await store.add_account(address, await hash_async(password, argon2_params(config.auth)),
                                scram=await asyncio.to_thread(make_keys, password,
                                                              config.auth.scram_iterations))
        created = True
        log.info("demo_account_created", user=address)
    return DemoAccount(address=address, password=password, created=created, path=path)


_TLS_LABEL = {"none": "plain", "starttls": "STARTTLS", "implicit": "TLS"}


def print_banner(cfg: Config, ports: Mapping[str, int], demo: DemoAccount | None,
                 out: TextIO | None = None) -> None:
    """The friendly block on stdout: where to connect and with which credentials.

    ``ports``: the bound port of each listener, by name."""
    out = out or sys.stdout
    lines = ["", f"mailserver is running on {cfg.hostname} (data in {cfg.data_dir})"]
    for listener in cfg.listeners:
        lines.append(
            f"  {listener.name:<12} {listener.protocol:<10} {listener.address}:"
            f"{ports[listener.name]:<6} {_TLS_LABEL[listener.tls]}"
        )
    if demo is not None:
        lines.append(f"  user         {demo.address}")
        if demo.created:
            lines.append(f"  password     {demo.password}")
            lines.append(f"               (also saved in {demo.path})")
        else:
            lines.append(f"  password     see {demo.path}")
    if cfg.tls.cert_file is None:
        lines.append("  the TLS certificate is self-signed: accept it in your mail client")
    lines.append("")
    out.write("\n".join(lines) + "\n")
    out.flush()
