"""``mailserver import imap``: copy every folder of a remote IMAP account.

The remote side is read with the standard library's ``imaplib`` (a well-kept
client; its blocking calls run in a thread, one at a time): ``LIST`` for the
folders, then per folder ``EXAMINE`` (read-only: the remote ``\\Seen`` flags
stay as they were), ``UID SEARCH UID n:*`` for what is new, and one ``UID
FETCH (UID FLAGS INTERNALDATE BODY.PEEK[])`` per message, so a single
message is in memory at a time (RFC 3501 §6.4.4, §6.4.8, §7.4.2).  Each goes
through the store's normal APPEND path with its flags, keywords and
INTERNALDATE (``mailio._Importer``: windowed group commits).

Resumable: per folder the remote UIDVALIDITY and the highest UID committed
are kept in ``data_dir/state/imap-import/<account>/<user>@<host>.json``,
written (atomically, synced) after the appends it counts have committed.
Run again, the import asks only for UIDs above that.  A folder whose
UIDVALIDITY changed (the remote mailbox was recreated, RFC 3501 §2.3.1.1)
cannot be matched with what we have: it is skipped and reported.  Only a
kill between a group commit and the state write it is followed by can copy
the messages of that group again.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import json
import re
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailserver.admin import mailformats as fmt
from mailserver.admin.mailio import ProgressFn, TransferReport, _Importer
from mailserver.config import Config
from mailserver.errors import AccountNotFound, Cannot
from mailserver.fsutil import write_atomic
from mailserver.protocol.imap import utf7
from mailserver.store.names import normalize_address
from mailserver.store.store import Store

TLS_MODES = ("implicit", "starttls", "none")
#: Seconds each remote command may take.
TIMEOUT = 60.0

# RFC 3501 §7.2.2: mailbox-list = "(" [mbx-list-flags] ")" SP (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox
_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?P<delim>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$', re.I)
_UID = re.compile(rb"\bUID (\d+)", re.I)
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)", re.I)
_DATE = re.compile(rb'\bINTERNALDATE "([^"]+)"', re.I)


@dataclass(frozen=True, slots=True)
class Remote:
    """Where to read from: host, port, TLS (``TLS_MODES``), user and password."""

    host: str
    port: int
    tls: str
    user: str
    password: str = field(repr=False)


def _unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "surrogateescape")
    if text.startswith('"') and text.endswith('"'):
        text = re.sub(r'\\(.)', r"\1", text[1:-1])
    return text


def parse_list(lines: list[object]) -> list[tuple[str, str]]:
    """``(name on the wire, our folder name)`` of every selectable mailbox in a
    LIST answer as imaplib returns it (a literal name comes as a tuple)."""
    out: list[tuple[str, str]] = []
    for item in lines:
        if isinstance(item, tuple):
            head, literal = item[0], item[1]
            line = head.rsplit(b" {", 1)[0] + b' "' + literal.replace(b'"', b'\\"') + b'"'
        elif isinstance(item, bytes):
            line = item
        else:
            continue
        m = _LIST.match(line)
        if m is None or b"\\noselect" in m.group("flags").lower() \
                or b"\\nonexistent" in m.group("flags").lower():
            continue
        wire = _unquote(m.group("name"))
        delim = _unquote(m.group("delim")) if m.group("delim").upper() != b"NIL" else ""
        name = wire if "&" not in wire else utf7.decode(wire)
        if delim and delim != "/":
            name = name.replace(delim, "/")
        out.append((wire, "INBOX" if name.upper() == "INBOX" else name))
    return out


def parse_fetch(data: list[object]) -> tuple[int, frozenset[str], int | None, bytes] | None:
    """``(uid, flags, internaldate, message)`` from one message's FETCH answer."""
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            head = item[0]
            rest = b" ".join(x for x in data if isinstance(x, bytes))
            meta = head + b" " + rest
            uid = _UID.search(meta)
            if uid is None:
                return None
            flags_m = _FLAGS.search(meta)
            flags = frozenset(f.decode("ascii", "replace") for f in
                              (flags_m.group(1).split() if flags_m else [])
                              if f.lower() != b"\\recent")
            date_m = _DATE.search(meta)
            date = None
            if date_m is not None:
                tt = imaplib.Internaldate2tuple(b'INTERNALDATE "' + date_m.group(1) + b'"')
                date = int(time.mktime(tt)) if tt is not None else None
            return int(uid.group(1)), flags, date, item[1]
    return None


class _State:
    """The resume file of one (account, remote): folder -> [uidvalidity, last uid]."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.folders: dict[str, list[int]] = json.loads(path.read_bytes())["folders"]
        except FileNotFoundError:
            self.folders = {}
        except (ValueError, KeyError, TypeError) as exc:
            raise Cannot(f"{path} cannot be read: {exc}") from None

    def save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"version": 1, "folders": self.folders}).encode(),
                     0o600)


def _connect(remote: Remote) -> imaplib.IMAP4:
    ctx = ssl.create_default_context()
    if remote.tls == "implicit":
        conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(remote.host, remote.port, ssl_context=ctx,
                                                timeout=TIMEOUT)
    else:
        conn = imaplib.IMAP4(remote.host, remote.port, timeout=TIMEOUT)
        if remote.tls == "starttls":
            conn.starttls(ssl_context=ctx)
    conn.login(remote.user, remote.password)
    return conn


def _check(typ: str, data: Sequence[Any], what: str) -> list[Any]:
    if typ != "OK":
        detail = b" ".join(x for x in data if isinstance(x, bytes)).decode("utf-8", "replace")
        raise Cannot(f"remote {what} failed: {detail}")
    return list(data)


async def import_imap(store: Store, config: Config, remote: Remote, account: str, *,
                      progress: ProgressFn | None = None) -> TransferReport:
    """Copy every selectable folder of ``remote`` into ``account`` (module
    docstring).  Raises AccountNotFound, Cannot (a remote command refused,
    an unreadable state file), QuotaExceeded, OSError / ssl.SSLError /
    imaplib.IMAP4.error (connection, login)."""
    account = normalize_address(account)
    if store.get_account(account) is None:
        raise AccountNotFound(f"no account {account}")
    state = _State(config.data_dir / "state" / "imap-import" / account
                   / f"{remote.user}@{remote.host}.json".replace("/", "_"))
    conn = await asyncio.to_thread(_connect, remote)
    imp = _Importer(store, config, account, progress, None)
    skipped_folders: list[str] = []
    # The folder being copied: its name, UIDVALIDITY and the UIDs handed to
    # the importer, in order (its appends commit in that order).
    current: tuple[str, int, list[int]] | None = None
    saved = 0

    def commit_state(count: int) -> None:
        """The first ``count`` UIDs of the current folder are stored: say so."""
        nonlocal saved
        if current is None or count <= saved:
            return
        folder, validity, done = current
        state.folders[folder] = [validity, done[count - 1]]
        state.save()
        saved = count

    try:
        folders = parse_list(_check(*await asyncio.to_thread(conn.list, '""', "*"), "LIST"))
        for wire, folder in folders:
            quoted = '"' + wire.replace("\\", "\\\\").replace('"', '\\"') + '"'
            _check(*await asyncio.to_thread(conn.select, quoted, True), f"EXAMINE {wire}")
            validity = int((conn.response("UIDVALIDITY")[1] or [b"0"])[0] or 0)
            seen = state.folders.get(folder)
            if seen is not None and seen[0] != validity:
                skipped_folders.append(folder)
                continue
            last = seen[1] if seen is not None else 0
            imp.mailbox = await imp.mailbox_for(folder)
            found = _check(*await asyncio.to_thread(conn.uid, "SEARCH", f"UID {last + 1}:*"),
                           "SEARCH")
            uids = sorted(u for u in (int(x) for x in (found[0] or b"").split()) if u > last)
            current, saved = (folder, validity, []), 0
            if seen is None:
                state.folders[folder] = [validity, 0]
                state.save()
            for uid in uids:
                typ, data = await asyncio.to_thread(
                    conn.uid, "FETCH", str(uid), "(UID FLAGS INTERNALDATE BODY.PEEK[])")
                got = parse_fetch(_check(typ, data, "FETCH"))
                current[2].append(uid)
                if got is not None:  # None: expunged meanwhile
                    await imp.add(imp.mailbox, fmt.DiskMessage(got[3], got[1], got[2]))
                commit_state(len(current[2]) - len(imp.inflight))
            await imp.drain(0)
            commit_state(len(current[2]))
            current = None
    except BaseException as exc:
        # Ctrl-C, a lost connection, a refused command: the queued appends
        # commit; the state says so, then stop.
        tasks = [t for t, _ in imp.inflight]
        await asyncio.gather(*tasks, return_exceptions=True)
        ok = next((i for i, t in enumerate(tasks) if t.cancelled() or t.exception()),
                  len(tasks))
        imp.messages += ok
        if current is not None:
            commit_state(len(current[2]) - len(tasks) + ok)
        imp.report(done=True, interrupted=isinstance(exc, asyncio.CancelledError))
        raise
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(conn.logout)
    imp.report(done=True)
    if skipped_folders:
        raise Cannot("UIDVALIDITY changed on the remote side, not imported again: "
                     + ", ".join(skipped_folders))
    return TransferReport(imp.messages, imp.octets, len(imp.mailboxes), imp.skipped,
                          time.monotonic() - imp.t0)
