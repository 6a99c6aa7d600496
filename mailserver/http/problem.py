"""Errors as "problem details" (RFC 9457): ``application/problem+json``.

RFC 9457 §4.2.1: with no more specific type, ``type`` is "about:blank" and
``title`` the status code's reason phrase.  Every error the HTTP front end
answers goes through ``problem_middleware``, so clients can parse one shape.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import structlog
from aiohttp import web

log = structlog.get_logger("mailserver.http")

#: RFC 9457 §3: the media type of a problem details object in JSON.
PROBLEM_JSON = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, detail: str | None = None, *,
            headers: dict[str, str] | None = None) -> web.Response:
    """A problem response of ``status`` (RFC 9457 §3.1 members: type, title,
    status, and ``detail`` when given)."""
    body: dict[str, object] = {"type": "about:blank", "title": HTTPStatus(status).phrase,
                               "status": status}
    if detail:
        body["detail"] = detail
    return web.Response(status=status, body=json.dumps(body).encode(),
                        content_type=PROBLEM_JSON, headers=headers)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's HTTP errors (404, 405: ``Allow`` kept, RFC 9110 §15.5.6)
    into problem responses; anything else that escapes a handler is a 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        detail = f"{request.method} {request.path}: {HTTPStatus(exc.status).phrase.lower()}"
        return problem(exc.status, detail, headers=headers)
    except Exception:  # a bug: logged with its traceback, never shown to the client
        log.exception("http_request_failed", method=request.method, path=request.path)
        return problem(500)
