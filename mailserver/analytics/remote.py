"""The flow hub seen from a process: in it (``LocalFlow``) or in the supervisor
(``RemoteFlow`` over the counter service's socket, ``counters/wire.py``).

``BatchSink`` is a worker's ``analytics.emit`` sink with ``workers > 1``:
events are buffered and written as one ``E`` line at the end of the loop
iteration (``loop.call_soon``), so a burst of events costs one write.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

from mailserver.analytics import FlowEvent
from mailserver.analytics.hub import FlowHub
from mailserver.counters import wire

#: Events sent in one ``E`` line at most (a line stays well under ``wire.MAX_EVENT_LINE``).
BATCH = 200
#: Seconds a query to the supervisor may take.
QUERY_TIMEOUT = 10.0
#: Seconds between two comment lines of an idle SSE stream (keeps proxies open).
KEEPALIVE = 15.0


class FlowSource(Protocol):
    """What the API reads (the same answers in every worker)."""

    async def stats(self) -> dict[str, Any]:
        """``FlowHub.stats``."""
        ...

    async def query(self, since: float, until: float, filters: dict[str, str], after: int,
                    limit: int) -> list[dict[str, Any]]:
        """``FlowHub.query``."""
        ...

    async def stream(self, after: int, filters: dict[str, str]) -> AsyncIterator[
            dict[str, Any]]:
        """Events with an id above ``after`` matching ``filters``, then each new one,
        until the consumer stops (awaited once to open, then iterated)."""
        ...


class LocalFlow:
    """``FlowSource`` over this process's hub."""

    def __init__(self, hub: FlowHub) -> None:
        self.hub = hub

    async def stats(self) -> dict[str, Any]:
        """``FlowSource.stats``."""
        return self.hub.stats()

    async def query(self, since: float, until: float, filters: dict[str, str], after: int,
                    limit: int) -> list[dict[str, Any]]:
        """``FlowSource.query`` (reads files: off the loop would race the flusher,
        and a page is small)."""
        return self.hub.query(since, until, filters, after, limit)

    async def stream(self, after: int, filters: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """``FlowSource.stream``."""
        return _follow(self.hub, after, filters)


async def _follow(hub: FlowHub, after: int, filters: dict[str, str]) -> AsyncIterator[
        dict[str, Any]]:
    while True:
        batch = hub.recent(after, filters)
        waiter = hub.waiter()  # no await since recent(): nothing is missed
        for obj in batch:
            after = obj["id"]
            yield obj
        if not batch:
            await waiter.wait()


def follow(hub: FlowHub, after: int, filters: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
    """``FlowSource.stream`` over ``hub`` (the service's ``W`` request too)."""
    return _follow(hub, after, filters)


class RemoteFlow:
    """``FlowSource`` in the supervisor: one unix connection per request."""

    def __init__(self, run_dir: Path) -> None:
        self.path = str(run_dir / wire.SERVICE_NAME)

    async def _ask(self, request: dict[str, Any]) -> Any:
        reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 26)
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                writer.write(wire.flow_query(request))
                line = await reader.readline()
        finally:
            writer.close()
        if not line:
            raise ConnectionError("the counter service closed the connection")
        return json.loads(line)

    async def stats(self) -> dict[str, Any]:
        """``FlowSource.stats``.  Raises ``OSError``."""
        result: dict[str, Any] = await self._ask({"op": "stats"})
        return result

    async def query(self, since: float, until: float, filters: dict[str, str], after: int,
                    limit: int) -> list[dict[str, Any]]:
        """``FlowSource.query``.  Raises ``OSError``."""
        result: list[dict[str, Any]] = await self._ask(
            {"op": "events", "since": since, "until": until, "filters": filters,
             "after": after, "limit": limit})
        return result

    async def stream(self, after: int, filters: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """``FlowSource.stream``: a connection that the service keeps writing to."""
        reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 20)
        writer.write(wire.flow_watch({"after": after, "filters": filters}))
        return _lines(reader, writer)


async def _lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> AsyncIterator[
        dict[str, Any]]:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            yield json.loads(line)
    finally:
        writer.close()


class BatchSink:
    """A worker's ``analytics.emit`` sink: buffer, then one write per loop iteration
    through ``write`` (the counter link's transport write; events are dropped
    when it is gone: analytics never hold mail back)."""

    def __init__(self, write: Callable[[bytes], bool]) -> None:
        self._write = write
        self._buf: list[FlowEvent] = []
        self._loop = asyncio.get_running_loop()
        self._scheduled = False

    def __call__(self, event: FlowEvent) -> None:
        """Buffer ``event``; a flush is scheduled on the first of a batch."""
        self._buf.append(event)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is buffered (``E`` lines of at most ``BATCH`` events)."""
        self._scheduled = False
        buf, self._buf = self._buf, []
        for i in range(0, len(buf), BATCH):
            self._write(wire.flow_events([e.to_json() for e in buf[i:i + BATCH]]))
