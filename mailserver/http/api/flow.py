"""``/api/v1/events``, ``/api/v1/stats`` and ``/api/v1/events/stream``: mail flow.

Read from the daemon's one flow hub (``analytics/``: this process's, or the
supervisor's with ``workers > 1``), so every worker answers the same.

* ``/events``: raw events (kept ``[analytics] raw_days``), oldest first,
  filtered by time range (``since``/``until``, POSIX seconds), ``kind``,
  ``direction``, ``domain``, ``result``, ``account``; cursor pagination like
  every list (the cursor is the last event's id: events only ever come after
  it, so a page is stable while events are added).
* ``/stats``: the rolling windows (1 min, 1 h, 24 h).
* ``/events/stream``: Server-Sent Events (HTML Living Standard §9.2): one
  ``event: <kind>`` with ``id: <event id>`` and ``data: <JSON>`` per event;
  filters ``kind``, ``domain``, ``account``; a reconnecting client's
  ``Last-Event-ID`` header (or ``?last_event_id=``) resumes after that id
  (from the hub's memory of the last ``hub.RING`` events).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from mailserver.analytics import Kind
from mailserver.analytics.remote import KEEPALIVE, FlowSource
from mailserver.errors import InvalidRequest, NotFound
from mailserver.http.api.base import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    decode_cursor,
    encode_cursor,
    json_response,
    query_choice,
    query_int,
    resource,
)

#: The flow source, on the API's application (None: analytics off).
FLOW = web.AppKey("flow", object)
KINDS = tuple(k.value for k in Kind)
DIRECTIONS = ("in", "out")
RESULTS = ("ok", "temp", "perm")

routes = web.RouteTableDef()


def _flow(request: web.Request) -> FlowSource:
    flow = request.config_dict.get(FLOW)
    if flow is None:
        raise NotFound("mail-flow analytics are off ([analytics] enabled = false)")
    return flow  # type: ignore[return-value]


def _time(request: web.Request, name: str, default: float) -> float:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest(f"{name} must be POSIX seconds, not {text!r}") from None
    if not 0 <= value <= 1e11:
        raise InvalidRequest(f"{name} must be POSIX seconds from 0 to 1e11")
    return value


def _filters(request: web.Request, names: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    if "kind" in names:
        out["kind"] = query_choice(request, "kind", KINDS) or ""
    if "direction" in names:
        out["direction"] = query_choice(request, "direction", DIRECTIONS) or ""
    if "result" in names:
        out["result"] = query_choice(request, "result", RESULTS) or ""
    for name in ("domain", "account"):
        if name in names:
            out[name] = request.query.get(name, "").strip().rstrip(".")
    return {k: v for k, v in out.items() if v}


@routes.get("/events")
async def list_events(request: web.Request) -> web.Response:
    """A page of events (see the module docstring)."""
    flow = _flow(request)
    limit = query_int(request, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    assert limit is not None
    since = _time(request, "since", 0.0)
    until = _time(request, "until", time.time() + 1)
    cursor = request.query.get("cursor")
    after = 0
    if cursor is not None:
        key = decode_cursor(cursor)
        if not key.isdigit():
            raise InvalidRequest("this cursor was not made by /events")
        after = int(key)
    filters = _filters(request, ("kind", "direction", "domain", "result", "account"))
    items = await flow.query(since, until, filters, after, limit + 1)
    shown, more = items[:limit], len(items) > limit
    headers: dict[str, str] = {}
    next_url = None
    if more:
        query = dict(request.query)
        query["limit"] = str(limit)
        query["cursor"] = encode_cursor(str(shown[-1]["id"]))
        next_url = str(request.rel_url.with_query(query))
        headers["Link"] = f'<{next_url}>; rel="next"'
    return json_response({"items": shown, "next": next_url}, headers=headers)


@routes.get("/stats")
async def get_stats(request: web.Request) -> web.Response:
    """The rolling windows (``FlowHub.stats``)."""
    stats: dict[str, Any] = await _flow(request).stats()
    return resource(stats)


@routes.get("/events/stream")
async def stream_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events until the client goes (see the module docstring)."""
    flow = _flow(request)
    filters = _filters(request, ("kind", "domain", "account"))
    last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or "0"
    if not last.isdigit() or len(last) > 20:
        raise InvalidRequest("Last-Event-ID must be an event id")
    events = await flow.stream(int(last), filters)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    await response.write(b": mail-flow events\nretry: 2000\n\n")
    it = aiter(events)
    # A pending anext is waited on, never cancelled by the keep-alive timer
    # (cancelling it would end the generator).
    pending: asyncio.Future[dict[str, Any]] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(it))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE)
            if not done:
                await response.write(b": keep-alive\n\n")
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                break
            finally:
                pending = None
            await response.write(b"id: %d\nevent: %s\ndata: %s\n\n" % (
                event["id"], event["kind"].encode(), json.dumps(event).encode()))
    finally:
        if pending is not None:
            pending.cancel()
        close = getattr(it, "aclose", None)
        if close is not None and pending is None:
            await close()
    return response
