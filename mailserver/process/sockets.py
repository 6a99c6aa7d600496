"""Listening sockets of a multi-process daemon: one SO_REUSEPORT group per listener.

Per listener, the supervisor binds N sockets with ``SO_REUSEPORT`` on the same
address and port (socket(7)); worker ``i`` serves socket ``i`` of every
listener.  The kernel spreads new connections over the sockets of such a group
by a hash of the 4-tuple, so each worker gets its share (only sockets of the
same effective UID may join a group: no other user's process can bind the port
and take a share).  One shared socket, inherited by every worker, balanced
badly: whichever loop woke first accepted the whole backlog.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket

from mailserver.config import Config, Listener

#: listen(2) backlog of each worker's sockets.
BACKLOG = 1024


def bind_listener(listener: Listener, port: int | None = None) -> socket.socket:
    """A listening TCP socket for ``listener`` (on ``port`` if given), as asyncio
    would make it (SO_REUSEADDR; IPv6 sockets IPv6-only), plus SO_REUSEPORT so
    that several such sockets share the port.  Raises ``OSError``."""
    family = socket.AF_INET6 if ipaddress.ip_address(listener.address).version == 6 \
        else socket.AF_INET
    sock = socket.create_server((listener.address, listener.port if port is None else port),
                                family=family, backlog=BACKLOG, reuse_port=True)
    sock.set_inheritable(True)
    return sock


def bind_group(listener: Listener, count: int) -> list[socket.socket]:
    """``count`` SO_REUSEPORT sockets on ``listener``'s address, all on one port:
    with port 0 the first gets an ephemeral port and the others join it.
    Raises ``OSError`` (and closes what it bound)."""
    group: list[socket.socket] = []
    try:
        group.append(bind_listener(listener))
        port = int(group[0].getsockname()[1])
        for _ in range(count - 1):
            group.append(bind_listener(listener, port))
    except OSError:
        close_groups({"": group})
        raise
    return group


def close_groups(groups: dict[str, list[socket.socket]]) -> None:
    """Close every socket of every group."""
    for group in groups.values():
        for sock in group:
            sock.close()


def bound_config(config: Config, groups: dict[str, list[socket.socket]]) -> Config:
    """``config`` with each listener's port replaced by its group's real port."""
    listeners = tuple(
        dataclasses.replace(lst, port=int(groups[lst.name][0].getsockname()[1]))
        for lst in config.listeners
    )
    return dataclasses.replace(config, listeners=listeners)
