"""Write requests on mailboxes (RFC 3501 §6.3.3-§6.3.7), run by the writer thread.

A mailbox has a store-wide id that is never reused; the name index maps
``(account, name)`` to it.  RENAME rewrites names only, so a session that has
a renamed mailbox selected keeps working.  DELETE retires the id (its
messages, MODSEQ index and expunge log go), except when the mailbox has
children: then it stays as a ``noselect`` level (RFC 3501 §6.3.4) with its
messages expunged, and a later CREATE of that name retires it and starts a
fresh id and UIDVALIDITY.
"""

from __future__ import annotations

from dataclasses import replace

from mailserver.errors import AccountNotFound, AlreadyExists, Cannot, MailboxNotFound
from mailserver.store import keys, tx
from mailserver.store.messages import _Batch, purge_mailbox
from mailserver.store.model import DEFAULT_MAILBOXES, DELIMITER, MailboxInfo
from mailserver.store.names import normalize_address, normalize_mailbox, parents
from mailserver.store.writer import WriteCtx


def _new_mailbox(
    ctx: WriteCtx, account: str, name: str, *, special_use: str | None, subscribed: bool
) -> MailboxInfo:
    txn, dbs = ctx.txn, ctx.dbs
    mb = MailboxInfo(
        id=tx.next_mailbox_id(txn, dbs),
        account=account,
        name=name,
        uidvalidity=tx.new_uidvalidity(txn, dbs),
        uidnext=1,
        # RFC 7162 §3.1.1: mod-sequences are positive; the first change gets 2.
        highestmodseq=1,
        messages=0,
        size=0,
        subscribed=subscribed,
        special_use=special_use,
    )
    tx.put_mailbox(txn, dbs, mb)
    tx.put_mailbox_name(txn, dbs, mb)
    ctx.changed.add(mb.id)
    return mb


def _retire(ctx: WriteCtx, mb: MailboxInfo) -> None:
    """Remove the mailbox id and everything keyed by it, and its name entry.
    A subscription outlives it (``keys.gone_sub_key``, RFC 3501 §6.3.6)."""
    if mb.subscribed:
        ctx.txn.put(keys.gone_sub_key(mb.account, mb.name), b"", db=ctx.dbs.meta)
    purge_mailbox(ctx, mb, keep_log=False)
    ctx.txn.delete(keys.mailbox_key(mb.id), db=ctx.dbs.mailboxes)
    ctx.txn.delete(keys.mbname_key(mb.account, mb.name), db=ctx.dbs.mbnames)


def _ensure_parents(ctx: WriteCtx, account: str, name: str) -> None:
    for parent in parents(name):
        if tx.mailbox_id_by_name(ctx.txn, ctx.dbs, account, parent) is None:
            _new_mailbox(ctx, account, parent, special_use=None, subscribed=False)


def _has_children(ctx: WriteCtx, account: str, name: str) -> bool:
    prefix = keys.mbname_key(account, name + DELIMITER)
    cur = ctx.txn.cursor(db=ctx.dbs.mbnames)
    return bool(cur.set_range(prefix)) and cur.key().startswith(prefix)


def create_defaults(ctx: WriteCtx, account: str) -> None:
    """The mailboxes every account starts with, subscribed, with RFC 6154 attributes."""
    for name, special in DEFAULT_MAILBOXES:
        _new_mailbox(ctx, account, name, special_use=special, subscribed=True)


def create(ctx: WriteCtx, account: str, name: str, special_use: str | None) -> MailboxInfo:
    """RFC 3501 §6.3.3 CREATE; missing superior levels are created too."""
    account = normalize_address(account)
    name = normalize_mailbox(name)
    tx.require_account(ctx.txn, ctx.dbs, account)
    mbid = tx.mailbox_id_by_name(ctx.txn, ctx.dbs, account, name)
    if mbid is not None:
        old = tx.require_mailbox_id(ctx.txn, ctx.dbs, mbid)
        if not old.noselect:
            raise AlreadyExists(f"mailbox {name!r} already exists")
        _retire(ctx, old)
    _ensure_parents(ctx, account, name)
    # A name still subscribed from a deleted mailbox is subscribed again.
    subscribed = ctx.txn.delete(keys.gone_sub_key(account, name), db=ctx.dbs.meta)
    return _new_mailbox(ctx, account, name, special_use=special_use, subscribed=subscribed)


def delete(ctx: WriteCtx, account: str, name: str) -> None:
    """RFC 3501 §6.3.4 DELETE."""
    account = normalize_address(account)
    name = normalize_mailbox(name)
    if name == "INBOX":
        raise Cannot("INBOX cannot be deleted")
    mb = tx.mailbox_by_name(ctx.txn, ctx.dbs, account, name)
    if _has_children(ctx, account, name):
        if mb.noselect:
            raise Cannot(f"{name!r} has inferior mailboxes")
        purge_mailbox(ctx, mb, keep_log=True)
        mb = tx.require_mailbox_id(ctx.txn, ctx.dbs, mb.id)
        tx.put_mailbox(ctx.txn, ctx.dbs, replace(mb, noselect=True, special_use=None))
        ctx.changed.add(mb.id)
        return
    _retire(ctx, mb)


def rename(ctx: WriteCtx, account: str, old: str, new: str) -> None:
    """RFC 3501 §6.3.5 RENAME, children included; INBOX is special (see ``_rename_inbox``)."""
    account = normalize_address(account)
    old = normalize_mailbox(old)
    new = normalize_mailbox(new)
    txn, dbs = ctx.txn, ctx.dbs
    mb = tx.mailbox_by_name(txn, dbs, account, old)
    if tx.mailbox_id_by_name(txn, dbs, account, new) is not None:
        raise AlreadyExists(f"mailbox {new!r} already exists")
    if old == "INBOX":
        _rename_inbox(ctx, mb, new)
        return
    if new.startswith(old + DELIMITER):
        raise Cannot("cannot rename a mailbox into its own hierarchy")
    moving = [(old, mb.id)] + [
        (n, i)
        for n, i in tx.iter_account_mailboxes(txn, dbs, account)
        if n.startswith(old + DELIMITER)
    ]
    renamed = [(n, new + n[len(old) :], i) for n, i in moving]
    for _, target, _ in renamed:
        if tx.mailbox_id_by_name(txn, dbs, account, target) is not None:
            raise AlreadyExists(f"mailbox {target!r} already exists")
    for name, _, _ in renamed:
        txn.delete(keys.mbname_key(account, name), db=dbs.mbnames)
    for _, target, mbid in renamed:
        rec = replace(tx.require_mailbox_id(txn, dbs, mbid), name=target)
        tx.put_mailbox(txn, dbs, rec)
        tx.put_mailbox_name(txn, dbs, rec)
        ctx.changed.add(mbid)
    _ensure_parents(ctx, account, new)


def _rename_inbox(ctx: WriteCtx, inbox: MailboxInfo, new: str) -> None:
    """RFC 3501 §6.3.5: renaming INBOX moves all its messages to a new mailbox
    and leaves INBOX (same id, same UIDVALIDITY) empty; INBOX's children stay.

    The new mailbox gets a fresh UIDVALIDITY, so the messages keep their UIDs.
    """
    _ensure_parents(ctx, inbox.account, new)
    dest = _new_mailbox(
        ctx, inbox.account, new, special_use=None, subscribed=inbox.subscribed
    )
    batch = _Batch(ctx)
    for rec in tx.list_messages(ctx.txn, ctx.dbs, inbox.id):
        batch.add(dest, rec, keep_uid=True)
        batch.remove(inbox, rec, drop_blob=False)
    batch.finish()


def set_subscribed(ctx: WriteCtx, account: str, name: str, subscribed: bool) -> None:
    """RFC 3501 §6.3.6/§6.3.7 SUBSCRIBE/UNSUBSCRIBE of an existing mailbox;
    UNSUBSCRIBE also of a subscription whose mailbox is gone."""
    account = normalize_address(account)
    name = normalize_mailbox(name)
    try:
        mb = tx.mailbox_by_name(ctx.txn, ctx.dbs, account, name)
    except MailboxNotFound:
        if tx.get_account(ctx.txn, ctx.dbs, account) is None:
            raise AccountNotFound(f"no account {account}") from None
        if not subscribed and ctx.txn.delete(keys.gone_sub_key(account, name), db=ctx.dbs.meta):
            return
        raise
    if mb.subscribed != subscribed:
        tx.put_mailbox(ctx.txn, ctx.dbs, replace(mb, subscribed=subscribed))
