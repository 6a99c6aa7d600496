"""The conventions every ``/api/v1`` resource follows, in one place.

* Bearer tokens (RFC 6750 §2.1): ``auth_middleware`` looks the token up
  (``AdminService.check_token``); none or an unknown one is 401 with
  ``WWW-Authenticate: Bearer`` (RFC 6750 §3), a read-only token on anything
  but GET/HEAD is 403 (``insufficient_scope``).  Routes in ``PUBLIC`` (the
  OpenAPI document, the problem type pages) need none.
* Cursor pagination (``page``): a list is sorted by a unique string key (a
  domain name, an address, a queue id); a page holds the items after the
  cursor's key, so a page is never shifted by items added or removed before
  it: nothing is seen twice, nothing that was there all along is skipped.
  ``next`` (body and ``Link: <...>; rel="next"``, RFC 8288) is the URL of the
  next page, with the same filters; null on the last one.
* ``ETag`` (RFC 9110 §8.8.3): a strong tag, the digest of the JSON
  representation; ``If-Match`` (§13.1.1) on a change is compared strongly,
  and a mismatch is 412.  The check and the change are two steps (the store
  has no compare-and-set), so two writers racing within a request's time
  can both pass; it catches the lost update of read-modify-write by people
  and tools, which is what it is for.
* Bodies are JSON objects (``application/json``; a PATCH may say
  ``application/merge-patch+json``, RFC 7396) with exactly the documented
  members (``fields``): anything else is 400, another media type 415.
* Every change writes one ``audit`` line (logger ``mailserver.audit``, at
  info even when ``[log] level`` is quieter): who (the token's name), what,
  the target, and its representation before and after (no passwords: they
  are never part of one).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import structlog
from aiohttp import web

from mailserver.admin import AdminService, TokenInfo
from mailserver.errors import (
    Forbidden,
    InvalidCursor,
    InvalidRequest,
    PreconditionFailed,
    Unauthorized,
    UnsupportedMediaType,
)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The admin service, on the API's application (``request.config_dict[ADMIN]``).
ADMIN = web.AppKey("admin", AdminService)
#: The token of the request (set by ``auth_middleware``).
TOKEN = web.RequestKey("token", TokenInfo)
#: Routes anyone may read (canonical paths, relative to the API's prefix).
PUBLIC = frozenset({"/api/v1/openapi.json", "/api/v1/problems/{slug}"})
#: Methods a read-only token may use (RFC 9110 §9.2.1: the safe ones).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REALM = 'Bearer realm="mailserver"'

#: Page sizes: the default, and the most one request may ask for.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Largest quota or age a request may give (the store keeps quotas as u64).
MAX_INT = (1 << 63) - 1

#: The audit trail: at level info whatever ``[log] level`` says (a quieter
#: level must not lose the record of who changed what); same processors and
#: stream as every other line.
audit_log = structlog.wrap_logger(
    None, wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    logger_factory_args=("mailserver.audit",))


def admin_of(request: web.Request) -> AdminService:
    """The admin service serving ``request``."""
    return request.config_dict[ADMIN]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer-token check (see the module docstring).  Raises Unauthorized, Forbidden."""
    match = request.match_info
    if match.http_exception is not None or match.route.resource is None:
        return await handler(request)  # no such route: 404/405 for everyone alike
    if match.route.resource.canonical in PUBLIC:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        # RFC 6750 §3.1: no error code when the request had no credentials.
        raise Unauthorized("this request needs a bearer token: Authorization: Bearer <token> "
                           "(mailserver token create NAME)", headers={"WWW-Authenticate": REALM})
    info = admin_of(request).check_token(token)
    if info is None:
        raise Unauthorized("the bearer token is not known (revoked, or never made)",
                           headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'})
    if info.read_only and request.method not in SAFE_METHODS:
        raise Forbidden(f"token {info.name!r} is read-only",
                        headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope"'})
    request[TOKEN] = info
    return await handler(request)


# -- responses ---------------------------------------------------------------------


def json_response(body: object, *, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    """``body`` as ``application/json``."""
    return web.Response(status=status, body=json.dumps(body).encode(),
                        content_type="application/json", headers=headers)


def etag(representation: Mapping[str, Any]) -> str:
    """The strong entity tag of a representation (RFC 9110 §8.8.3): a digest
    of its canonical JSON, quoted."""
    canonical = json.dumps(representation, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


def resource(representation: Mapping[str, Any], *, status: int = 200,
             location: str | None = None) -> web.Response:
    """One resource, with its ``ETag`` (and ``Location`` after a create, RFC 9110 §15.3.2)."""
    headers = {"ETag": etag(representation)}
    if location is not None:
        headers["Location"] = location
    return json_response(representation, status=status, headers=headers)


def check_if_match(request: web.Request, representation: Mapping[str, Any]) -> None:
    """Evaluate ``If-Match`` against the current representation (RFC 9110
    §13.1.1: ``*`` matches any, entity tags compare strongly, so a weak one
    never matches).  No header: nothing to check.  Raises PreconditionFailed."""
    header = request.headers.get("If-Match")
    if header is None:
        return
    tags = [t.strip() for t in header.split(",")]
    if "*" in tags or etag(representation) in tags:
        return
    raise PreconditionFailed(f"If-Match {header} does not match the current ETag "
                             f"{etag(representation)}; fetch the resource again")


def path_of(*segments: str) -> str:
    """``/api/v1/<segment>/...``, each segment percent-encoded (``@`` kept)."""
    return "/api/v1/" + "/".join(quote(s, safe="@") for s in segments)


def audit(request: web.Request, what: str, target: str,
          before: object | None, after: object | None) -> None:
    """The one audit line of a change: who (the token's name), what (e.g.
    ``account.update``), the target, its representation before and after
    (None: it did not exist)."""
    token = request[TOKEN]
    audit_log.info("audit", who=token.name, what=what, target=target, before=before,
                   after=after)


# -- requests ----------------------------------------------------------------------

_TYPES: dict[type, str] = {str: "a string", bool: "true or false", int: "a whole number"}


async def read_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body: a JSON object (``optional``: no body at all reads as
    ``{}``).  Raises UnsupportedMediaType, InvalidRequest."""
    if optional and not request.can_read_body:
        return {}
    if request.content_type not in ("application/json", "application/merge-patch+json"):
        raise UnsupportedMediaType(f"the body must be application/json, not "
                                   f"{request.content_type}")
    try:
        doc = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("the body must be a JSON object")
    return doc


def fields(doc: Mapping[str, Any], required: Mapping[str, type],
           optional: Mapping[str, type] | None = None) -> dict[str, Any]:
    """The members of ``doc``, checked: every ``required`` one present, no
    member outside ``required`` and ``optional``, each of its type (an int
    is a JSON integer from 0 to ``MAX_INT``; a bool is not an int here).
    Raises InvalidRequest naming the member."""
    allowed = {**required, **(optional or {})}
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise InvalidRequest(f"unknown member(s): {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(allowed))}")
    missing = [name for name in required if name not in doc]
    if missing:
        raise InvalidRequest(f"missing member(s): {', '.join(missing)}")
    for name, value in doc.items():
        kind = allowed[name]
        ok = (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT
              if kind is int else isinstance(value, kind))
        if not ok:
            raise InvalidRequest(f"{name} must be {_TYPES[kind]}"
                                 + (f" from 0 to {MAX_INT}" if kind is int else ""))
    return dict(doc)


def query_int(request: web.Request, name: str, default: int | None, *,
              low: int = 0, high: int = MAX_INT) -> int | None:
    """Query parameter ``name`` as a whole number from ``low`` to ``high``.
    Raises InvalidRequest."""
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text, 10)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be from {low} to {high}")
    return value


def query_choice(request: web.Request, name: str, choices: Iterable[str]) -> str | None:
    """Query parameter ``name``, one of ``choices`` (None when absent).  Raises InvalidRequest."""
    text = request.query.get(name)
    allowed = tuple(choices)
    if text is not None and text not in allowed:
        raise InvalidRequest(f"{name} must be one of {', '.join(allowed)}")
    return text


# -- pagination --------------------------------------------------------------------

_CURSOR_PREFIX = "c1."


def encode_cursor(key: str) -> str:
    """The opaque cursor that continues after ``key``."""
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(key.encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The key a cursor continues after.  Raises InvalidCursor."""
    if not cursor.startswith(_CURSOR_PREFIX):
        raise InvalidCursor("this cursor was not made by this server")
    text = cursor[len(_CURSOR_PREFIX):]
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, ValueError):
        raise InvalidCursor("this cursor was not made by this server") from None


def page(request: web.Request, items: Sequence[T], key: Callable[[T], str],
         render: Callable[[T], Mapping[str, Any]]) -> web.Response:
    """One page of ``items`` (see the module docstring): ``{"items": [...],
    "next": URL | null}``, plus ``Link: <URL>; rel="next"``.

    Query: ``limit`` (1 to ``MAX_LIMIT``, default ``DEFAULT_LIMIT``) and
    ``cursor``.  Raises InvalidRequest, InvalidCursor.
    """
    limit = query_int(request, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    assert limit is not None
    cursor = request.query.get("cursor")
    after = decode_cursor(cursor) if cursor is not None else None
    ordered = sorted(items, key=key)
    chosen = [item for item in ordered if after is None or key(item) > after]
    shown, more = chosen[:limit], len(chosen) > limit
    headers: dict[str, str] = {}
    next_url = None
    if more:
        query = dict(request.query)
        query["limit"] = str(limit)
        query["cursor"] = encode_cursor(key(shown[-1]))
        next_url = str(request.rel_url.with_query(query))
        headers["Link"] = f'<{next_url}>; rel="next"'
    return json_response({"items": [render(i) for i in shown], "next": next_url},
                         headers=headers)
