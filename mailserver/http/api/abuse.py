"""``/api/v1/limits``: the abuse-limit counters of the running daemon, as
``mailserver limits show/reset`` (the same functions, ``admin/limits.py``,
behind the admin service)."""

from __future__ import annotations

from aiohttp import web

from mailserver.http.api import representations as rep
from mailserver.http.api.base import admin_of, audit, fields, json_response, page, read_object

routes = web.RouteTableDef()


@routes.get("/limits")
async def list_limits(request: web.Request) -> web.Response:
    """Live counters by window, kind and name; ``name`` keeps one IP,
    network or account's."""
    items = await admin_of(request).limits(request.query.get("name", ""))
    return page(request, items, lambda c: f"{c.window} {c.kind} {c.name}", rep.limit_counter)


@routes.post("/limits/reset")
async def reset_limits(request: web.Request) -> web.Response:
    """``{"name"}``: forget that IP, network or account's counters in every
    worker (it may connect and send again at once); returns how many."""
    body = fields(await read_object(request), {"name": str})
    dropped = await admin_of(request).reset_limits(body["name"])
    result = {"name": body["name"], "reset": dropped}
    audit(request, "limits.reset", body["name"], None, result)
    return json_response(result)
