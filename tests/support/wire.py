"""A raw TCP client for tests that check the wire itself, byte for byte.

SMTP (RFC 5321 §2.3.8) and IMAP (RFC 3501 §2.2) are both line-based with
CRLF: the protocol-specific clients in the tests add reading a whole reply
or a tagged response on top of ``readline``.  Every read is bounded by the
socket timeout, so a server that hangs fails the test instead of stalling it.
"""

from __future__ import annotations

import socket


class LineConn:
    """A connection to ``127.0.0.1:port``, read a line at a time."""

    def __init__(self, port: int, timeout: float = 15) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def readline(self, limit: int = -1) -> bytes:
        """One line with its CRLF; b"" at EOF."""
        return self.file.readline(limit)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()
