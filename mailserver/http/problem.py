"""Errors as "problem details" (RFC 9457): ``application/problem+json``.

RFC 9457 §4.2.1: with no more specific type, ``type`` is "about:blank" and
``title`` the status code's reason phrase (aiohttp's own 404 and 405).  Our
errors (``mailserver.errors``) have a type each, ``/api/v1/problems/<slug>``
(``errors.http_problem``: the one mapping), with ``detail`` saying what
exactly went wrong, except for a 500, whose cause goes to the log only.
Every error the HTTP front end answers goes through ``problem_middleware``,
so clients can parse one shape.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import structlog
from aiohttp import web

from mailserver.errors import (
    INTERNAL_ERROR,
    ApiError,
    HttpProblem,
    MailserverError,
    StoreNotFound,
    http_problem,
)

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


def typed_problem(kind: HttpProblem, detail: str | None = None, *,
                  headers: dict[str, str] | None = None) -> web.Response:
    """A problem response of one of our problem types (``errors.HttpProblem``)."""
    body: dict[str, object] = {"type": kind.type, "title": kind.title, "status": kind.status}
    if detail:
        body["detail"] = detail
    return web.Response(status=kind.status, body=json.dumps(body).encode(),
                        content_type=PROBLEM_JSON, headers=headers)


def error_response(exc: MailserverError) -> web.Response:
    """The problem response for one of our errors (``errors.http_problem``)."""
    kind = http_problem(exc)
    if kind is INTERNAL_ERROR or isinstance(exc, StoreNotFound):
        return typed_problem(kind)  # nothing of our insides to the client
    headers = exc.headers if isinstance(exc, ApiError) else None
    text = getattr(exc, "text", None)
    return typed_problem(kind, text if isinstance(text, str) else str(exc), headers=headers)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn our errors and aiohttp's HTTP errors (404, 405: ``Allow`` kept,
    RFC 9110 §15.5.6) into problem responses; anything else that escapes a
    handler is a 500 (logged with its traceback)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        detail = f"{request.method} {request.path}: {HTTPStatus(exc.status).phrase.lower()}"
        return problem(exc.status, detail, headers=headers)
    except MailserverError as exc:
        if http_problem(exc) is INTERNAL_ERROR:
            log.exception("http_request_failed", method=request.method, path=request.path)
        return error_response(exc)
    except Exception:  # a bug: logged with its traceback, never shown to the client
        log.exception("http_request_failed", method=request.method, path=request.path)
        return typed_problem(INTERNAL_ERROR)
