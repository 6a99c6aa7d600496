"""The registry of listener kinds: a listener's ``protocol`` -> its start function.

``app.py`` starts every configured listener through ``start_listener``;
``config.py`` validates the protocol names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mailserver.config import Listener
from mailserver.http import server as http_server
from mailserver.imap import server as imap_server
from mailserver.services import ListenerHandle, Services
from mailserver.smtp import server as smtp_server

#: Kind name -> ``async start(listener, services) -> ListenerHandle``.
KINDS: dict[str, Callable[[Listener, Services], Awaitable[ListenerHandle]]] = {
    "smtp": smtp_server.start,  # RFC 5321, the MX role
    "submission": smtp_server.start,  # RFC 6409 / RFC 8314
    "imap": imap_server.start,  # RFC 3501 / RFC 9051
    "http": http_server.start,  # RFC 9110 (metrics; aiohttp, see the README)
}


async def start_listener(listener: Listener, services: Services) -> ListenerHandle:
    """Start ``listener`` by its kind.  Raises ``OSError`` (bind), ``ValueError``
    (a protocol with no kind: config validation makes that unreachable)."""
    try:
        start = KINDS[listener.protocol]
    except KeyError:
        raise ValueError(f"unknown protocol {listener.protocol!r}") from None
    return await start(listener, services)
