"""Online backup, verification and restore of a data directory.

A backup is a directory::

    manifest.json       written last: a backup without one is incomplete
    store/data.mdb      LMDB's compacting copy, taken in one read transaction
                        while the daemon goes on writing (``Store.copy_to``)
    data/...            the rest of the data directory (DKIM keys, the made
                        TLS pair, ...) but ``store/`` and ``run/`` (sockets,
                        locks and counters of the running processes)
    etc/<config>        the configuration file, and ``etc/tls/`` the
                        configured TLS files when they live outside it

The manifest (JSON) names every file with its size and SHA-256, the versions
(mailserver, store schema, LMDB, Python), the source and the time.  Files are
hashed and copied in chunks: memory stays bounded whatever the store's size.

Restore copies ``store/`` and ``data/`` back into an empty (or missing) data
directory, after checking every checksum and the store's consistency.  The
LMDB file comes back as it was, so every mailbox keeps its UIDVALIDITY, UIDs
and MODSEQs: IMAP clients do not resynchronise (RFC 3501 §2.3.1.1).  The
configuration is left in the backup for the operator to put in place: it is
not ours to overwrite ``/etc``.

Errors: ``Cannot`` (a non-empty destination, a damaged or incomplete backup),
``StoreNotFound`` (nothing to verify), OSError.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailserver.config import Config
from mailserver.errors import Cannot, StoreNotFound
from mailserver.queue import model as queue_model
from mailserver.store import fsck
from mailserver.store.kv import DATA_FILE, SCHEMA_VERSION, lmdb_version
from mailserver.store.store import Store

MANIFEST = "manifest.json"
FORMAT = "mailserver-backup"
FORMAT_VERSION = 1
#: Copy and hash in pieces of this many octets (the memory bound).
CHUNK = 1 << 20
#: Top-level entries of the data directory a backup leaves out: the store
#: (snapshotted instead) and the running processes' sockets, locks, counters.
SKIPPED = frozenset({"store", "run"})


@dataclass(frozen=True, slots=True)
class BackupReport:
    """A finished backup: where, how many files and octets, how long (seconds)."""

    path: Path
    files: int
    size: int
    seconds: float


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """``verify``: the store check, plus the manifest's problems for a backup
    (``is_backup``); ``ok`` when both are clean."""

    path: Path
    is_backup: bool
    store: fsck.FsckReport
    manifest_problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when nothing is damaged."""
        return self.store.ok and not self.manifest_problems


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """A finished restore: the data directory, files and octets written, the
    seconds it took, and the configuration copy left in the backup (if any)."""

    data_dir: Path
    files: int
    size: int
    seconds: float
    config_copy: Path | None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mailserver")
    except PackageNotFoundError:
        return "unknown"


def _is_empty(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(src: Path, dst: Path) -> None:
    """Copy one file in chunks with its mode, and sync it."""
    dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copyfile(src, dst)  # sendfile/chunks: bounded memory
    shutil.copymode(src, dst)
    _fsync(dst)


def _data_files(data_dir: Path) -> Iterator[Path]:
    """Regular files of the data directory a backup takes (not ``SKIPPED``)."""
    for top in sorted(data_dir.iterdir()):
        if top.name in SKIPPED:
            continue
        if top.is_file() and not top.is_symlink():
            yield top
        elif top.is_dir() and not top.is_symlink():
            for root, dirs, files in os.walk(top):
                dirs.sort()
                for name in sorted(files):
                    p = Path(root) / name
                    if p.is_file() and not p.is_symlink():
                        yield p


def _write_manifest(dest: Path, config: Config, started: float) -> tuple[int, int]:
    """Hash every file under ``dest``, write ``manifest.json`` atomically; (files, size)."""
    entries = []
    total = 0
    for p in sorted(q for q in dest.rglob("*") if q.is_file()):
        rel = p.relative_to(dest).as_posix()
        size = p.stat().st_size
        total += size
        entries.append({"path": rel, "size": size, "sha256": _sha256(p)})
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "created_unix": round(started, 3),
        "versions": {"mailserver": _version(), "store_schema": SCHEMA_VERSION,
                     "lmdb": lmdb_version(), "python": sys.version.split()[0]},
        "hostname": config.hostname,
        "source": {"data_dir": str(config.data_dir),
                   "config": str(config.source) if config.source else None},
        "files": entries,
    }
    tmp = dest / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    _fsync(tmp)
    tmp.replace(dest / MANIFEST)
    _fsync(dest)
    return len(entries), total


def _copy_files(config: Config, dest: Path) -> None:
    """Everything but the store: data directory files, configuration, TLS files."""
    data_dir = config.data_dir
    for src in _data_files(data_dir):
        _copy(src, dest / "data" / src.relative_to(data_dir))
    if config.source is not None and config.source.is_file():
        _copy(config.source, dest / "etc" / config.source.name)
    for tls_file in (config.tls.cert_file, config.tls.key_file):
        if tls_file is None:
            continue
        tls_file = Path(tls_file)
        try:
            tls_file.resolve().relative_to(data_dir.resolve())
        except ValueError:  # outside the data directory: not copied with it
            _copy(tls_file, dest / "etc" / "tls" / tls_file.name)


async def backup(store: Store, config: Config, dest: Path) -> BackupReport:
    """Back up the open ``store`` and the files of ``config`` into ``dest``,
    which must be missing or empty (else ``Cannot``).  Safe while the daemon
    runs: the store copy is one LMDB snapshot, writers are not held up."""
    dest = Path(dest)
    if not _is_empty(dest):
        raise Cannot(f"backup directory {dest} is not empty")
    if dest.resolve().is_relative_to(config.data_dir.resolve()):
        raise Cannot(f"backup directory {dest} is inside the data directory")
    started = time.time()
    t0 = time.monotonic()
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    (dest / "store").mkdir(mode=0o700)
    await store.copy_to(dest / "store")
    await asyncio.to_thread(_fsync, dest / "store" / DATA_FILE)
    await asyncio.to_thread(_copy_files, config, dest)
    files, size = await asyncio.to_thread(_write_manifest, dest, config, started)
    return BackupReport(dest, files, size, time.monotonic() - t0)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the backup in ``path``.  Raises Cannot when it is
    missing (an incomplete backup) or not ours."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Cannot(f"{path} holds no {MANIFEST}: not a finished backup") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Cannot(f"{path / MANIFEST} is damaged: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Cannot(f"{path / MANIFEST} is not a mailserver backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise Cannot(f"backup format version {manifest.get('format_version')!r} is not "
                     f"{FORMAT_VERSION}")
    return manifest


def check_manifest(path: Path, manifest: dict[str, Any]) -> list[str]:
    """Every file the manifest names: present, same size, same SHA-256.
    Returns the problems, one line each (empty: all good)."""
    problems = []
    store_schema = manifest.get("versions", {}).get("store_schema")
    if store_schema != SCHEMA_VERSION:
        problems.append(f"store schema {store_schema!r}, this program knows {SCHEMA_VERSION}")
    for entry in manifest.get("files", []):
        rel = str(entry.get("path", ""))
        p = path / rel
        if rel.startswith("/") or ".." in Path(rel).parts:
            problems.append(f"{rel}: path outside the backup")
        elif not p.is_file():
            problems.append(f"{rel}: missing")
        elif p.stat().st_size != entry.get("size"):
            problems.append(f"{rel}: size {p.stat().st_size}, manifest says {entry.get('size')}")
        elif _sha256(p) != entry.get("sha256"):
            problems.append(f"{rel}: SHA-256 differs from the manifest")
    return problems


def _verify(path: Path) -> VerifyReport:
    is_backup = (path / MANIFEST).exists()
    problems: list[str] = []
    if is_backup:
        problems = check_manifest(path, read_manifest(path))
    elif not (path / "store" / DATA_FILE).is_file():
        raise StoreNotFound(path)
    report = fsck.check_path(path / "store", queue_model.decode)
    return VerifyReport(path, is_backup, report, tuple(problems))


async def verify(path: Path) -> VerifyReport:
    """Check a data directory (its ``store``, read-only, safe while the daemon
    runs) or a backup (its manifest's checksums too); see ``store.fsck``.
    Raises StoreNotFound when ``path`` holds neither, Cannot for a broken manifest."""
    return await asyncio.to_thread(_verify, Path(path))


def _restore(config: Config, source: Path) -> RestoreReport:
    t0 = time.monotonic()
    data_dir = config.data_dir
    if not _is_empty(data_dir):
        raise Cannot(f"data directory {data_dir} is not empty: restore only into an empty one")
    manifest = read_manifest(source)
    problems = check_manifest(source, manifest)
    if problems:
        raise Cannot(f"backup {source} is damaged: {problems[0]}"
                     + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    found = fsck.check_path(source / "store", queue_model.decode)
    if not found.ok:
        raise Cannot(f"the store in backup {source} is inconsistent ({found.total} findings, "
                     f"first: {found.findings[0].detail}); see 'mailserver verify {source}'")
    files = size = 0
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for entry in manifest["files"]:
        rel = Path(entry["path"])
        if rel.parts[0] == "store":
            target = data_dir / rel
        elif rel.parts[0] == "data":
            target = data_dir.joinpath(*rel.parts[1:])
        else:
            continue  # etc/: left for the operator
        _copy(source / rel, target)
        files += 1
        size += int(entry["size"])
    for d in (data_dir / "store", data_dir):
        _fsync(d)
    etc = [Path(e["path"]) for e in manifest["files"] if str(e["path"]).startswith("etc/")
           and "/" not in str(e["path"])[4:]]
    config_copy = source / etc[0] if etc else None
    return RestoreReport(data_dir, files, size, time.monotonic() - t0, config_copy)


async def restore(config: Config, source: Path) -> RestoreReport:
    """Restore the backup in ``source`` into ``config.data_dir``, which must
    be missing or empty (else ``Cannot``); checks every checksum and the
    store first (``Cannot`` when damaged).  The daemon must not run on that
    directory (it is empty, so it cannot be)."""
    return await asyncio.to_thread(_restore, config, Path(source))
