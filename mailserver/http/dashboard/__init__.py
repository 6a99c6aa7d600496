"""The dashboard at ``/`` (issue 14 §5): static files, no build step.

``static/index.html`` asks for an API token (kept in the tab's
sessionStorage), then reads ``/api/v1/stats`` and follows
``/api/v1/events/stream`` with ``fetch`` (an ``EventSource`` cannot send the
``Authorization`` header, and a token in a URL ends up in logs).  Charts by
uPlot 1.6.32 from the npm registry, shipped here with its MIT licence
(``static/uPlot.LICENSE``): no CDN, works offline.  The page and its assets
need no token; every figure on it does.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

#: The files served under ``/dashboard/`` with their media types.
ASSETS = {
    "index.html": "text/html",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE": "text/plain",
}
#: Our own pages: nothing from elsewhere (scripts, styles, connections).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'")


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


async def _asset(name: str) -> web.Response:
    return web.Response(body=_read(name), content_type=ASSETS[name],
                        charset="utf-8" if ASSETS[name].startswith("text/") else None,
                        headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP,
                                 "X-Content-Type-Options": "nosniff"})


async def index(request: web.Request) -> web.Response:
    """``GET /``: the page."""
    return await _asset("index.html")


async def asset(request: web.Request) -> web.Response:
    """``GET /dashboard/{name}``: one of ``ASSETS`` (404 for anything else)."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return await _asset(name)


def add_routes(app: web.Application) -> None:
    """``/`` and ``/dashboard/{name}`` on the http listener's application."""
    app.router.add_get("/", index)
    app.router.add_get("/dashboard/{name}", asset)
