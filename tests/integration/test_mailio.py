"""``mailserver import`` / ``export`` of mbox and Maildir against a running
server: round trips keep every message (after the CRLF rule) and flag, the
IMAP side sees the flags and INTERNALDATEs, and an interrupted import leaves
what it reported imported committed."""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from support.daemon import run_cli
from support.server import USERS, ServerThread, corpus_messages, make_config
from support.stores import open_store
from support.wire import client_tls_context

from mailserver.admin import mailio
from mailserver.admin.backup import verify
from mailserver.protocol.line_endings import to_crlf

ALICE = "alice@example.test"
BOB = "bob@example.test"
DAY0 = 1738404672  # 2025-02-01 10:11:12 UTC
ENVELOPE = re.compile(rb"(?m)^From \S+ ")
FLAGS = [b"", b"Status: RO\n", b"Status: RO\nX-Status: AF\n", b"X-Keywords: $Label1 Work\n"]


def cli(tmp: Path, *args: str | Path) -> str:
    result = run_cli(*args, cwd=tmp)
    assert result.returncode == 0, result.stderr
    return result.stdout


def imap_view(srv: ServerThread, user: str, mailbox: str) -> list[tuple[Any, ...]]:
    """``[(flags, INTERNALDATE, bytes)]`` of a mailbox over IMAP, by UID."""
    c = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=client_tls_context())
    try:
        c.login(user, USERS[user])
        typ, _ = c.select(imaplib_name(mailbox), readonly=True)
        assert typ == "OK", mailbox
        typ, data = c.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
        out = []
        for item in data:
            if isinstance(item, tuple):
                flags = frozenset(f.decode() for f in imaplib.ParseFlags(item[0])) - {"\\Recent"}
                date = imaplib.Internaldate2tuple(item[0])
                out.append((flags, date, item[1]))
        return out
    finally:
        c.logout()


def imaplib_name(name: str) -> str:
    from mailserver.protocol.imap import utf7

    return '"' + utf7.encode(name) + '"'


def make_mbox(path: Path, count: int) -> list[bytes]:
    """An mboxrd file of corpus messages (LF line ends), written without our
    code: From lines quoted, status headers at the end of the header."""
    texts = []
    with path.open("wb") as f:
        for i, msg in enumerate(corpus_messages()[:count]):
            data = msg.read_bytes().replace(b"\r\n", b"\n")
            if b"\r" in data or b"\n\n" not in data or data.startswith(b"From "):
                continue  # bare CRs and header-only messages: not for byte equality
            if not data.endswith(b"\n"):
                data += b"\n"
            head, body = data.split(b"\n\n", 1)
            data = head + b"\n" + FLAGS[len(texts) % len(FLAGS)] + b"\n" + body
            date = time.asctime(time.gmtime(DAY0 + 86400 * len(texts)))
            texts.append(data)
            f.write(f"From sender{i}@example.org {date}\n".encode())
            for line in data.splitlines(keepends=True):
                f.write(b">" + line if re.match(rb"^>*From ", line) else line)
            f.write(b"\n")
    return texts


def test_mbox_round_trip(server: ServerThread, tmp_path: Path) -> None:
    data_dir = server.config.data_dir
    texts = make_mbox(tmp_path / "in.mbox", 40)
    out = cli(tmp_path, "import", "mbox", tmp_path / "in.mbox", ALICE, "--mailbox", "Old/2025",
              "--data-dir", data_dir)
    assert f"imported {len(texts)} messages" in out
    seen = imap_view(server, ALICE, "Old/2025")
    assert len(seen) == len(texts)
    assert seen[0][0] == frozenset() and seen[1][0] == {"\\Seen"}
    assert seen[2][0] == {"\\Seen", "\\Answered", "\\Flagged"}
    assert seen[3][0] == {"$Label1", "Work"}
    assert seen[0][1][:3] == (2025, 2, 1)  # INTERNALDATE from the From line
    # Stored as APPEND stores it: CRLF line ends, status headers out.
    assert seen[0][2] == to_crlf(texts[0])
    assert b"Status:" not in seen[1][2]

    cli(tmp_path, "export", ALICE, "mbox", tmp_path / "out", "--data-dir", data_dir)
    # Byte for byte, but the envelope sender of the From lines (not kept).
    exported = (tmp_path / "out" / "Old.sbd" / "2025").read_bytes()
    original = (tmp_path / "in.mbox").read_bytes()
    assert ENVELOPE.sub(b"From - ", exported) == ENVELOPE.sub(b"From - ", original)
    assert (tmp_path / "out" / "INBOX").read_bytes() == b""  # every folder comes out


def make_maildir(root: Path) -> dict[str, list[tuple[bytes, str, int]]]:
    """A Dovecot-style Maildir: INBOX, ``.Caf&AOk-`` (Café) and ``.Work.Sub``."""
    folders = {"INBOX": "", "Café": ".Caf&AOk-", "Work/Sub": ".Work.Sub"}
    made: dict[str, list[tuple[bytes, str, int]]] = {}
    for i, (name, dirname) in enumerate(folders.items()):
        folder = root / dirname if dirname else root
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
        (folder / "dovecot-keywords").write_text("0 $Label1\n1 Work\n")
        made[name] = []
        for j, info in enumerate([":2,S", ":2,FRSab", "", ":2,DPT", ":2,b"]):
            data = f"Subject: {name} {j}\nFrom: a@b.test\n\nline\n\n".encode()
            sub = "new" if not info else "cur"
            path = folder / sub / f"{1700000000 + j}.M{j}P1.host{info}"
            path.write_bytes(data)
            date = 1700000000 + 1000 * j + i
            os.utime(path, (date, date))
            made[name].append((data, info, date))
    return made


def read_maildir(root: Path, name: str) -> list[tuple[bytes, frozenset[str], int]]:
    from mailserver.admin import mailformats as fmt

    folder = root / fmt.maildir_dir(name)
    keywords = fmt.read_keywords(folder)
    return [(p.read_bytes(), fmt.maildir_flags(p.name, keywords), int(p.stat().st_mtime))
            for p in fmt.maildir_files(folder)]


def test_maildir_round_trip(server: ServerThread, tmp_path: Path) -> None:
    data_dir = server.config.data_dir
    made = make_maildir(tmp_path / "md")
    cli(tmp_path, "import", "maildir", tmp_path / "md", BOB, "--data-dir", data_dir)
    inbox = imap_view(server, BOB, "INBOX")
    assert [v[0] for v in inbox] == [
        {"\\Seen"}, {"\\Flagged", "\\Answered", "\\Seen", "$Label1", "Work"}, set(),
        {"\\Draft", "$Forwarded", "\\Deleted"}, {"Work"}]
    assert imap_view(server, BOB, "Café")[1][2] == b"Subject: Caf\xc3\xa9 1\r\nFrom: a@b.test\r\n\r\nline\r\n\r\n"
    assert len(imap_view(server, BOB, "Work/Sub")) == 5

    cli(tmp_path, "export", BOB, "maildir", tmp_path / "out", "--data-dir", data_dir)
    for name in made:
        assert read_maildir(tmp_path / "out", name) == read_maildir(tmp_path / "md", name)
    assert (tmp_path / "out" / ".Caf&AOk-" / "cur").is_dir()


async def test_interrupted_import_keeps_what_it_reported(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with (tmp_path / "big.mbox").open("wb") as f:
        for i in range(400):
            f.write(f"From a@b Mon Feb  3 10:11:12 2025\nSubject: {i}\n\nbody {i}\n\n".encode())
    monkeypatch.setattr(mailio, "PROGRESS_EVERY", 0.0)
    config = make_config(tmp_path / "data")
    reports: list[mailio.Progress] = []
    async with open_store(tmp_path / "data", ALICE, domain="example.test") as store:
        task: asyncio.Task[Any] | None = None

        def progress(p: mailio.Progress) -> None:
            reports.append(p)
            if p.messages >= 50 and task is not None:
                task.cancel()  # what Ctrl-C does to asyncio.run's main task

        task = asyncio.ensure_future(mailio.import_mail(
            store, config, "mbox", tmp_path / "big.mbox", ALICE, progress=progress))
        with pytest.raises(asyncio.CancelledError):
            await task
        assert reports[-1].interrupted
        stored = store.get_mailbox(ALICE, "INBOX").messages
        assert 50 <= stored < 400
        assert stored == reports[-1].messages
    assert (await verify(tmp_path / "data")).ok


RSS_PROBE = ("import resource, sys\n"
             "from mailserver.cli import main\n"
             "rc = main(sys.argv[1:])\n"
             "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
             "sys.exit(rc)\n")


def import_rss(tmp: Path, mbox: Path, data_dir: Path) -> int:
    """Peak RSS (KiB) of ``mailserver import mbox`` in a process of its own."""
    import subprocess
    import sys

    from support.daemon import cli_env

    result = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, "import", "mbox", str(mbox), ALICE,
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, cwd=tmp, env=cli_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stderr.split("MAXRSS ")[1].split()[0])


def test_import_streams_in_bounded_memory(tmp_path: Path) -> None:
    """A 40 MiB mbox costs the importer far less than 40 MiB more than a tiny one."""
    line = b"x" * 76 + b"\n"
    with (tmp_path / "big.mbox").open("wb") as f:
        for i in range(400):  # 400 messages of 100 KiB, all distinct
            f.write(f"From a@b Mon Feb  3 10:11:12 2025\nSubject: {i}\n\n".encode())
            f.write(line * 1300 + f"{i}\n\n".encode())
    with (tmp_path / "small.mbox").open("wb") as f:
        f.write(b"From a@b Mon Feb  3 10:11:12 2025\nSubject: s\n\n" + line * 1300 + b"\n")

    async def make_store() -> None:
        async with open_store(tmp_path / "data", ALICE, domain="example.test"):
            pass

    asyncio.run(make_store())
    small = import_rss(tmp_path, tmp_path / "small.mbox", tmp_path / "data")
    big = import_rss(tmp_path, tmp_path / "big.mbox", tmp_path / "data")
    assert big - small < 24 * 1024, (small, big)
