"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/v1/openapi.json``.

Written by hand from one table (``OPERATIONS``), with the resources' schemas
from ``representations.py``.  Kept truthful by the tests: every route the
API serves is in the table and every operation in the table is served
(``tests/integration/test_api.py``), and schemathesis checks the server's
answers against the document (``tests/integration/test_api_schema.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailserver.analytics import Kind
from mailserver.errors import PROBLEM_BASE
from mailserver.http.api.base import DEFAULT_LIMIT, MAX_INT, MAX_LIMIT
from mailserver.http.api.representations import RECIPIENT_STATES, SCHEMAS, Json
from mailserver.http.problem import PROBLEM_JSON

#: The version of the API's contract (README: "Compatibility"); v1 only grows.
VERSION = "1.0.0"


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the document."""

    method: str
    path: str  # relative to /api/v1, with {parameters}
    operation_id: str
    summary: str
    tag: str
    ok: int  # the success status
    schema: str | None = None  # success body: a component name; "page:<Name>" for a list
    body: Json | None = None  # request body schema
    query: tuple[str, ...] = ()  # names of query parameters (``_QUERY``)
    errors: tuple[int, ...] = ()  # problem statuses besides 401 (and 403 on changes)
    public: bool = False  # no token needed
    if_match: bool = False  # honours If-Match (412)
    body_types: tuple[str, ...] = ("application/json",)
    body_required: bool = True  # False: the request may have no body at all
    description: str = field(default="")
    stream: bool = False  # text/event-stream that never ends (not for schemathesis)


_DOMAIN_Q = {"name": "domain", "in": "query", "required": False,
             "description": "only items of this domain", "schema": {"type": "string"}}
_QUERY: dict[str, Json] = {
    "limit": {"name": "limit", "in": "query", "required": False,
              "description": "most items in the page",
              "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                         "default": DEFAULT_LIMIT}},
    "cursor": {"name": "cursor", "in": "query", "required": False,
               "description": "where the page starts: the cursor in the previous page's "
               "next link (opaque)", "schema": {"type": "string"}},
    "domain": _DOMAIN_Q,
    "rcpt_domain": {**_DOMAIN_Q, "description": "only messages with a recipient at this domain"},
    "state": {"name": "state", "in": "query", "required": False,
              "description": "only messages with a recipient in this state",
              "schema": {"type": "string", "enum": list(RECIPIENT_STATES)}},
    "min_age": {"name": "min_age", "in": "query", "required": False,
                "description": "only messages queued at least this many seconds ago",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_INT}},
    "max_age": {"name": "max_age", "in": "query", "required": False,
                "description": "only messages queued at most this many seconds ago",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_INT}},
}
_NUM = {"type": "number", "minimum": 0, "maximum": 1e11}
_QUERY.update({
    "since": {"name": "since", "in": "query", "required": False,
              "description": "only events at or after this time (POSIX seconds)", "schema": _NUM},
    "until": {"name": "until", "in": "query", "required": False,
              "description": "only events before this time (POSIX seconds)", "schema": _NUM},
    "kind": {"name": "kind", "in": "query", "required": False,
             "description": "only events of this kind",
             "schema": {"type": "string", "enum": [k.value for k in Kind]}},
    "direction": {"name": "direction", "in": "query", "required": False,
                  "description": "in: mail for us; out: submission and the outbound queue",
                  "schema": {"type": "string", "enum": ["in", "out"]}},
    "result": {"name": "result", "in": "query", "required": False,
               "description": "ok, temp (4xx) or perm (5xx)",
               "schema": {"type": "string", "enum": ["ok", "temp", "perm"]}},
    "account": {"name": "account", "in": "query", "required": False,
                "description": "only events of this account", "schema": {"type": "string"}},
    "last_event_id": {"name": "last_event_id", "in": "query", "required": False,
                      "description": "resume after this event id (like Last-Event-ID)",
                      "schema": {"type": "string", "pattern": "^[0-9]{1,20}$"}},
})
_QUERY["name"] = {"name": "name", "in": "query", "required": False,
                  "description": "only the counters of this IP address, network or account",
                  "schema": {"type": "string", "maxLength": 320}}
_PAGED = ("limit", "cursor")
_NULLNUM = {"type": ["number", "null"]}
_LATENCY = {"type": "object", "properties": {"p50": _NULLNUM, "p95": _NULLNUM, "p99": _NULLNUM,
                                             "count": {"type": "integer"}}}
FLOW_SCHEMAS: dict[str, Json] = {
    "FlowEvent": {"type": "object", "description": "A mail-flow event.", "properties": {
        "id": {"type": "integer", "description": "grows with time (microseconds)"},
        "kind": {"type": "string", "enum": [k.value for k in Kind]},
        "time": {"type": "number", "description": "POSIX seconds"},
        "direction": {"type": "string"}, "domain": {"type": "string"},
        "account": {"type": "string"}, "result": {"type": "string"},
        "code": {"type": "string"}, "reason": {"type": "string"},
        "size": {"type": "integer", "description": "octets"},
        "latency": {**_NULLNUM, "description": "seconds"}, "source": {"type": "string"},
        "sender": {"type": "string", "description": "reverse-path domain (received)"}},
        "required": ["id", "kind", "time"]},
    "FlowStats": {"type": "object", "description": "Rolling windows of the mail flow.",
                  "properties": {"time": {"type": "number"}, "windows": {
                      "type": "object", "additionalProperties": {
                          "type": "object", "properties": {
                              "minutes": {"type": "integer"},
                              "totals": {"type": "object",
                                         "additionalProperties": {"type": "integer"}},
                              "bytes": {"type": "integer"},
                              "senders": {"type": "array", "description":
                                          "[domain, count] rows: the reverse-path domains "
                                          "of received mail, most first (at most 20)",
                                          "items": {"type": "array"}},
                              "by": {"type": "array", "description":
                                     "[kind, direction, domain, result, count] rows",
                                     "items": {"type": "array"}},
                              "latency": {"type": "object", "description":
                                          "seconds: data (end of DATA -> 250), local "
                                          "(end of DATA -> delivered), remote (queued -> "
                                          "accepted remotely)",
                                          "additionalProperties": _LATENCY}}}}},
                  "required": ["time", "windows"]},
}


def query_names(op: Operation) -> frozenset[str]:
    """The names of the query parameters ``op`` takes."""
    return frozenset(_QUERY[q]["name"] for q in op.query)


def _body(properties: dict[str, Any], required: list[str]) -> Json:
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


_QUOTA = {"type": "integer", "minimum": 0, "maximum": MAX_INT,
          "description": "octets; 0 = unlimited"}
_PASSWORD = {"type": "string", "minLength": 8, "maxLength": 1024,
             "description": "8 to 1024 characters, no NUL, CR or LF"}

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/openapi.json", "getOpenApi", "This document", "meta", 200,
              public=True),
    Operation("get", "/problems/{slug}", "getProblemType", "What a problem type means",
              "meta", 200, public=True, errors=(404,)),
    # domains
    Operation("get", "/domains", "listDomains", "List local domains", "domains", 200,
              "page:Domain", query=_PAGED, errors=(400,)),
    Operation("post", "/domains", "createDomain", "Add a local domain", "domains", 201,
              "Domain", body=_body({"name": {"type": "string"}}, ["name"]),
              errors=(400, 409, 415, 422)),
    Operation("get", "/domains/{name}", "getDomain", "Show a local domain", "domains", 200,
              "Domain", errors=(404, 422)),
    Operation("delete", "/domains/{name}", "deleteDomain",
              "Delete an empty domain and its aliases", "domains", 204,
              errors=(404, 409, 422), if_match=True,
              description="A domain listed in the configuration file, or one that still "
              "has accounts, cannot be deleted (409)."),
    # accounts
    Operation("get", "/accounts", "listAccounts", "List accounts", "accounts", 200,
              "page:Account", query=(*_PAGED, "domain"), errors=(400, 422)),
    Operation("post", "/accounts", "createAccount", "Create an account", "accounts", 201,
              "Account", body=_body({"address": {"type": "string"}, "password": _PASSWORD,
                                     "quota": _QUOTA}, ["address", "password"]),
              errors=(400, 404, 409, 415, 422),
              description="With the default mailboxes.  404: the domain is not local."),
    Operation("get", "/accounts/{address}", "getAccount", "Show an account and its usage",
              "accounts", 200, "Account", errors=(404, 422)),
    Operation("patch", "/accounts/{address}", "updateAccount",
              "Set an account's quota, or disable or enable it", "accounts", 200, "Account",
              body=_body({"quota": _QUOTA, "disabled": {"type": "boolean"}}, []),
              errors=(400, 404, 415, 422), if_match=True,
              body_types=("application/json", "application/merge-patch+json"),
              description="A disabled account cannot log in (in every process at once); "
              "its mail is still delivered."),
    Operation("put", "/accounts/{address}/password", "setPassword", "Set an account's password",
              "accounts", 204, body=_body({"password": _PASSWORD}, ["password"]),
              errors=(400, 404, 415, 422), if_match=True,
              description="If-Match takes the account's ETag."),
    Operation("get", "/accounts/{address}/mailboxes", "listMailboxes",
              "List an account's mailboxes with their counts", "accounts", 200,
              "page:Mailbox", query=_PAGED, errors=(400, 404, 422)),
    Operation("get", "/accounts/{address}/junk", "getJunkStats",
              "Messages the account's junk model trained on", "junk", 200, "JunkStats",
              errors=(404, 422)),
    Operation("post", "/accounts/{address}/junk/test", "testJunk",
              "Score a message as the account's junk filter would", "junk", 200,
              "JunkTest", body=_body({"message": {"type": "string", "maxLength": 1000000,
                                                  "description": "the message text"}},
                                     ["message"]),
              errors=(400, 404, 415, 422),
              description="The score (0-1; junk at or above the threshold) and the "
              "features that decided, most telling first."),
    Operation("put", "/accounts/{address}/junk/threshold", "setJunkThreshold",
              "Set or clear the account's own junk threshold", "junk", 200, "JunkStats",
              body=_body({"threshold": {"type": ["number", "null"], "exclusiveMinimum": 0,
                                        "maximum": 1, "description": "junk at or above it; "
                                        "null: the configured threshold again"}},
                         ["threshold"]),
              errors=(400, 404, 415, 422),
              description="Lower is stricter. An account with its own threshold is left "
              "out of the A/B comparison of [junk] candidate_threshold."),
    Operation("delete", "/accounts/{address}/junk", "resetJunk",
              "Forget the account's own junk model", "junk", 204, errors=(404, 422),
              description="The global model keeps what the account's training taught it."),
    Operation("get", "/status", "getStatus", "The running daemon, its queue and its store",
              "meta", 200, "Status",
              description="What mailserver status prints: pid, uptime, workers, bound "
              "listeners, queue size and age of the oldest message, store fill."),
    Operation("delete", "/accounts/{address}", "deleteAccount",
              "Delete an account, all its mail and the aliases pointing at it", "accounts",
              204, errors=(404, 422), if_match=True),
    # aliases
    Operation("get", "/aliases", "listAliases", "List aliases", "aliases", 200, "page:Alias",
              query=(*_PAGED, "domain"), errors=(400, 422)),
    Operation("post", "/aliases", "createAlias", "Create an alias", "aliases", 201, "Alias",
              body={**_body({"address": {"type": "string",
                                         "description": "local@domain, or @domain: catch-all"},
                             "target": {"type": "string", "description": "one target: an "
                                        "account, or an address elsewhere"},
                             "targets": {"type": "array", "minItems": 1, "maxItems": 1000,
                                         "items": {"type": "string"},
                                         "description": "several targets"}},
                            ["address"]),
                    "oneOf": [{"required": ["target"]}, {"required": ["targets"]}]},
              errors=(400, 404, 409, 415, 422)),
    Operation("get", "/aliases/{address}", "getAlias", "Show an alias", "aliases", 200,
              "Alias", errors=(404, 422)),
    Operation("delete", "/aliases/{address}", "deleteAlias", "Delete an alias", "aliases", 204,
              errors=(404, 422), if_match=True),
    # queue
    Operation("get", "/queue", "listQueue", "List the outbound queue, oldest first", "queue",
              200, "page:QueuedMessage",
              query=(*_PAGED, "state", "rcpt_domain", "min_age", "max_age"), errors=(400,)),
    Operation("get", "/queue/{id}", "getQueued", "Show a queued message", "queue", 200,
              "QueuedMessage", errors=(404, 409)),
    Operation("post", "/queue/{id}/retry", "retryQueued", "Make a queued message due now",
              "queue", 200, "QueuedMessage", errors=(404, 409), if_match=True),
    Operation("post", "/queue/{id}/hold", "holdQueued",
              "Take a queued message off the schedule until released", "queue", 200,
              "QueuedMessage", errors=(404, 409), if_match=True,
              description="No delivery attempt and no expiry while held; flush leaves it."),
    Operation("post", "/queue/{id}/release", "releaseQueued",
              "Put a held message back on the schedule, due now", "queue", 200,
              "QueuedMessage", errors=(404, 409), if_match=True,
              description="409 when the message is not held."),
    Operation("post", "/queue/{id}/bounce", "bounceQueued",
              "Return a queued message to its sender with a DSN", "queue", 202,
              "QueuedMessage", body=_body({"reason": {
                  "type": "string", "maxLength": 1000,
                  "description": "the DSN's Diagnostic-Code text after 550 5.0.0 (at most "
                  "200 characters are kept; default: returned by the postmaster)"}}, []),
              body_required=False, errors=(400, 404, 409, 415), if_match=True,
              description="Every recipient still to go fails with 550 5.0.0 at the next "
              "delivery round, started now (a round in flight is stopped, a hold lifted); "
              "the sender gets one DSN (RFC 3464) unless the reverse-path is null or "
              "NOTIFY=NEVER, and the message leaves the queue."),
    Operation("delete", "/queue/{id}", "deleteQueued",
              "Drop a queued message without a DSN", "queue", 204, errors=(404, 409),
              if_match=True),
    # DKIM
    Operation("get", "/dkim-keys", "listDkimKeys", "List DKIM keys", "dkim", 200,
              "page:DkimKey", query=(*_PAGED, "domain"), errors=(400, 422)),
    Operation("post", "/dkim-keys", "createDkimKey",
              "Make a DKIM key pair; the response holds the TXT record to publish", "dkim",
              201, "DkimKey",
              body=_body({"domain": {"type": "string"},
                          "algorithm": {"type": "string", "enum": ["rsa", "ed25519"],
                                        "default": "rsa"},
                          "selector": {"type": "string", "description":
                                       "default: <[dkim] selector>-YYYYMMDD (today, UTC), "
                                       "then -ed25519 for an Ed25519 key"}},
                         ["domain"]),
              errors=(400, 404, 409, 415, 422),
              description="RSA keys have 2048 bits; Ed25519 follows RFC 8463.  The daemon "
              "signs with a new key from its next message, as long as [dkim] algorithms "
              "lists its algorithm."),
    Operation("get", "/dkim-keys/{domain}/{selector}", "getDkimKey",
              "Show a DKIM key and its TXT record", "dkim", 200, "DkimKey",
              errors=(404, 422)),
    Operation("post", "/dkim-keys/{domain}/rotate", "rotateDkimKey",
              "Rotate a domain's DKIM key: a new dated key, the old ones retired", "dkim",
              201, "DkimKey",
              body=_body({"algorithm": {"type": "string", "enum": ["rsa", "ed25519"],
                                        "default": "rsa"}}, []),
              body_required=False, errors=(400, 404, 409, 415, 422),
              description="Makes a key with the selector <[dkim] selector>-YYYYMMDD (today, "
              "UTC; -ed25519 appended for Ed25519) and retires the domain's other active "
              "keys of that algorithm: they sign no more, their records stay listed until "
              "deleted.  Every process signs with the new key from its next message.  "
              "409 when today's selector already has a key."),
    Operation("delete", "/dkim-keys/{domain}/{selector}", "deleteDkimKey",
              "Delete a retired DKIM key", "dkim", 204, errors=(404, 409, 422),
              if_match=True, description="Withdraw its DNS record first.  409 for an "
              "active key: rotate it out before deleting it."),
    # abuse limits (admin/limits.py)
    Operation("get", "/limits", "listLimits", "Live abuse-limit counters of every worker",
              "limits", 200, "page:LimitCounter", query=(*_PAGED, "name"),
              errors=(400, 409, 422),
              description="What mailserver limits show prints: each sliding-window counter "
              "(connections, messages, recipients per IP, network or account) with its "
              "estimate.  409 when the counter service does not answer."),
    Operation("post", "/limits/reset", "resetLimits",
              "Forget the counters of an IP address, network or account", "limits", 200,
              "LimitReset", body=_body({"name": {"type": "string", "maxLength": 320}},
                                       ["name"]),
              errors=(400, 409, 415, 422),
              description="In every worker at once: the name may connect and send again "
              "at once (mailserver limits reset)."),
    # mail flow (analytics/)
    Operation("get", "/events", "listEvents", "Mail-flow events, oldest first", "flow", 200,
              "page:FlowEvent", query=(*_PAGED, "since", "until", "kind", "direction",
                                       "domain", "result", "account"),
              errors=(400, 404)),
    Operation("get", "/stats", "getStats", "Mail-flow windows: 1 min, 1 h, 24 h", "flow",
              200, "FlowStats", errors=(404,)),
    Operation("get", "/events/stream", "streamEvents",
              "Mail-flow events as Server-Sent Events", "flow", 200,
              query=("kind", "domain", "account", "last_event_id"), errors=(400, 404),
              stream=True, description="One SSE event per mail-flow event (event: kind, "
              "id: event id, data: the FlowEvent as JSON); Last-Event-ID resumes."),
)

_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           409: "Conflict", 412: "Precondition Failed", 415: "Unsupported Media Type",
           422: "Unprocessable Content"}


def _problem(status: int) -> Json:
    return {"description": _TITLES[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _success(op: Operation) -> Json:
    if op.ok == 204:
        return {"description": "Done"}
    if op.ok == 202:
        return {"description": "Accepted: carried out by the queue at once", "headers": {
            "ETag": {"required": True, "description": "the entity tag of the body",
                     "schema": {"type": "string"}}},
            "content": {"application/json": {"schema": {
                "$ref": f"#/components/schemas/{op.schema}"}}}}
    if op.stream:
        return {"description": "An endless event stream", "content": {"text/event-stream": {
            "schema": {"type": "string"}}}}
    if op.path == "/openapi.json":
        return {"description": "The OpenAPI document", "content": {"application/json": {
            "schema": {"type": "object"}}}}
    if op.path == "/problems/{slug}":
        return {"description": "The problem type", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ProblemType"}}}}
    assert op.schema is not None
    headers: Json = {}
    if op.schema.startswith("page:"):
        schema: Json = {"$ref": f"#/components/schemas/Page{op.schema[5:]}"}
        headers["Link"] = {"description": 'the next page, rel="next" (RFC 8288), when there '
                           "is one", "schema": {"type": "string"}}
    else:
        schema = {"$ref": f"#/components/schemas/{op.schema}"}
        headers["ETag"] = {"required": True, "description": "strong entity tag (RFC 9110 "
                           "§8.8.3); give it in If-Match to change the resource",
                           "schema": {"type": "string"}}
    if op.ok == 201:
        headers["Location"] = {"required": True, "description": "the new resource",
                               "schema": {"type": "string"}}
    return {"description": "Created" if op.ok == 201 else "OK", "headers": headers,
            "content": {"application/json": {"schema": schema}}}


def _operation(op: Operation) -> Json:
    params: list[Json] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_names(op.path)
    ]
    params += [_QUERY[q] for q in op.query]
    if op.if_match:
        params.append({"name": "If-Match", "in": "header", "required": False,
                       "description": "change only if the resource's ETag is one of these "
                       "(RFC 9110 §13.1.1)", "schema": {"type": "string"}})
    statuses = set(op.errors)
    if not op.public:
        statuses.add(401)
        if op.method != "get":
            statuses.add(403)
    if op.if_match:
        statuses.add(412)
    out: Json = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag],
                 "parameters": params,
                 "responses": {str(op.ok): _success(op),
                               **{str(s): _problem(s) for s in sorted(statuses)}}}
    if op.description:
        out["description"] = op.description
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required, "content": {
            t: {"schema": op.body} for t in op.body_types}}
    if op.public:
        out["security"] = []
    return out


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _page(name: str) -> Json:
    return {"type": "object", "description": f"A page of {name} items (cursor pagination).",
            "properties": {
                "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
                "next": {"type": ["string", "null"], "description": "URL of the next page; "
                         "null on the last"}},
            "required": ["items", "next"], "additionalProperties": False}


def document() -> Json:
    """The whole OpenAPI 3.1 document (a fresh dict each call)."""
    paths: Json = {}
    for op in OPERATIONS:
        paths.setdefault("/api/v1" + op.path, {})[op.method] = _operation(op)
    listed = sorted({op.schema[5:] for op in OPERATIONS
                     if op.schema and op.schema.startswith("page:")})
    schemas = {**SCHEMAS, **FLOW_SCHEMAS, **{f"Page{name}": _page(name) for name in listed},
               "ProblemType": {"type": "object", "properties": {
                   "type": {"type": "string"}, "title": {"type": "string"},
                   "status": {"type": "integer"}, "description": {"type": "string"}},
                   "required": ["type", "title", "status", "description"]}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailserver admin API", "version": VERSION,
            "description": "Administration of a mailserver daemon: the same actions as the "
            "`mailserver` command line, through the same service.  Lists are paginated "
            "by cursor (`limit`, `cursor`, `next`); errors are problem details (RFC 9457) "
            f"whose `type` is `{PROBLEM_BASE}<slug>`.  Compatibility: v1 only grows; "
            "removals go to /api/v2, and deprecated fields are announced with "
            "Deprecation and Sunset headers first.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for op in OPERATIONS)],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "a token from `mailserver token create NAME [--read-only]`"}},
            "schemas": schemas,
        },
    }
