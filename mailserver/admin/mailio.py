"""Import and export of whole mailboxes: mbox and Maildir (``mailformats.py``).

Import goes through the store's normal APPEND path (``Store.append``: the
message is stored with CRLF line ends as IMAP APPEND stores it, its MIME
facts computed, quota and size limits applied, committed and synced).  Up to
``WINDOW`` appends (``WINDOW_OCTETS`` octets) are in flight at once, so the
writer commits them in groups (one sync for many messages) while the next
ones are read.  Requests are queued in file order, so UIDs follow it: a
message big enough for the store to hash it in a thread is appended alone
(the window drained before and after it), as its request would otherwise be
overtaken.

Streaming: one message is read at a time (an mbox never whole in memory);
memory is bounded by the window.  The store's memory map would still grow
into the RSS with every page the job touches (page cache, but counted):
every ``RELEASE_EVERY`` seconds both directions drop it
(``Store.release_map_pages``), so RSS stays bounded whatever the size.
By time, not octets: the map grows with the B-tree pages each message's
insert touches (content-addressed blob keys land on random leaves, and the
kernel maps a whole page-cache folio per fault, up to 256 KiB), ~50 MiB a
second at 900 messages a second, whatever their size.

Interrupted (Ctrl-C cancels the task), the import waits for the appends
already queued, which commit: what was reported imported is stored, nothing
is half-written.

Export writes every mailbox of an account, in UID order, into a directory
that must be missing or empty.

Errors: ``Cannot`` (a non-empty export directory, an unreadable source),
``AccountNotFound``, ``QuotaExceeded`` (the import stops; what came before
is stored), OSError.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mailserver.admin import mailformats as fmt
from mailserver.config import Config
from mailserver.errors import AccountNotFound, AlreadyExists, Cannot, MailboxNotFound, UserError
from mailserver.protocol.line_endings import to_crlf
from mailserver.protocol.mime.cost import cheap_to_analyze, message_facts
from mailserver.store import codec
from mailserver.store.names import normalize_address
from mailserver.store.store import Store

FORMATS = ("mbox", "maildir")
#: Appends in flight at once, and their octets: what one group commit may take.
WINDOW = 64
WINDOW_OCTETS = 8 << 20
#: At or above this size ``Store.append`` hashes in a thread (``store/base.py``
#: does from 256 KiB): such a message is appended alone to keep file order.
ALONE_OCTETS = 128 << 10
#: Seconds between drops of the store's map pages (a call costs ~0.2 ms).
RELEASE_EVERY = 0.1
#: Seconds between progress reports.
PROGRESS_EVERY = 0.5


@dataclass(frozen=True, slots=True)
class Progress:
    """Where an import or export is: messages and octets done, the source's
    total octets (None when unknown), the current mailbox; ``done`` on the
    last report, ``interrupted`` when it ends early."""

    messages: int
    octets: int
    total: int | None
    mailbox: str
    seconds: float
    done: bool = False
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class TransferReport:
    """A finished import or export: messages, octets, mailboxes, messages
    skipped (too big, undecodable), seconds."""

    messages: int
    octets: int
    mailboxes: int
    skipped: int
    seconds: float


ProgressFn = Callable[[Progress], None]


# -- sources ---------------------------------------------------------------------------


def _mbox_files(path: Path) -> Iterator[tuple[str, Path]]:
    if path.is_file():
        yield "INBOX", path
        return
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if name.startswith(".") or name.endswith((".msf", ".dat", ".json")):
                continue
            p = Path(root) / name
            yield fmt.mbox_folder(p.relative_to(path)), p


def _source(kind: str, path: Path) -> Iterator[tuple[str, fmt.DiskMessage | None]]:
    """``(folder, message)`` of every message under ``path``, read one at a
    time; each folder first comes once with None (so empty ones are made too)."""
    if kind == "mbox":
        for folder, file in _mbox_files(path):
            yield folder, None
            mtime = int(file.stat().st_mtime)
            with file.open("rb") as f:
                try:
                    for msg in fmt.read_mbox(f):
                        if not msg.data:  # UW-IMAP's folder data, or nothing at all
                            continue
                        yield folder, msg if msg.date is not None else \
                            fmt.DiskMessage(msg.data, msg.flags, mtime)
                except ValueError as exc:
                    raise Cannot(f"{file}: {exc}") from None
        return
    for folder, directory in fmt.maildir_folders(path):
        yield folder, None
        keywords = fmt.read_keywords(directory) or fmt.read_keywords(path)
        for file in fmt.maildir_files(directory):
            yield folder, fmt.DiskMessage(file.read_bytes(), fmt.maildir_flags(file.name, keywords),
                                          int(file.stat().st_mtime))


def messages_in(path: Path) -> Iterator[bytes]:
    """Every message (bytes, CRLF line ends) of the mbox file or directory,
    or the Maildir (a directory with ``cur``/``new``), at ``path``, one at
    a time.  Raises Cannot when ``path`` does not exist, OSError."""
    path = Path(path)
    if not path.exists():
        raise Cannot(f"{path} does not exist")
    kind = "maildir" if (path / "cur").is_dir() or (path / "new").is_dir() else "mbox"
    for _, msg in _source(kind, path):
        if msg is not None:
            yield to_crlf(msg.data)


def _source_size(kind: str, path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _valid_flags(flags: frozenset[str]) -> frozenset[str]:
    """The flags the store accepts (keywords that are not atoms left out)."""
    out: set[str] = set()
    for f in flags:
        try:
            out |= codec.normalize_flags(frozenset((f,)))
        except UserError:
            continue
    return frozenset(out)


# -- import ----------------------------------------------------------------------------


class _Importer:
    def __init__(self, store: Store, config: Config, account: str, progress: ProgressFn | None,
                 total: int | None) -> None:
        self.store = store
        self.account = account
        self.max_size = config.limits.max_message_size
        self.progress = progress
        self.total = total
        self.inflight: deque[tuple[asyncio.Task[object], int]] = deque()
        self.inflight_octets = 0
        self.messages = self.octets = self.skipped = 0
        self.mailboxes: dict[str, str] = {}
        self.mailbox = ""
        self.t0 = self.released = time.monotonic()  # released: the last release_map_pages
        self.last = 0.0

    async def mailbox_for(self, folder: str) -> str:
        name = self.mailboxes.get(folder)
        if name is None:
            try:
                name = self.store.get_mailbox(self.account, folder).name
            except MailboxNotFound:
                try:
                    name = (await self.store.create_mailbox(self.account, folder)).name
                except AlreadyExists:
                    name = self.store.get_mailbox(self.account, folder).name
            self.mailboxes[folder] = name
        return name

    async def add(self, mailbox: str, msg: fmt.DiskMessage) -> None:
        data = to_crlf(msg.data)
        if len(data) > self.max_size:
            self.skipped += 1
            return
        facts = message_facts(data) if cheap_to_analyze(data) else \
            await asyncio.to_thread(message_facts, data)
        alone = len(data) >= ALONE_OCTETS
        if alone:
            await self.drain(0)
        date = msg.date if msg.date is not None else int(time.time())
        task: asyncio.Task[object] = asyncio.ensure_future(self.store.append(
            self.account, mailbox, data, facts, flags=_valid_flags(msg.flags),
            internal_date=date))
        self.inflight.append((task, len(data)))
        self.inflight_octets += len(data)
        await self.drain(0 if alone else WINDOW)

    async def drain(self, keep: int) -> None:
        """Wait for the oldest appends until at most ``keep`` are in flight."""
        while self.inflight and (len(self.inflight) > keep or self.inflight_octets > WINDOW_OCTETS):
            task, size = self.inflight[0]
            await asyncio.shield(task)  # a Ctrl-C must not cancel a queued append
            self.inflight.popleft()
            self.inflight_octets -= size
            self.messages += 1
            self.octets += size
            if (now := time.monotonic()) - self.released >= RELEASE_EVERY:
                self.released = now
                self.store.release_map_pages()
            self.report()

    def report(self, *, done: bool = False, interrupted: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or not (done or now - self.last >= PROGRESS_EVERY):
            return
        self.last = now
        self.progress(Progress(self.messages, self.octets, self.total, self.mailbox,
                               now - self.t0, done, interrupted))


async def import_mail(store: Store, config: Config, kind: str, path: Path, account: str, *,
                      mailbox: str | None = None,
                      progress: ProgressFn | None = None) -> TransferReport:
    """Import the mbox file or directory, or the Maildir, at ``path`` into
    ``account`` (see the module docstring).  ``mailbox``: the target of a
    single mbox file (default INBOX); for a directory, the parent of its
    folders (its INBOX goes into ``mailbox`` itself).  Folders are created
    as needed.  ``progress`` is called every ``PROGRESS_EVERY`` seconds and
    at the end.  Raises Cannot, AccountNotFound, QuotaExceeded, OSError."""
    if kind not in FORMATS:
        raise Cannot(f"unknown format {kind!r}: one of {', '.join(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise Cannot(f"{path} does not exist")
    account = normalize_address(account)
    if store.get_account(account) is None:  # before anything is read
        raise AccountNotFound(f"no account {account}")
    imp = _Importer(store, config, account, progress, _source_size(kind, path))
    try:
        for folder, msg in _source(kind, path):
            if mailbox is not None:
                folder = mailbox if folder == "INBOX" else f"{mailbox}/{folder}"
            imp.mailbox = await imp.mailbox_for(folder)
            if msg is not None:
                await imp.add(imp.mailbox, msg)
        await imp.drain(0)
    except asyncio.CancelledError:
        # Ctrl-C: the queued appends commit; count them, then stop.
        await asyncio.gather(*(t for t, _ in imp.inflight), return_exceptions=True)
        imp.messages += sum(1 for t, _ in imp.inflight if not t.cancelled() and not t.exception())
        imp.report(done=True, interrupted=True)
        raise
    except BaseException:
        await asyncio.gather(*(t for t, _ in imp.inflight), return_exceptions=True)
        raise
    imp.report(done=True)
    return TransferReport(imp.messages, imp.octets, len(imp.mailboxes), imp.skipped,
                          time.monotonic() - imp.t0)


# -- export ----------------------------------------------------------------------------


def _sender(data: bytes) -> str:
    """The Return-Path address of a message (its first header lines), if any."""
    for line in data[:4096].split(b"\n"):
        if not line.strip():
            break
        if line.lower().startswith(b"return-path:"):
            addr = line.split(b":", 1)[1].strip().strip(b"<>").decode("latin-1")
            return addr or "MAILER-DAEMON"
    return "MAILER-DAEMON"


def _lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


async def export_mail(store: Store, account: str, kind: str, path: Path, *,
                      progress: ProgressFn | None = None) -> TransferReport:
    """Write every mailbox of ``account`` to ``path`` (missing or empty): an
    mbox file per mailbox (Thunderbird's ``.sbd`` layout) or a Maildir++ tree.
    Messages in UID order, LF line ends, flags kept.  Raises Cannot,
    AccountNotFound, OSError."""
    if kind not in FORMATS:
        raise Cannot(f"unknown format {kind!r}: one of {', '.join(FORMATS)}")
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise Cannot(f"export directory {path} is not empty")
    account = normalize_address(account)
    if store.get_account(account) is None:
        raise AccountNotFound(f"no account {account}")
    t0 = released = time.monotonic()
    last = 0.0
    messages = octets = boxes = 0
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    host = socket.gethostname().replace("/", "_").replace(":", "_")
    for mb in store.list_mailboxes(account):
        if mb.noselect:
            continue
        boxes += 1
        records = store.list_messages(mb.id)
        if kind == "mbox":
            target = path / fmt.mbox_path(mb.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            out = target.open("wb")
        else:
            folder = path / fmt.maildir_dir(mb.name)
            for sub in ("cur", "new", "tmp"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            keywords = sorted({f for r in records for f in r.flags if not f.startswith("\\")}
                              - {"$Forwarded"})
            letters = fmt.write_keywords(folder, keywords)
        try:
            for rec in records:
                try:
                    data = _lf(rec.prefix + store.get_blob(rec.blob_id))
                except UserError:  # expunged since the listing
                    continue
                if kind == "mbox":
                    fmt.write_mbox_message(out, data, rec.flags, rec.internal_date, _sender(data))
                else:
                    name = (f"{rec.internal_date}.M{rec.uid}P{os.getpid()}.{host},S={len(data)}"
                            + fmt.maildir_info(rec.flags, letters))
                    file = folder / "cur" / name
                    file.write_bytes(data)
                    os.utime(file, (rec.internal_date, rec.internal_date))
                messages += 1
                octets += len(data)
                now = time.monotonic()
                if now - released >= RELEASE_EVERY:
                    released = now
                    store.release_map_pages()
                if progress is not None and now - last >= PROGRESS_EVERY:
                    last = now
                    progress(Progress(messages, octets, None, mb.name, now - t0))
                await asyncio.sleep(0)  # let Ctrl-C in between messages
        finally:
            if kind == "mbox":
                out.close()
    if progress is not None:
        progress(Progress(messages, octets, None, "", time.monotonic() - t0, done=True))
    return TransferReport(messages, octets, boxes, 0, time.monotonic() - t0)
