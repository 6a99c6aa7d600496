"""The JSON of each ``/api/v1`` resource, and its JSON Schema (2020-12, what
OpenAPI 3.1 uses) next to it, so that the document (``openapi.py``) says
what the code writes.  Times are RFC 3339 strings in UTC (``...Z``), sizes
octets, durations seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mailserver.admin import (
    AccountInfo,
    AliasInfo,
    DkimKeyInfo,
    DnsRecord,
    DomainInfo,
    QueueEntry,
    QueueRecipient,
)
from mailserver.admin.views import LimitCounter, MailboxView, StatusInfo

Json = dict[str, Any]

#: Delivery states of a queued message's recipient (``queue.model``).
RECIPIENT_STATES = ("pending", "deferred", "delivered", "failed")


def timestamp(ts: float) -> str:
    """Unix seconds as RFC 3339 (§5.6) in UTC, to the second: ``2026-12-05T10:00:00Z``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def domain(info: DomainInfo) -> Json:
    """A local domain."""
    return {"name": info.name, "configured": info.configured}


def account(info: AccountInfo) -> Json:
    """An account (no password hash)."""
    return {"address": info.address, "quota": info.quota, "used": info.used,
            "disabled": info.disabled}


def alias(info: AliasInfo) -> Json:
    """An alias."""
    return {"address": info.address, "target": info.target,
            "targets": list(info.targets or (info.target,))}


def _recipient(r: QueueRecipient) -> Json:
    return {"address": r.address, "status": r.status, "attempts": r.attempts,
            "last_error": r.last_error}


def queued(entry: QueueEntry) -> Json:
    """A message of the outbound queue, with its recipients."""
    return {"id": entry.id, "sender": entry.sender, "created": timestamp(entry.created),
            "size": entry.size, "attempts": entry.attempts,
            "next_attempt": timestamp(entry.next_attempt), "held": entry.held,
            "bounce": entry.bounce or None,
            "recipients": [_recipient(r) for r in entry.recipients]}


def dns_record(record: DnsRecord) -> Json:
    """A resource record to publish, with its zone-file line."""
    return {"name": record.name, "type": record.type, "value": record.value,
            "ttl": record.ttl, "zone_line": record.zone_line()}


def dkim_key(key: DkimKeyInfo) -> Json:
    """A DKIM key (the private key never leaves the server)."""
    return {"domain": key.domain, "selector": key.selector, "algorithm": key.algorithm,
            "signing": key.signing, "retired": key.retired, "record": dns_record(key.record)}


def limit_counter(counter: LimitCounter) -> Json:
    """A live abuse-limit counter."""
    return {"window": counter.window, "kind": counter.kind, "name": counter.name,
            "count": counter.count}


def mailbox(view: MailboxView) -> Json:
    """A mailbox of an account, with its counts."""
    return {"name": view.name, "messages": view.messages, "unseen": view.unseen,
            "size": view.size, "uidvalidity": view.uidvalidity, "uidnext": view.uidnext,
            "special_use": view.special_use, "subscribed": view.subscribed}


def status(info: StatusInfo, now: float) -> Json:
    """The running daemon, its queue and its store."""
    rt = info.runtime
    return {
        "pid": rt.pid, "started": timestamp(rt.started),
        "uptime": max(0, int(now - rt.started)), "workers": rt.workers,
        "listeners": [{"name": x.name, "protocol": x.protocol, "address": x.address,
                       "port": x.port, "tls": x.tls} for x in rt.listeners],
        "queue": {"messages": info.queue_messages,
                  "oldest_age": None if info.queue_oldest_age is None
                  else int(info.queue_oldest_age)},
        "connections": dict(sorted(info.connections.items())),
        "store": {"used": info.store_used, "map_size": info.store_map_size,
                  "fill": round(info.store_used / info.store_map_size, 4)
                  if info.store_map_size else 0.0},
    }


# -- JSON Schemas (OpenAPI 3.1 components) -----------------------------------------

_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_COUNT = {"type": "integer", "minimum": 0}
_TIME = {"type": "string", "format": "date-time"}


def _object(properties: dict[str, Any], description: str) -> Json:
    return {"type": "object", "description": description, "properties": properties,
            "required": list(properties), "additionalProperties": False}


SCHEMAS: dict[str, Json] = {
    "Domain": _object({
        "name": {**_STR, "description": "lower case, IDNA A-labels"},
        "configured": {**_BOOL, "description": "listed under domains in the configuration "
                       "file (cannot be deleted through the API)"},
    }, "A local domain."),
    "Account": _object({
        "address": {**_STR, "description": "the login name, local@domain"},
        "quota": {**_COUNT, "description": "octets; 0 = unlimited"},
        "used": {**_COUNT, "description": "octets stored across all mailboxes"},
        "disabled": {**_BOOL, "description": "cannot log in (mail is still delivered)"},
    }, "An account."),
    "Alias": _object({
        "address": {**_STR, "description": "local@domain, or @domain for a catch-all"},
        "target": {**_STR, "description": "the first target"},
        "targets": {"type": "array", "items": _STR, "description": "accounts, and "
                    "addresses elsewhere that mail is forwarded to (SRS, ARC)"},
    }, "An alias."),
    "QueueRecipient": _object({
        "address": _STR,
        "status": {"type": "string", "enum": list(RECIPIENT_STATES)},
        "attempts": _COUNT,
        "last_error": {**_STR, "description": "the last remote reply or our diagnosis"},
    }, "A recipient of a queued message."),
    "QueuedMessage": _object({
        "id": {**_STR, "description": "the queue id (opaque)"},
        "sender": {**_STR, "description": "the reverse-path; empty for a DSN"},
        "created": _TIME,
        "size": {**_COUNT, "description": "octets"},
        "attempts": {**_COUNT, "description": "delivery rounds so far"},
        "next_attempt": _TIME,
        "held": {**_BOOL, "description": "off the schedule until released (hold)"},
        "bounce": {"type": ["string", "null"], "description": "the reply every recipient "
                   "still to go fails with at the next round (a requested bounce); null: none"},
        "recipients": {"type": "array", "items": {"$ref": "#/components/schemas/QueueRecipient"}},
    }, "A message of the outbound queue."),
    "DnsRecord": _object({
        "name": {**_STR, "description": "owner name, without the final dot"},
        "type": _STR,
        "value": {**_STR, "description": "RDATA; for TXT the text, unquoted and unsplit"},
        "ttl": _COUNT,
        "zone_line": {**_STR, "description": "the record as a zone-file line"},
    }, "A DNS resource record to publish."),
    "DkimKey": _object({
        "domain": _STR,
        "selector": _STR,
        "algorithm": {"type": "string", "enum": ["rsa", "ed25519"]},
        "signing": {**_BOOL, "description": "the key signs outbound mail: it is not "
                    "retired and [dkim] algorithms in the configuration lists its algorithm"},
        "retired": {**_BOOL, "description": "rotated out: signs no more; keep its record "
                    "published until mail it signed has arrived, then delete the key"},
        "record": {"$ref": "#/components/schemas/DnsRecord"},
    }, "A DKIM signing key of a local domain (RFC 6376); the private key stays on the server."),
    "JunkStats": _object({
        "spam": {**_COUNT, "description": "messages the account trained as spam"},
        "ham": {**_COUNT, "description": "messages the account trained as ham"},
        "global_spam": _COUNT,
        "global_ham": _COUNT,
        "threshold": {"type": "number", "description": "the threshold that applies"},
        "arm": {"type": "string", "enum": ["own", "control", "candidate"],
                "description": "own: the account's own threshold; control: the configured "
                "one; candidate: the A/B comparison's candidate threshold"},
    }, "What the account's junk model (and the global one) learnt from, and its threshold."),
    "JunkTest": _object({
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "junk": _BOOL,
        "threshold": {"type": "number"},
        "features": {"type": "array", "items": _object({
            "feature": _STR, "probability": {"type": "number"}},
            "A feature and its spam probability.")},
    }, "How the account's junk filter scores a message."),
    "LimitCounter": _object({
        "window": {"type": "string", "enum": ["minute", "hour", "day"]},
        "kind": {**_STR, "description": "what is counted: ip or net (connections), msg, "
                 "rcpt, acct (messages of an account), ..."},
        "name": {**_STR, "description": "the IP address, network (a.b.c.0/24, x:y::/64) "
                 "or account"},
        "count": {"type": "number", "minimum": 0, "description": "the sliding estimate of "
                  "events in the window"},
    }, "A live abuse-limit counter of the daemon (shared by every worker)."),
    "LimitReset": _object({
        "name": _STR,
        "reset": {**_COUNT, "description": "how many counters were dropped"},
    }, "The counters of a name forgotten."),
    "Mailbox": _object({
        "name": {**_STR, "description": "UTF-8, levels separated by /"},
        "messages": _COUNT,
        "unseen": {**_COUNT, "description": "messages without \\Seen"},
        "size": {**_COUNT, "description": "octets"},
        "uidvalidity": _COUNT,
        "uidnext": _COUNT,
        "special_use": {"type": ["string", "null"],
                        "description": "RFC 6154 attribute (\\Sent, \\Junk, ...) or null"},
        "subscribed": _BOOL,
    }, "A mailbox of an account (IMAP STATUS figures)."),
    "Status": _object({
        "pid": {**_COUNT, "description": "the daemon's process id"},
        "started": _TIME,
        "uptime": {**_COUNT, "description": "seconds"},
        "workers": _COUNT,
        "listeners": {"type": "array", "items": _object({
            "name": _STR, "protocol": _STR, "address": _STR, "port": _COUNT, "tls": _STR,
        }, "A bound listener.")},
        "queue": _object({
            "messages": _COUNT,
            "oldest_age": {"type": ["integer", "null"], "minimum": 0,
                           "description": "seconds since the oldest was queued"},
        }, "The outbound queue."),
        "connections": {"type": "object", "additionalProperties": _COUNT,
                        "description": "connections open now by protocol (smtp, "
                        "submission, imap, http, ...), across every worker"},
        "store": _object({
            "used": {**_COUNT, "description": "octets of the LMDB map in use"},
            "map_size": {**_COUNT, "description": "octets"},
            "fill": {"type": "number", "minimum": 0, "description": "used / map_size"},
        }, "The store."),
    }, "The running daemon (mailserver status)."),
    "Problem": {
        "type": "object", "description": "Problem details (RFC 9457).",
        "properties": {"type": _STR, "title": _STR, "status": {"type": "integer"},
                       "detail": _STR, "instance": _STR},
        "required": ["type", "title", "status"],
    },
}
