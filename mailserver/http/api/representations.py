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
    return {"address": info.address, "target": info.target}


def _recipient(r: QueueRecipient) -> Json:
    return {"address": r.address, "status": r.status, "attempts": r.attempts,
            "last_error": r.last_error}


def queued(entry: QueueEntry) -> Json:
    """A message of the outbound queue, with its recipients."""
    return {"id": entry.id, "sender": entry.sender, "created": timestamp(entry.created),
            "size": entry.size, "attempts": entry.attempts,
            "next_attempt": timestamp(entry.next_attempt),
            "recipients": [_recipient(r) for r in entry.recipients]}


def dns_record(record: DnsRecord) -> Json:
    """A resource record to publish, with its zone-file line."""
    return {"name": record.name, "type": record.type, "value": record.value,
            "ttl": record.ttl, "zone_line": record.zone_line()}


def dkim_key(key: DkimKeyInfo) -> Json:
    """A DKIM key (the private key never leaves the server)."""
    return {"domain": key.domain, "selector": key.selector, "algorithm": key.algorithm,
            "signing": key.signing, "record": dns_record(key.record)}


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
        "target": {**_STR, "description": "an account address"},
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
        "signing": {**_BOOL, "description": "[dkim] algorithms in the configuration lists "
                    "the key's algorithm (keys are read at the daemon's start)"},
        "record": {"$ref": "#/components/schemas/DnsRecord"},
    }, "A DKIM signing key of a local domain (RFC 6376); the private key stays on the server."),
    "Problem": {
        "type": "object", "description": "Problem details (RFC 9457).",
        "properties": {"type": _STR, "title": _STR, "status": {"type": "integer"},
                       "detail": _STR, "instance": _STR},
        "required": ["type", "title", "status"],
    },
}
