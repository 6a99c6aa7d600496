"""COMPRESS=DEFLATE (RFC 4978) over raw sockets, plain and under TLS.

imapclient has no COMPRESS, so the client here is a socket plus zlib: after
the tagged OK both directions are raw deflate (``wbits=-15``), and the server
must flush (``Z_SYNC_FLUSH``) so each response batch decodes on arrival (§4).
"""

from __future__ import annotations

import socket
import zlib
from collections.abc import Iterator

import pytest
from conftest import USERS, ServerThread, client_tls_context, corpus_messages

ALICE = ("alice@example.test", USERS["alice@example.test"])


class ZImap:
    """A blocking IMAP client that can switch to DEFLATE both ways."""

    def __init__(self, port: int, *, tls: bool = False) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if tls:
            sock = client_tls_context().wrap_socket(sock)
        self.sock = sock
        self.buf = bytearray()
        self.deflate: zlib._Compress | None = None
        self.inflate: zlib._Decompress | None = None
        self.wire_in = 0  # octets received on the socket after compression began
        self.greeting = self.readline()

    # -- transport
    def send(self, data: bytes) -> None:
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _more(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        if self.inflate is not None:
            self.wire_in += len(chunk)
            chunk = self.inflate.decompress(chunk)
        self.buf += chunk
        return True

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise EOFError
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _raw_line(self) -> bytes:
        while b"\n" not in self.buf:
            if not self._more():
                out = bytes(self.buf)
                self.buf.clear()
                return out
        i = self.buf.index(b"\n") + 1
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out

    def readline(self) -> bytes:
        line = self._raw_line()
        while line.endswith(b"}\r\n") and b"{" in line:
            size = int(line[line.rindex(b"{") + 1 : -3].rstrip(b"+"))
            line += self._read_exact(size) + self._raw_line()
        return line

    def until_tagged(self, tag: str) -> list[bytes]:
        out = []
        while True:
            line = self.readline()
            assert line, f"connection closed before {tag} completed; got {out!r}"
            out.append(line)
            if line.startswith(tag.encode() + b" "):
                return out

    def cmd(self, tag: str, text: str | bytes) -> list[bytes]:
        data = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.until_tagged(tag)

    def login(self) -> None:
        assert self.cmd("L", f'LOGIN "{ALICE[0]}" "{ALICE[1]}"')[-1].startswith(b"L OK")

    def compress(self) -> list[bytes]:
        lines = self.cmd("Z", "COMPRESS DEFLATE")
        assert lines[-1].startswith(b"Z OK"), lines
        assert not self.buf  # nothing may follow the OK uncompressed
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        return lines

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def zc(server: ServerThread) -> Iterator[ZImap]:
    c = ZImap(server.port("imap"))
    try:
        yield c
    finally:
        c.close()


def test_advertised_after_login_only(zc: ZImap) -> None:
    assert b"COMPRESS=DEFLATE" not in zc.cmd("a", "CAPABILITY")[0]
    # Not valid before authentication (RFC 4978 §3: command-auth).
    assert zc.cmd("b", "COMPRESS DEFLATE")[-1].startswith(b"b BAD")
    zc.login()
    assert b"COMPRESS=DEFLATE" in zc.cmd("c", "CAPABILITY")[0].split()


def test_session_runs_compressed_both_ways(zc: ZImap) -> None:
    zc.login()
    zc.compress()
    assert zc.cmd("a", "NOOP")[-1] == b"a OK NOOP completed\r\n"
    caps = zc.cmd("b", "CAPABILITY")
    assert b"COMPRESS=DEFLATE" in caps[0]
    # A second COMPRESS is refused, compressed (§3).
    assert zc.cmd("c", "COMPRESS DEFLATE")[-1].startswith(b"c NO [COMPRESSIONACTIVE]")
    # A synchronizing literal: the "+" continuation comes compressed too.
    msg = (corpus_messages()[0]).read_bytes()
    zc.send(b"d APPEND INBOX {%d}\r\n" % len(msg))
    assert zc.readline().startswith(b"+ ")
    zc.send(msg + b"\r\n")
    assert zc.until_tagged("d")[-1].startswith(b"d OK [APPENDUID ")
    zc.cmd("e", "SELECT INBOX")
    lines = zc.cmd("f", "FETCH 1 BODY.PEEK[]")
    assert lines[0].startswith(b"* 1 FETCH (BODY[] {%d}\r\n" % len(msg))
    assert msg in lines[0]
    assert zc.cmd("g", "LOGOUT")[0].startswith(b"* BYE")


def test_big_fetch_is_smaller_on_the_wire(zc: ZImap) -> None:
    """Text compresses: a repetitive 1 MiB message crosses in far fewer octets."""
    zc.login()
    body = b"".join(b"Line %06d of a very repetitive message body\r\n" % i
                    for i in range(25000))
    msg = b"Subject: big\r\n\r\n" + body
    zc.compress()
    zc.send(b"a APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
    assert zc.until_tagged("a")[-1].startswith(b"a OK")
    zc.cmd("b", "SELECT INBOX")
    before = zc.wire_in
    lines = zc.cmd("c", "FETCH 1 BODY.PEEK[]")
    assert msg in lines[0]
    assert zc.wire_in - before < len(msg) // 5


def test_unknown_mechanism_is_no(zc: ZImap) -> None:
    zc.login()
    assert zc.cmd("a", "COMPRESS LZW")[-1].startswith(b"a NO")
    assert zc.cmd("b", "COMPRESS")[-1].startswith(b"b BAD")
    zc.compress()  # still possible afterwards
    assert zc.cmd("c", "NOOP")[-1].startswith(b"c OK")


def test_garbage_after_compress_ends_with_bye(zc: ZImap) -> None:
    zc.login()
    zc.compress()
    zc.sock.sendall(b"\xff\xff\xff\xff not deflate at all\r\n")
    rest = []
    while line := zc.readline():
        rest.append(line)
    assert rest and rest[-1].startswith(b"* BYE")


def test_inflate_bomb_is_bounded(zc: ZImap) -> None:
    """Tiny compressed input that inflates to 20 MiB without a line end: the
    receiver's line limit answers it, the connection survives."""
    zc.login()
    zc.compress()
    zc.send(b"a " + b"x" * (20 * 1024 * 1024) + b"\r\n")
    line = zc.readline()
    assert line.startswith(b"a BAD") or line.startswith(b"* BAD"), line
    assert zc.cmd("b", "NOOP")[-1].startswith(b"b OK")


def test_compress_over_tls(server: ServerThread) -> None:
    """Compression inside TLS (RFC 4978 §6): implicit TLS, then COMPRESS."""
    c = ZImap(server.port("imaps"), tls=True)
    try:
        c.login()
        c.compress()
        assert c.cmd("a", "LIST \"\" \"*\"")[-1].startswith(b"a OK")
        assert c.cmd("b", "SELECT INBOX")[-1].startswith(b"b OK [READ-WRITE]")
    finally:
        c.close()


def test_compress_after_starttls(server: ServerThread) -> None:
    c = ZImap(server.port("imap"))
    try:
        assert c.cmd("s", "STARTTLS")[-1].startswith(b"s OK")
        c.sock = client_tls_context().wrap_socket(c.sock)
        c.login()
        c.compress()
        assert c.cmd("a", "NOOP")[-1].startswith(b"a OK")
    finally:
        c.close()


def test_idle_compressed(server: ServerThread, zc: ZImap) -> None:
    """Unsolicited responses during IDLE are flushed through the compressor."""
    zc.login()
    zc.compress()
    zc.cmd("a", "SELECT INBOX")
    zc.send(b"b IDLE\r\n")
    assert zc.readline().startswith(b"+ ")
    other = ZImap(server.port("imap"))
    try:
        other.login()
        assert other.cmd("x", b"APPEND INBOX {13+}\r\nSubject: x\r\n")[-1].startswith(b"x OK")
    finally:
        other.close()
    assert zc.readline() == b"* 1 EXISTS\r\n"
    zc.send(b"DONE\r\n")
    assert zc.until_tagged("b")[-1].startswith(b"b OK")


def test_shutdown_bye_is_compressed(server: ServerThread, zc: ZImap) -> None:
    zc.login()
    zc.compress()
    assert zc.cmd("a", "NOOP")[-1].startswith(b"a OK")
    server.run(server.app.stop(grace=2.0))
    lines = []
    while line := zc.readline():
        lines.append(line)
    assert lines and lines[0].startswith(b"* BYE")
