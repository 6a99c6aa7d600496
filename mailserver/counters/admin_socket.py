"""``mailserver limits show|reset`` against a daemon with ``workers = 1``.

With workers the supervisor's counter service answers them on
``run_dir/counters.stream`` (``service.py``, requests ``S`` and ``X``).  A
single-process daemon keeps its counters in itself (``LocalCounters``), so it
serves those two requests, and only those, on the same socket: the command
line then works the same whatever the process model.  One line in, one line
out (``wire.py``); anything else is answered ``E unsupported`` and the
connection closed.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from mailserver.counters import LocalCounters, reset, show, wire

#: Longest request line read (a name is an address or a network).
_MAX_LINE = 4096


async def serve_admin(run_dir: Path, counters: LocalCounters) -> asyncio.AbstractServer:
    """Serve ``S``/``X`` over ``counters`` on ``run_dir/counters.stream`` (mode
    0600, in a 0700 directory).  Raises ``OSError``; close the server at stop."""
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = run_dir / wire.SERVICE_NAME
    path.unlink(missing_ok=True)  # left by a daemon that was killed

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readuntil(b"\n"))[:_MAX_LINE].decode("utf-8", "replace")
            if line[:2] == "S ":
                answer = json.dumps(show(counters, line[2:].strip())).encode() + b"\n"
            elif line[:2] == "X ":
                answer = b"%d\n" % reset(counters, line[2:].strip())
            else:
                answer = b"E unsupported\n"
            writer.write(answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path), limit=_MAX_LINE)
    os.chmod(path, 0o600)
    return server
