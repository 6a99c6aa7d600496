"""QUOTA (RFC 9208): command grammar and responses.  Pure code, stdlib only.

::

    getquota        = "GETQUOTA" SP quota-root-name
    getquotaroot    = "GETQUOTAROOT" SP mailbox
    setquota        = "SETQUOTA" SP quota-root-name SP setquota-list
    setquota-list   = "(" [setquota-resource *(SP setquota-resource)] ")"
    setquota-resource = resource-name SP number64
    quota-root-name = astring
    resource-name   = "STORAGE" / "MESSAGE" / "MAILBOX" / "ANNOTATION-STORAGE" /
                      resource-name-ext          ; resource-name-ext = atom
    quota-response  = "QUOTA" SP quota-root-name SP quota-list
    quota-list      = "(" quota-resource *(SP quota-resource) ")"
    quota-resource  = resource-name SP resource-usage SP resource-limit
    quotaroot-response = "QUOTAROOT" SP mailbox *(SP quota-root-name)

(RFC 9208 §7.)  Usage and limit are ``number64``.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailserver.protocol.imap.response import astring, mailbox_name
from mailserver.protocol.imap.tokens import MAX_NUMBER64, Cursor
from mailserver.protocol.imap.types import QuotaArgs

_MAX_RESOURCES = 16


def getquota_args(cur: Cursor, uid: bool) -> QuotaArgs:
    """``GETQUOTA SP quota-root-name``"""
    cur.sp()
    return QuotaArgs(root=cur.astr())


def getquotaroot_args(cur: Cursor, uid: bool) -> QuotaArgs:
    """``GETQUOTAROOT SP mailbox``"""
    cur.sp()
    return QuotaArgs(mailbox=cur.mailbox())


def setquota_args(cur: Cursor, uid: bool) -> QuotaArgs:
    """``SETQUOTA SP quota-root-name SP setquota-list``"""
    cur.sp()
    root = cur.astr()
    cur.sp()
    cur.open_paren()
    limits: list[tuple[str, int]] = []
    if not cur.close_paren():
        while True:
            name = cur.keyword()
            cur.sp()
            limits.append((name, cur.number(MAX_NUMBER64, "resource limit")))
            if len(limits) > _MAX_RESOURCES:
                raise cur.error("Too many quota resources")
            if cur.close_paren():
                break
            cur.sp()
    return QuotaArgs(root=root, limits=tuple(limits))


def quota_response(root: str, resources: Sequence[tuple[str, int, int]]) -> bytes:
    """``* QUOTA root (NAME usage limit ...)`` (RFC 9208 §5.1); ``resources``
    are (name, usage, limit) and must not be empty (``quota-list`` has one
    at least)."""
    if not resources:
        raise ValueError("a QUOTA response needs at least one resource")
    items = b" ".join(b"%s %d %d" % (name.encode("ascii"), used, limit)
                      for name, used, limit in resources)
    return b"* QUOTA " + astring(root) + b" (" + items + b")\r\n"


def quotaroot_response(mailbox: str, roots: Sequence[str], *, utf8: bool = False) -> bytes:
    """``* QUOTAROOT mailbox root...`` (RFC 9208 §5.2); the mailbox name in
    modified UTF-7, or UTF-8 when ``utf8`` (RFC 6855 §3)."""
    out = b"* QUOTAROOT " + mailbox_name(mailbox, utf8)
    for root in roots:
        out += b" " + astring(root)
    return out + b"\r\n"
