"""The versioned admin API, ``/api/v1``: a sub-application of the http listener.

Resources (``directory.py``: domains, accounts, aliases; ``outbound.py``:
the outbound queue, DKIM keys) call the admin service the command line
calls (``App.admin()`` in the daemon: the running queue is its
``QueueControl``), so an action gives the same result from either.  The
conventions (bearer tokens, pagination, ETag/If-Match, audit) are in
``base.py``; errors are problem details with a stable ``type`` per error
(``mailserver.errors.http_problem``, answered by ``http.problem``); the
OpenAPI 3.1 document is ``openapi.py``, served at ``/api/v1/openapi.json``
with the problem types at ``/api/v1/problems/<slug>``.

Compatibility (README): v1 only grows.  Removing or changing the meaning of
anything goes to ``/api/v2``; a deprecated field or operation answers with
``Deprecation`` (RFC 9745) and ``Sunset`` (RFC 8594) headers first.
"""

from __future__ import annotations

from aiohttp import web

from mailserver import errors
from mailserver.admin import AdminService
from mailserver.errors import InvalidRequest, NotFound
from mailserver.http.api import abuse, directory, flow, openapi, outbound
from mailserver.http.api.base import ADMIN, Handler, auth_middleware, json_response

PREFIX = "/api/v1"


def problem_types() -> dict[str, tuple[errors.HttpProblem, str]]:
    """Every problem type the API answers with, by slug: (type, what it means)."""
    found: dict[str, tuple[errors.HttpProblem, str]] = {
        errors.INTERNAL_ERROR.slug: (errors.INTERNAL_ERROR,
                                     "Our fault: the cause is in the server's log."),
    }
    todo: list[type[BaseException]] = [errors.MailserverError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        kind = cls.__dict__.get("http")
        if isinstance(kind, errors.HttpProblem):
            text = " ".join((cls.__doc__ or kind.title).split())
            found.setdefault(kind.slug, (kind, text))
    return found


#: The query parameters each operation takes, from the document's table: a
#: misspelt filter (``?domian=``) is refused, not silently ignored.
_QUERY_NAMES = {(op.method.upper(), PREFIX + op.path): openapi.query_names(op)
                for op in openapi.OPERATIONS}


@web.middleware
async def query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 for a query parameter the operation does not take (or one given twice)."""
    resource = request.match_info.route.resource
    if request.query and resource is not None and request.match_info.http_exception is None:
        method = "GET" if request.method == "HEAD" else request.method
        allowed = _QUERY_NAMES.get((method, resource.canonical), frozenset())
        unknown = sorted(set(request.query) - allowed)
        if unknown:
            raise InvalidRequest(f"unknown query parameter(s): {', '.join(unknown)}; "
                                 f"allowed: {', '.join(sorted(allowed)) or 'none'}")
        repeated = sorted(k for k in set(request.query) if len(request.query.getall(k)) > 1)
        if repeated:
            raise InvalidRequest(f"query parameter(s) given more than once: "
                                 f"{', '.join(repeated)}")
    return await handler(request)


async def _openapi(request: web.Request) -> web.Response:
    return json_response(openapi.document())


async def _problem_type(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    kind = problem_types().get(slug)
    if kind is None:
        raise NotFound(f"no problem type {slug!r}")
    return json_response({"type": kind[0].type, "title": kind[0].title,
                          "status": kind[0].status, "description": kind[1]})


def application(admin: AdminService, flows: object | None = None) -> web.Application:
    """The ``/api/v1`` sub-application over ``admin`` (add it with
    ``app.add_subapp(PREFIX, ...)``); ``flows``: the mail-flow source
    (``analytics.remote.FlowSource``; None: those routes answer 404)."""
    app = web.Application(middlewares=[auth_middleware, query_middleware])
    app[ADMIN] = admin
    app[flow.FLOW] = flows
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/problems/{slug}", _problem_type)
    app.router.add_routes(directory.routes)
    app.router.add_routes(outbound.routes)
    app.router.add_routes(flow.routes)
    app.router.add_routes(abuse.routes)
    return app
