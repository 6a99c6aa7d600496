"""Small shared types of the IMAP server: connection states, tagged replies, and
what a session needs from its connection.  Kept apart from ``session.py`` so
the command modules can import them without an import cycle."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol


class State(enum.Enum):
    """Connection states of RFC 3501 §3."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class Conn(Protocol):
    """What a session needs from its connection (``connection.Connection``)."""

    tls: bool  # TLS is active (implicit or after STARTTLS)
    loopback: bool  # the peer is on a loopback address
    peer: str  # the peer's IP address (failed-login throttle, logs)
    interruptible: bool  # between commands (or in IDLE): shutdown may say BYE now

    def write(self, data: bytes) -> None: ...
    async def flush(self) -> None: ...
    async def read_line(self) -> bytes | None: ...  # None at EOF
    def tls_available(self) -> bool: ...  # STARTTLS may be offered
    def ssl_object(self) -> Any: ...  # the TLS object (channel binding), None without TLS
    async def start_tls(self) -> None: ...  # after the tagged OK of STARTTLS
    @property
    def compressing(self) -> bool: ...  # COMPRESS=DEFLATE is active (RFC 4978)
    async def start_compress(self) -> None: ...  # after the tagged OK of COMPRESS
    def enable_utf8(self) -> None: ...  # command text is UTF-8 from now on (RFC 6855 §3)


@dataclass(frozen=True, slots=True)
class TaggedOk:
    """The text (and optional RFC 5530 / RFC 3501 §7.1 response code) of a tagged OK."""

    text: str
    code: str | None = None


class CloseConnection(Exception):
    """Raised by a handler when the session must end now (autologout in IDLE,
    client gone).  Whatever was written before it is still sent; no tagged
    reply follows (RFC 3501 §7.1.5: BYE then close)."""
