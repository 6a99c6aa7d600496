"""Raw SMTP and IMAP clients for tests that check the wire itself, byte for byte.

smtplib and imaplib hide or rewrite what those tests look at (multi-line
replies, literals, tags, continuation requests), so these clients send the
bytes they are given and hand back the lines the server sent:

* ``LineConn``: a TCP (optionally TLS) connection to ``127.0.0.1:port`` read a
  line at a time, with an optional DEFLATE layer (RFC 4978) both ways.
* ``RawSmtp``: one whole reply at a time (RFC 5321 §4.2: the last line has a
  space after the code, the others a hyphen).
* ``RawImap``: response lines with literals inlined (RFC 3501 §4.3), read up to
  a command's tagged response (§2.2.2).

SMTP (RFC 5321 §2.3.8) and IMAP (RFC 3501 §2.2) are both line-based with CRLF.
Every read is bounded by the socket timeout, so a server that hangs fails the
test (``TimeoutError``) instead of stalling it.
"""

from __future__ import annotations

import socket
import ssl
import zlib
from types import TracebackType

ALICE = ("alice@example.test", "alice-secret")


def client_tls_context() -> ssl.SSLContext:
    """A client context that accepts the test server's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class LineConn:
    """A connection to ``127.0.0.1:port``, read a line at a time.

    ``tls``: wrap the socket at once (implicit TLS, RFC 8314).  ``rcvbuf``: a
    small receive buffer (``SO_RCVBUF``, octets), for clients that stop reading.
    """

    def __init__(self, port: int, timeout: float = 30, *, tls: bool = False,
                 rcvbuf: int | None = None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        try:
            sock.connect(("127.0.0.1", port))
            if tls:
                sock = client_tls_context().wrap_socket(sock)
        except BaseException:
            sock.close()
            raise
        self.sock: socket.socket = sock
        self.buf = bytearray()  # received (and inflated) octets not read yet
        self._scanned = 0  # no LF in buf[:_scanned]
        self.deflate: zlib._Compress | None = None
        self.inflate: zlib._Decompress | None = None
        self.wire_in = 0  # octets received on the socket after compression began

    # -- transport

    def send(self, data: bytes) -> None:
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def start_tls(self) -> None:
        """Begin TLS on this connection, after STARTTLS's positive reply."""
        assert not self.buf, f"plaintext after the STARTTLS reply: {bytes(self.buf)!r}"
        self.sock = client_tls_context().wrap_socket(self.sock)

    def start_compression(self) -> None:
        """DEFLATE both ways from now on (RFC 4978 §4: raw deflate, no zlib header)."""
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)

    def _more(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        if self.inflate is not None:
            self.wire_in += len(chunk)
            chunk = self.inflate.decompress(chunk)
        self.buf += chunk
        return True

    def read_exact(self, n: int) -> bytes:
        """``n`` octets; ``EOFError`` when the connection ends first."""
        while len(self.buf) < n:
            if not self._more():
                raise EOFError(f"closed after {len(self.buf)} of {n} octets")
        return self._take(n)

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self._scanned = 0
        return out

    def readline(self, limit: int = -1) -> bytes:
        """One line with its CRLF; at most ``limit`` octets when given; what is
        left (maybe ``b""``) at EOF."""
        while True:
            i = self.buf.find(b"\n", self._scanned)
            if i >= 0:
                n = i + 1
                break
            self._scanned = len(self.buf)
            if 0 <= limit <= len(self.buf) or not self._more():
                n = len(self.buf)
                break
        return self._take(n if limit < 0 else min(n, limit))

    def read_to_eof(self) -> bytes:
        """Everything until the server closes the connection."""
        while self._more():
            pass
        return self._take(len(self.buf))

    def eof(self) -> bool:
        """True when the server has closed with nothing more to read."""
        return not self.buf and not self._more()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> LineConn:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class RawSmtp(LineConn):
    """A raw SMTP client: send lines, read whole (multi-line) replies.

    The greeting is a reply like any other: read it with ``reply()``.
    ``max_line``: the longest reply line read in one go (octets, CRLF included).
    """

    max_line = -1

    @classmethod
    def greeted(cls, port: int, timeout: float = 30) -> RawSmtp:
        """A connection whose 220 greeting (RFC 5321 §4.3.1) has been read."""
        c = cls(port, timeout)
        greeting = c.reply()
        assert greeting and greeting[0].startswith(b"220 "), greeting
        return c

    def reply(self) -> list[bytes]:
        """One reply, all its lines without CRLF; the lines read so far (maybe
        none) when the server closes first."""
        lines: list[bytes] = []
        while True:
            line = self.readline(self.max_line)
            if not line:
                return lines
            assert line.endswith(b"\r\n"), f"no complete reply line: {line!r} after {lines!r}"
            lines.append(line[:-2])
            if line[3:4] != b"-":
                return lines

    def cmd(self, line: bytes | str) -> list[bytes]:
        """Send ``line`` + CRLF (a str as UTF-8); its reply."""
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()


class RawImap(LineConn):
    """A raw IMAP client returning response lines with literals inlined.

    The greeting is read on connecting (``greeting``).  Every line up to a
    tagged response must be untagged (``* ``), a continuation request (``+ ``)
    or the tagged response itself (RFC 3501 §2.2.2, §7).
    """

    def __init__(self, port: int, timeout: float = 30, *, tls: bool = False,
                 rcvbuf: int | None = None, max_line: int = -1) -> None:
        super().__init__(port, timeout, tls=tls, rcvbuf=rcvbuf)
        self.max_line = max_line
        self.greeting = self.readline()

    def readline(self, limit: int = -1) -> bytes:
        """One response line, literals inlined; ``b""`` at EOF.  ``limit``
        (default ``max_line``) bounds each line read, not the literals."""
        limit = self.max_line if limit < 0 else limit
        line = super().readline(limit)
        while line.endswith(b"}\r\n") and b"{" in line:
            size = int(line[line.rindex(b"{") + 1 : -3].rstrip(b"+"))
            line += self.read_exact(size) + super().readline(limit)
        return line

    def until_tagged(self, tag: str) -> list[bytes]:
        """Lines up to and including the tagged response for ``tag``."""
        tagged = tag.encode() + b" "
        out: list[bytes] = []
        while True:
            line = self.readline()
            assert line, f"connection closed before {tag} completed; got {out!r}"
            assert line.endswith(b"\r\n") and line.startswith((b"* ", b"+ ", tagged)), line
            out.append(line)
            if line.startswith(tagged):
                return out

    def cmd(self, tag: str, text: str | bytes) -> list[bytes]:
        """Send ``tag SP text CRLF``; the lines up to its tagged response."""
        data = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.until_tagged(tag)

    def ok(self, tag: str, text: str | bytes) -> list[bytes]:
        """``cmd`` that must answer OK."""
        out = self.cmd(tag, text)
        assert out[-1].startswith(tag.encode() + b" OK"), out
        return out

    def login(self, user: str = ALICE[0], password: str = ALICE[1]) -> None:
        self.ok("L", f'LOGIN "{user}" "{password}"')

    def read_all(self) -> list[bytes]:
        """Every line until the server closes the connection."""
        out = []
        while line := self.readline():
            out.append(line)
        return out
