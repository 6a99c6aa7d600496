"""``/api/v1/queue`` and ``/api/v1/dkim-keys``: the outbound side.

The queue actions are the admin service's (the CLI's ``queue`` verbs): inside
the daemon it holds the running scheduler (``App.admin()``), so a retry is
looked at at once and a deletion first stops a delivery round in flight.
"""

from __future__ import annotations

import time

from aiohttp import web

from mailserver.admin import QueueEntry
from mailserver.errors import NotFound
from mailserver.http.api import representations as rep
from mailserver.http.api.base import (
    admin_of,
    audit,
    check_if_match,
    fields,
    page,
    path_of,
    query_choice,
    query_int,
    read_object,
    resource,
)

routes = web.RouteTableDef()


# -- queue -------------------------------------------------------------------------


def _matches(entry: QueueEntry, *, state: str | None, domain: str | None,
             min_age: int | None, max_age: int | None, now: float) -> bool:
    """The queue list's filters: a recipient in ``state``, a recipient at
    ``domain``, an age (seconds since queued) within the bounds."""
    if state is not None and not any(r.status == state for r in entry.recipients):
        return False
    if domain is not None and not any(r.address.rpartition("@")[2].lower() == domain
                                      for r in entry.recipients):
        return False
    age = now - entry.created
    if min_age is not None and age < min_age:
        return False
    return max_age is None or age <= max_age


@routes.get("/queue")
async def list_queue(request: web.Request) -> web.Response:
    """Queued messages by id (oldest first: ids sort by creation time).

    Filters: ``state`` (a recipient in that state), ``domain`` (a recipient
    at that domain), ``min_age``/``max_age`` (seconds since it was queued).
    """
    state = query_choice(request, "state", rep.RECIPIENT_STATES)
    domain = request.query.get("domain")
    min_age = query_int(request, "min_age", None)
    max_age = query_int(request, "max_age", None)
    wanted = None if domain is None else domain.strip().rstrip(".").lower()
    now = time.time()
    items = [e for e in await admin_of(request).list_queue()
             if _matches(e, state=state, domain=wanted, min_age=min_age, max_age=max_age,
                         now=now)]
    return page(request, items, lambda e: e.id, rep.queued)


@routes.get("/queue/{id}")
async def get_queued(request: web.Request) -> web.Response:
    """One queued message with its recipients."""
    entry = await admin_of(request).queued(request.match_info["id"])
    return resource(rep.queued(entry))


@routes.post("/queue/{id}/retry")
async def retry_queued(request: web.Request) -> web.Response:
    """Make the message due now (the scheduler is woken); returns it."""
    return await _queue_action(request, "retry")


async def _queue_action(request: web.Request, action: str) -> web.Response:
    admin = admin_of(request)
    before = rep.queued(await admin.queued(request.match_info["id"]))
    check_if_match(request, before)
    await getattr(admin, action)(before["id"])
    after = rep.queued(await admin.queued(before["id"]))
    audit(request, f"queue.{action}", before["id"], before, after)
    return resource(after)


@routes.post("/queue/{id}/hold")
async def hold_queued(request: web.Request) -> web.Response:
    """Take the message off the schedule until released; returns it."""
    return await _queue_action(request, "hold")


@routes.post("/queue/{id}/release")
async def release_queued(request: web.Request) -> web.Response:
    """Put a held message back on the schedule, due now; returns it (409: not held)."""
    return await _queue_action(request, "release")


@routes.post("/queue/{id}/bounce")
async def bounce_queued(request: web.Request) -> web.Response:
    """Return the message to its sender with a DSN: ``{"reason"?}`` (an
    empty body or ``{}`` for the default text); a round in flight is
    stopped, the next one (now) sends the DSN and removes the message.
    202 with the message as it is when accepted."""
    admin = admin_of(request)
    before = rep.queued(await admin.queued(request.match_info["id"]))
    check_if_match(request, before)
    body = fields(await read_object(request, optional=True), {}, {"reason": str})
    after = {**before, "bounce": await admin.bounce(before["id"], body.get("reason", ""))}
    audit(request, "queue.bounce", before["id"], before, after)
    return resource(after, status=202)


@routes.delete("/queue/{id}")
async def delete_queued(request: web.Request) -> web.Response:
    """Drop the message without a DSN (a round in flight is stopped first)."""
    admin = admin_of(request)
    before = rep.queued(await admin.queued(request.match_info["id"]))
    check_if_match(request, before)
    await admin.delete_queued(before["id"])
    audit(request, "queue.delete", before["id"], before, None)
    return web.Response(status=204)


# -- DKIM keys ---------------------------------------------------------------------


@routes.get("/dkim-keys")
async def list_dkim_keys(request: web.Request) -> web.Response:
    """The stored keys by domain and selector; ``domain`` keeps one domain's."""
    items = await admin_of(request).list_dkim_keys(request.query.get("domain"))
    return page(request, items, lambda k: f"{k.domain}/{k.selector}", rep.dkim_key)


@routes.post("/dkim-keys")
async def create_dkim_key(request: web.Request) -> web.Response:
    """Make a key pair: ``{"domain", "algorithm"?, "selector"?}``; the selector
    defaults to a dated one (``<[dkim] selector>-YYYYMMDD[-ed25519]``), so a
    rotation publishes a new record next to the old one.  201 with Location;
    the body holds the TXT record to publish."""
    body = fields(await read_object(request), {"domain": str},
                  {"algorithm": str, "selector": str})
    admin = admin_of(request)
    algorithm = body.get("algorithm", "rsa")
    selector = body.get("selector") or admin.dated_selector(algorithm)
    key = await admin.generate_dkim_key(body["domain"], selector=selector, algorithm=algorithm)
    after = rep.dkim_key(key)
    audit(request, "dkim_key.create", f"{key.domain}/{key.selector}", None, after)
    return resource(after, status=201, location=path_of("dkim-keys", key.domain, key.selector))


@routes.post("/dkim-keys/{domain}/rotate")
async def rotate_dkim_key(request: web.Request) -> web.Response:
    """Rotate: ``{"algorithm"?}`` (rsa by default); a new key with a dated
    selector, and the domain's other active keys of that algorithm retired.
    201 with the new key and its Location."""
    body = fields(await read_object(request, optional=True), {}, {"algorithm": str})
    admin = admin_of(request)
    key, retired = await admin.rotate_dkim_key(request.match_info["domain"],
                                               body.get("algorithm", "rsa"))
    after = rep.dkim_key(key)
    audit(request, "dkim_key.rotate", f"{key.domain}/{key.selector}",
          [rep.dkim_key(k) for k in retired], after)
    return resource(after, status=201, location=path_of("dkim-keys", key.domain, key.selector))


@routes.delete("/dkim-keys/{domain}/{selector}")
async def delete_dkim_key(request: web.Request) -> web.Response:
    """Delete a retired key (409 for an active one)."""
    admin = admin_of(request)
    domain, selector = request.match_info["domain"], request.match_info["selector"]
    before = await _dkim_key(request)
    check_if_match(request, before)
    await admin.delete_dkim_key(domain, selector)
    audit(request, "dkim_key.delete", f"{before['domain']}/{selector}", before, None)
    return web.Response(status=204)


async def _dkim_key(request: web.Request) -> dict[str, object]:
    admin = admin_of(request)
    domain, selector = request.match_info["domain"], request.match_info["selector"]
    for key in await admin.list_dkim_keys((await admin.get_domain(domain)).name):
        if key.selector == selector:
            return rep.dkim_key(key)
    raise NotFound(f"no DKIM key {selector!r} for {domain}")


@routes.get("/dkim-keys/{domain}/{selector}")
async def get_dkim_key(request: web.Request) -> web.Response:
    """One key and its TXT record."""
    return resource(await _dkim_key(request))
