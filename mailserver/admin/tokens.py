"""Bearer tokens of the HTTP admin API, kept hashed in ``data_dir/api-tokens.json``.

A token is ``msv1_`` and 43 characters of base64url: 32 random octets
(``secrets.token_bytes``, 256 bits).  It is shown once, when made; the file
keeps its SHA-256 only.  A fast hash is enough here (unlike passwords): the
secret is random and long, so there is nothing to guess from the digest, and
checking a request costs a microsecond, not an argon2 round.

Why a file and not the store: the store has no table for it, and a new
LMDB database would mean a new write request through every writer (local,
remote, the writer service) for a record that changes a few times a year.
The file is small JSON, written whole (``fsutil.write_atomic``, mode 0600:
the digests are not secrets, but the file says which tokens may write), by
the command line under an exclusive ``flock`` of ``api-tokens.lock``; the
daemon only reads it, again whenever it changes (``os.stat`` per request),
so a token made or revoked counts at the next request in every worker.

File layout::

    {"version": 1, "tokens": [{"name": "grafana", "sha256": "<hex>",
                               "read_only": true, "created": 1733400000.0}]}
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailserver.admin.views import TokenInfo
from mailserver.errors import AlreadyExists, InvalidName, MailserverError, NotFound
from mailserver.fsutil import write_atomic

FILE_NAME = "api-tokens.json"
LOCK_NAME = "api-tokens.lock"
#: What every token starts with: says what it is (secret scanners, logs) and its format.
PREFIX = "msv1_"
#: Random octets in a token.
SECRET_BYTES = 32
#: A token's name: what the audit log says did a change ("who").
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def token_name(name: str) -> str:
    """``name`` if it is a valid token name (1 to 64 of letters, digits, ``.``,
    ``_``, ``-``, starting with a letter or digit); raises InvalidName."""
    if not _NAME.match(name):
        raise InvalidName(f"invalid token name {name!r}: use 1 to 64 letters, digits, "
                          "'.', '_' or '-', starting with a letter or digit")
    return name


def digest(token: str) -> str:
    """The SHA-256 of a token, as the file keeps it (hex)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Record:
    info: TokenInfo
    sha256: str


class TokenFile:
    """The token file of one data directory.

    ``create``/``revoke`` are blocking (lock, fsync): run them off the event
    loop.  ``check`` is cheap (one ``stat``; the file is read again only when
    it changed) and may run on the loop.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._lock_path = data_dir / LOCK_NAME
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime ns) parsed
        self._by_digest: dict[str, TokenInfo] = {}

    def _read(self) -> list[_Record]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            doc = json.loads(raw)
            return [_Record(TokenInfo(str(t["name"]), bool(t["read_only"]), float(t["created"])),
                            str(t["sha256"]))
                    for t in doc["tokens"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise MailserverError(f"{self.path} cannot be read: {exc}") from None

    def _write(self, records: list[_Record]) -> None:
        doc = {"version": 1, "tokens": [
            {"name": r.info.name, "sha256": r.sha256, "read_only": r.info.read_only,
             "created": r.info.created} for r in records]}
        write_atomic(self.path, json.dumps(doc, indent=1).encode() + b"\n", 0o600)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def list(self) -> list[TokenInfo]:
        """Every token, by name (no secrets: there are none to show)."""
        return sorted((r.info for r in self._read()), key=lambda t: t.name)

    def create(self, name: str, *, read_only: bool, now: float | None = None) -> tuple[
            TokenInfo, str]:
        """Make a token; returns its record and the token itself (shown once).

        Raises InvalidName, AlreadyExists (revoke the old one first), OSError.
        """
        name = token_name(name)
        token = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode(
            "ascii").rstrip("=")
        info = TokenInfo(name, read_only, time.time() if now is None else now)
        with self._locked():
            records = self._read()
            if any(r.info.name == name for r in records):
                raise AlreadyExists(f"a token named {name!r} exists; revoke it first")
            self._write([*records, _Record(info, digest(token))])
        return info, token

    def revoke(self, name: str) -> TokenInfo:
        """Remove the token called ``name``; returns its record.  Raises NotFound, OSError."""
        with self._locked():
            records = self._read()
            kept = [r for r in records if r.info.name != name]
            if len(kept) == len(records):
                raise NotFound(f"no token named {name!r}")
            self._write(kept)
        return next(r.info for r in records if r.info.name == name)

    def check(self, token: str) -> TokenInfo | None:
        """The token's record, or None when no token has that value.

        Raises MailserverError when the file is damaged (the caller answers
        500: better than locking every client out without a word).
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._seen, self._by_digest = None, {}
            return None
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        if seen != self._seen:
            self._by_digest = {r.sha256: r.info for r in self._read()}
            self._seen = seen
        wanted = digest(token)
        # The digest of a 256-bit secret leaks nothing worth a timing attack;
        # compare_digest anyway, so nobody has to think about it.
        for known, info in self._by_digest.items():
            if hmac.compare_digest(known, wanted):
                return info
        return None
