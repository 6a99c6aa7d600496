"""COMPRESS=DEFLATE (RFC 4978) over raw sockets, plain and under TLS.

imapclient has no COMPRESS, so the client here is ``RawImap`` with its zlib layer: after
the tagged OK both directions are raw deflate (``wbits=-15``), and the server
must flush (``Z_SYNC_FLUSH``) so each response batch decodes on arrival (§4).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.server import ServerThread, corpus_messages
from support.wire import RawImap


def compress(c: RawImap) -> list[bytes]:
    """COMPRESS DEFLATE, then deflate both ways (RFC 4978 §3, §4)."""
    lines = c.cmd("Z", "COMPRESS DEFLATE")
    assert lines[-1].startswith(b"Z OK"), lines
    assert not c.buf  # nothing may follow the OK uncompressed
    c.start_compression()
    return lines


@pytest.fixture
def zc(server: ServerThread) -> Iterator[RawImap]:
    c = RawImap(server.port("imap"))
    try:
        yield c
    finally:
        c.close()


def test_advertised_after_login_only(zc: RawImap) -> None:
    assert b"COMPRESS=DEFLATE" not in zc.cmd("a", "CAPABILITY")[0]
    # Not valid before authentication (RFC 4978 §3: command-auth).
    assert zc.cmd("b", "COMPRESS DEFLATE")[-1].startswith(b"b BAD")
    zc.login()
    assert b"COMPRESS=DEFLATE" in zc.cmd("c", "CAPABILITY")[0].split()


def test_session_runs_compressed_both_ways(zc: RawImap) -> None:
    zc.login()
    compress(zc)
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


def test_big_fetch_is_smaller_on_the_wire(zc: RawImap) -> None:
    """Text compresses: a repetitive 1 MiB message crosses in far fewer octets."""
    zc.login()
    body = b"".join(b"Line %06d of a very repetitive message body\r\n" % i
                    for i in range(25000))
    msg = b"Subject: big\r\n\r\n" + body
    compress(zc)
    zc.send(b"a APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
    assert zc.until_tagged("a")[-1].startswith(b"a OK")
    zc.cmd("b", "SELECT INBOX")
    before = zc.wire_in
    lines = zc.cmd("c", "FETCH 1 BODY.PEEK[]")
    assert msg in lines[0]
    assert zc.wire_in - before < len(msg) // 5


def test_unknown_mechanism_is_no(zc: RawImap) -> None:
    zc.login()
    assert zc.cmd("a", "COMPRESS LZW")[-1].startswith(b"a NO")
    assert zc.cmd("b", "COMPRESS")[-1].startswith(b"b BAD")
    compress(zc)  # still possible afterwards
    assert zc.cmd("c", "NOOP")[-1].startswith(b"c OK")


def test_garbage_after_compress_ends_with_bye(zc: RawImap) -> None:
    zc.login()
    compress(zc)
    zc.sock.sendall(b"\xff\xff\xff\xff not deflate at all\r\n")
    rest = []
    while line := zc.readline():
        rest.append(line)
    assert rest and rest[-1].startswith(b"* BYE")


def test_inflate_bomb_is_bounded(zc: RawImap) -> None:
    """Tiny compressed input that inflates to 20 MiB without a line end: the
    receiver's line limit answers it, the connection survives."""
    zc.login()
    compress(zc)
    zc.send(b"a " + b"x" * (20 * 1024 * 1024) + b"\r\n")
    line = zc.readline()
    assert line.startswith(b"a BAD") or line.startswith(b"* BAD"), line
    assert zc.cmd("b", "NOOP")[-1].startswith(b"b OK")


def test_compress_over_tls(server: ServerThread) -> None:
    """Compression inside TLS (RFC 4978 §6): implicit TLS, then COMPRESS."""
    c = RawImap(server.port("imaps"), tls=True)
    try:
        c.login()
        compress(c)
        assert c.cmd("a", "LIST \"\" \"*\"")[-1].startswith(b"a OK")
        assert c.cmd("b", "SELECT INBOX")[-1].startswith(b"b OK [READ-WRITE]")
    finally:
        c.close()


def test_compress_after_starttls(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    try:
        assert c.cmd("s", "STARTTLS")[-1].startswith(b"s OK")
        c.start_tls()
        c.login()
        compress(c)
        assert c.cmd("a", "NOOP")[-1].startswith(b"a OK")
    finally:
        c.close()


def test_idle_compressed(server: ServerThread, zc: RawImap) -> None:
    """Unsolicited responses during IDLE are flushed through the compressor."""
    zc.login()
    compress(zc)
    zc.cmd("a", "SELECT INBOX")
    zc.send(b"b IDLE\r\n")
    assert zc.readline().startswith(b"+ ")
    other = RawImap(server.port("imap"))
    try:
        other.login()
        assert other.cmd("x", b"APPEND INBOX {13+}\r\nSubject: x\r\n")[-1].startswith(b"x OK")
    finally:
        other.close()
    assert zc.readline() == b"* 1 EXISTS\r\n"
    zc.send(b"DONE\r\n")
    assert zc.until_tagged("b")[-1].startswith(b"b OK")


def test_shutdown_bye_is_compressed(server: ServerThread, zc: RawImap) -> None:
    zc.login()
    compress(zc)
    assert zc.cmd("a", "NOOP")[-1].startswith(b"a OK")
    server.run(server.app.stop(grace=2.0))
    lines = []
    while line := zc.readline():
        lines.append(line)
    assert lines and lines[0].startswith(b"* BYE")
