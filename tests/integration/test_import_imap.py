"""``mailserver import imap`` from our own server (on loopback) into a
second instance: every folder with flags, keywords, INTERNALDATE and the
exact octets; run again, only what is new comes (no duplicates)."""

from __future__ import annotations

import imaplib
from pathlib import Path

from support.daemon import run_cli
from support.server import USERS, ServerThread, make_config, running_server
from support.wire import client_tls_context
from test_mailio import imap_view, imaplib_name

from mailserver.admin.imapimport import parse_list

ALICE = "alice@example.test"
FOLDERS = ["INBOX", "Work", "Work/Sub", "Café"]


def _append(srv: ServerThread, folder: str, n: int, start: int = 0) -> None:
    c = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=client_tls_context())
    try:
        c.login(ALICE, USERS[ALICE])
        if folder != "INBOX":
            c.create(imaplib_name(folder))
        for i in range(start, start + n):
            flags = ["(\\Seen)", "($Label1 \\Flagged)", "()"][i % 3]
            body = f"Subject: {folder} {i}\r\nFrom: a@b.test\r\n\r\nline {i}\r\n".encode()
            typ, _ = c.append(imaplib_name(folder), flags,
                              imaplib.Time2Internaldate(1738404672 + 86400 * i), body)
            assert typ == "OK"
    finally:
        c.logout()


def _import(tmp: Path, src: ServerThread, dst: ServerThread) -> str:
    result = run_cli("import", "imap", "--host", "127.0.0.1", "--port", str(src.port("imap")),
                     "--user", ALICE, "--password-stdin", ALICE,
                     "--data-dir", dst.config.data_dir, stdin=USERS[ALICE] + "\n", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_imap_copies_and_resumes(server: ServerThread, tmp_path: Path) -> None:
    for folder in FOLDERS:
        _append(server, folder, 3)
    with running_server(make_config(tmp_path / "second")) as second:
        out = _import(tmp_path, server, second)
        assert f"imported {3 * len(FOLDERS)} messages" in out
        for folder in FOLDERS:
            assert imap_view(second, ALICE, folder) == imap_view(server, ALICE, folder), folder
        # New mail at the source; the second run copies only that.
        _append(server, "INBOX", 2, start=3)
        assert "imported 2 messages" in _import(tmp_path, server, second)
        assert "imported 0 messages" in _import(tmp_path, server, second)
        for folder in FOLDERS:
            assert imap_view(second, ALICE, folder) == imap_view(server, ALICE, folder), folder


def test_parse_list_answers() -> None:
    lines: list[object] = [
        b'(\\HasNoChildren) "/" INBOX',
        b'(\\Noselect \\HasChildren) "." "Archive"',
        b'(\\HasNoChildren) "." "Archive.2024"',
        b'() "/" "Caf&AOk-"',
        (b'() "/" {7}', b'Odd "x'),
        b'(\\HasNoChildren) NIL "Flat"',
    ]
    assert parse_list(lines) == [("INBOX", "INBOX"), ("Archive.2024", "Archive/2024"),
                                 ("Caf&AOk-", "Café"), ('Odd "x', 'Odd "x'),
                                 ("Flat", "Flat")]
