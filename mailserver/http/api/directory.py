"""``/api/v1/domains``, ``/api/v1/accounts`` (and their mailboxes),
``/api/v1/aliases``: the directory; ``/api/v1/status``: the daemon.

Each handler parses the request, calls the admin service (the one the CLI's
``domain``, ``user`` and ``alias`` verbs call) and writes the representation
(``representations.py``); the rules are the service's.
"""

from __future__ import annotations

import time

from aiohttp import web

from mailserver.errors import InvalidRequest
from mailserver.http.api import representations as rep
from mailserver.http.api.base import (
    admin_of,
    audit,
    check_if_match,
    fields,
    json_response,
    page,
    path_of,
    read_object,
    resource,
)

routes = web.RouteTableDef()


def _domain_filter(request: web.Request) -> str | None:
    return request.query.get("domain")


# -- domains -----------------------------------------------------------------------


@routes.get("/domains")
async def list_domains(request: web.Request) -> web.Response:
    """The local domains, by name."""
    items = await admin_of(request).list_domains()
    return page(request, items, lambda d: d.name, rep.domain)


@routes.post("/domains")
async def create_domain(request: web.Request) -> web.Response:
    """Add a local domain: ``{"name"}``.  201 with Location."""
    body = fields(await read_object(request), {"name": str})
    info = await admin_of(request).add_domain(body["name"])
    after = rep.domain(info)
    audit(request, "domain.create", info.name, None, after)
    return resource(after, status=201, location=path_of("domains", info.name))


@routes.get("/domains/{name}")
async def get_domain(request: web.Request) -> web.Response:
    """One local domain."""
    info = await admin_of(request).get_domain(request.match_info["name"])
    return resource(rep.domain(info))


@routes.delete("/domains/{name}")
async def delete_domain(request: web.Request) -> web.Response:
    """Delete an empty domain and its aliases (not a configured one: 409)."""
    admin = admin_of(request)
    before = rep.domain(await admin.get_domain(request.match_info["name"]))
    check_if_match(request, before)
    await admin.delete_domain(before["name"])
    audit(request, "domain.delete", before["name"], before, None)
    return web.Response(status=204)


# -- accounts ----------------------------------------------------------------------


@routes.get("/accounts")
async def list_accounts(request: web.Request) -> web.Response:
    """Accounts by address; ``domain`` keeps those of one domain."""
    items = await admin_of(request).list_accounts(_domain_filter(request))
    return page(request, items, lambda a: a.address, rep.account)


@routes.get("/accounts/{address}/mailboxes")
async def list_mailboxes(request: web.Request) -> web.Response:
    """The account's mailboxes by name, with their counts."""
    items = await admin_of(request).list_mailboxes(request.match_info["address"])
    return page(request, items, lambda m: m.name, rep.mailbox)


@routes.get("/accounts/{address}/junk")
async def junk_stats(request: web.Request) -> web.Response:
    """Messages the account's junk model (and the global one) trained on."""
    stats = await admin_of(request).junk_stats(request.match_info["address"])
    return resource(stats)


@routes.post("/accounts/{address}/junk/test")
async def junk_test(request: web.Request) -> web.Response:
    """Score a message (``{"message": text}``) as the account's filter would:
    score (0-1), verdict, threshold and the deciding features."""
    body = fields(await read_object(request), {"message": str})
    data = body["message"].encode("utf-8", "surrogateescape")
    v = await admin_of(request).junk_test(request.match_info["address"], data)
    return json_response({"score": round(v.score.value, 4), "junk": v.junk,
                          "threshold": v.threshold,
                          "features": [{"feature": f, "probability": round(p, 4)}
                                       for f, p in v.score.top]})


@routes.put("/accounts/{address}/junk/threshold")
async def junk_set_threshold(request: web.Request) -> web.Response:
    """The account's own junk threshold (``{"threshold": 0 < t <= 1}``, or
    ``null`` for the configured one); answers the account's junk resource."""
    body = await read_object(request)
    if set(body) != {"threshold"}:
        raise InvalidRequest("the body is {\"threshold\": a number from 0 to 1, or null}")
    value = body["threshold"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InvalidRequest("threshold must be a number or null")
    address = request.match_info["address"]
    admin = admin_of(request)
    before = await admin.junk_stats(address)
    await admin.junk_set_threshold(address, None if value is None else float(value))
    after = await admin.junk_stats(address)
    audit(request, "junk.threshold", address, before["threshold"], after["threshold"])
    return resource(after)


@routes.delete("/accounts/{address}/junk")
async def junk_reset(request: web.Request) -> web.Response:
    """Forget the account's own junk model (the global one keeps what it learnt)."""
    address = request.match_info["address"]
    before = await admin_of(request).junk_stats(address)
    await admin_of(request).junk_reset(address)
    audit(request, "junk.reset", address, before, None)
    return web.Response(status=204)


@routes.get("/status")
async def get_status(request: web.Request) -> web.Response:
    """The running daemon, its queue and its store (``mailserver status``)."""
    info = await admin_of(request).status()
    return resource(rep.status(info, time.time()))


@routes.post("/accounts")
async def create_account(request: web.Request) -> web.Response:
    """Create an account with the default mailboxes: ``{"address", "password",
    "quota"?}``.  201 with Location."""
    body = fields(await read_object(request), {"address": str, "password": str},
                  {"quota": int})
    info = await admin_of(request).add_account(body["address"], body["password"],
                                               quota=body.get("quota", 0))
    after = rep.account(info)
    audit(request, "account.create", info.address, None, after)
    return resource(after, status=201, location=path_of("accounts", info.address))


@routes.get("/accounts/{address}")
async def get_account(request: web.Request) -> web.Response:
    """One account, with its usage."""
    info = await admin_of(request).get_account(request.match_info["address"])
    return resource(rep.account(info))


@routes.patch("/accounts/{address}")
async def update_account(request: web.Request) -> web.Response:
    """Change ``quota`` (octets, 0 = unlimited) and/or ``disabled``; If-Match honoured."""
    body = fields(await read_object(request), {}, {"quota": int, "disabled": bool})
    admin = admin_of(request)
    info = await admin.get_account(request.match_info["address"])
    before = rep.account(info)
    check_if_match(request, before)
    if "quota" in body:
        info = await admin.set_quota(info.address, body["quota"])
    if "disabled" in body:
        info = await admin.set_disabled(info.address, body["disabled"])
    after = rep.account(info)
    audit(request, "account.update", info.address, before, after)
    return resource(after)


@routes.put("/accounts/{address}/password")
async def set_password(request: web.Request) -> web.Response:
    """Set the password: ``{"password"}``.  204; If-Match (the account's ETag) honoured."""
    body = fields(await read_object(request), {"password": str})
    admin = admin_of(request)
    info = await admin.get_account(request.match_info["address"])
    before = rep.account(info)
    check_if_match(request, before)
    await admin.set_password(info.address, body["password"])
    audit(request, "account.set_password", info.address, before, before)
    return web.Response(status=204)


@routes.delete("/accounts/{address}")
async def delete_account(request: web.Request) -> web.Response:
    """Delete the account, all its mail and the aliases pointing at it."""
    admin = admin_of(request)
    before = rep.account(await admin.get_account(request.match_info["address"]))
    check_if_match(request, before)
    await admin.delete_account(before["address"])
    audit(request, "account.delete", before["address"], before, None)
    return web.Response(status=204)


# -- aliases -----------------------------------------------------------------------


@routes.get("/aliases")
async def list_aliases(request: web.Request) -> web.Response:
    """Aliases by address; ``domain`` keeps those of one domain."""
    items = await admin_of(request).list_aliases(_domain_filter(request))
    return page(request, items, lambda a: a.address, rep.alias)


@routes.post("/aliases")
async def create_alias(request: web.Request) -> web.Response:
    """Deliver mail for ``address`` (``@domain``: a catch-all) to ``target``
    (one) or ``targets`` (a list): accounts, and addresses elsewhere that
    mail is forwarded to.  201 with Location."""
    body = fields(await read_object(request), {"address": str},
                  {"target": str, "targets": list})
    if ("target" in body) == ("targets" in body):
        raise InvalidRequest("give target or targets, not both and not neither")
    wanted = [body["target"]] if "target" in body else body["targets"]
    if not all(isinstance(t, str) for t in wanted):
        raise InvalidRequest("targets must be strings")
    info = await admin_of(request).add_alias(body["address"], wanted)
    after = rep.alias(info)
    audit(request, "alias.create", info.address, None, after)
    return resource(after, status=201, location=path_of("aliases", info.address))


@routes.get("/aliases/{address}")
async def get_alias(request: web.Request) -> web.Response:
    """One alias."""
    info = await admin_of(request).get_alias(request.match_info["address"])
    return resource(rep.alias(info))


@routes.delete("/aliases/{address}")
async def delete_alias(request: web.Request) -> web.Response:
    """Delete an alias."""
    admin = admin_of(request)
    before = rep.alias(await admin.get_alias(request.match_info["address"]))
    check_if_match(request, before)
    await admin.delete_alias(before["address"])
    audit(request, "alias.delete", before["address"], before, None)
    return web.Response(status=204)

