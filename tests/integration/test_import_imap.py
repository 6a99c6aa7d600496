"""``mailserver import imap`` from our own server (on loopback) into a
second instance: every folder with flags, keywords, INTERNALDATE and the
exact octets; run again, only what is new comes (no duplicates)."""

from __future__ import annotations

import imaplib
import select
import socket
import threading
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


def _import(tmp: Path, port: int, dst: ServerThread, ok: bool = True) -> str:
    result = run_cli("import", "imap", "--host", "127.0.0.1", "--port", str(port),
                     "--user", ALICE, "--password-stdin", ALICE,
                     "--data-dir", dst.config.data_dir, stdin=USERS[ALICE] + "\n", cwd=tmp)
    assert (result.returncode == 0) is ok, result.stderr
    return result.stdout


class CuttingProxy:
    """One TCP connection to ``port``, passed through until the client sends
    its ``cut_at``-th ``UID FETCH``: then both sides are dropped (the line
    dies in the middle of an import)."""

    def __init__(self, port: int, cut_at: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target, self.cut_at = port, cut_at
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.target))
        fetches = 0
        with client, server, self.listener:
            socks = [client, server]
            while True:
                ready, _, _ = select.select(socks, [], [], 30)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        fetches += data.count(b"UID FETCH")
                        if fetches >= self.cut_at:
                            return
                        server.sendall(data)
                    else:
                        client.sendall(data)


def test_import_imap_copies_and_resumes(server: ServerThread, tmp_path: Path) -> None:
    for folder in FOLDERS:
        _append(server, folder, 3)
    with running_server(make_config(tmp_path / "second")) as second:
        out = _import(tmp_path, server.port("imap"), second)
        assert f"imported {3 * len(FOLDERS)} messages" in out
        for folder in FOLDERS:
            assert imap_view(second, ALICE, folder) == imap_view(server, ALICE, folder), folder
        # New mail at the source; the second run copies only that.
        _append(server, "INBOX", 2, start=3)
        assert "imported 2 messages" in _import(tmp_path, server.port("imap"), second)
        assert "imported 0 messages" in _import(tmp_path, server.port("imap"), second)
        for folder in FOLDERS:
            assert imap_view(second, ALICE, folder) == imap_view(server, ALICE, folder), folder


def test_import_imap_resumes_after_a_cut(server: ServerThread, tmp_path: Path) -> None:
    _append(server, "INBOX", 4)
    _append(server, "Work", 4)
    with running_server(make_config(tmp_path / "second")) as second:
        proxy = CuttingProxy(server.port("imap"), cut_at=6)  # in Work, after 5 messages
        _import(tmp_path, proxy.port, second, ok=False)
        proxy.thread.join(30)
        assert len(imap_view(second, ALICE, "INBOX")) == 4
        assert len(imap_view(second, ALICE, "Work")) == 1
        assert "imported 3 messages" in _import(tmp_path, server.port("imap"), second)
        for folder in ("INBOX", "Work"):
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
