"""QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT, SETQUOTA.

Design notes
------------
* One quota per account (``Account.quota``, octets, 0 = none) over all its
  mailboxes, so an account with a quota has exactly one quota root, named
  ``""`` (RFC 9208 §3.2 lets the server name roots), governing every mailbox.
  An account without a quota has no quota root: GETQUOTAROOT lists none and
  GETQUOTA ``""`` is ``NO [NONEXISTENT]`` (a ``quota-list`` cannot be empty,
  §7).
* The one resource is STORAGE (§5.1.1), in units of 1024 octets: usage
  rounded up (a 1-octet mailbox is not empty), limit rounded down (never
  promise room the store would refuse).
* Quotas are set by the administrator (``mailserver user ... --quota``):
  SETQUOTA parses but is refused with ``NO [NOPERM]`` and QUOTASET is not
  advertised (§4.1.3).
* Enforcement is the store's: APPEND, COPY and MOVE over the limit fail with
  ``QuotaExceeded``, i.e. ``NO [OVERQUOTA]`` (§4.1.4 / RFC 5530), and SMTP
  delivery with 552 5.2.2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserver.errors import NotFound, UserError
from mailserver.imap.state import TaggedOk
from mailserver.protocol.imap.quota import quota_response, quotaroot_response
from mailserver.protocol.imap.types import Command, QuotaArgs
from mailserver.store.model import Account

if TYPE_CHECKING:
    from mailserver.imap.session import ImapSession

#: The name of an account's quota root.
ROOT = ""
_KIB = 1024


def storage(account: Account) -> tuple[str, int, int]:
    """``("STORAGE", usage, limit)`` in units of 1024 octets (RFC 9208 §5.1.1)."""
    return ("STORAGE", -(-account.used // _KIB), account.quota // _KIB)


def _account(session: ImapSession) -> Account:
    assert session.user is not None
    acc = session.store.get_account(session.user)
    if acc is None:  # deleted while logged in
        raise NotFound("No such account")
    return acc


async def getquotaroot(session: ImapSession, cmd: Command) -> TaggedOk:
    """GETQUOTAROOT mailbox (RFC 9208 §4.3): ``* QUOTAROOT`` with the roots
    of the mailbox, then ``* QUOTA`` for each.  ``NO [NONEXISTENT]`` when
    the mailbox does not exist."""
    args = cmd.args
    assert isinstance(args, QuotaArgs) and args.mailbox is not None
    assert session.user is not None
    info = session.store.get_mailbox(session.user, args.mailbox)  # MailboxNotFound
    acc = _account(session)
    roots = [ROOT] if acc.quota > 0 else []
    session.write(quotaroot_response(info.name, roots, utf8=session.utf8))
    for root in roots:
        session.write(quota_response(root, [storage(acc)]))
    return TaggedOk("GETQUOTAROOT completed")


async def getquota(session: ImapSession, cmd: Command) -> TaggedOk:
    """GETQUOTA root (RFC 9208 §4.2): ``* QUOTA root (STORAGE used limit)``."""
    args = cmd.args
    assert isinstance(args, QuotaArgs) and args.root is not None
    acc = _account(session)
    if args.root != ROOT or acc.quota <= 0:
        raise NotFound("No such quota root")
    session.write(quota_response(ROOT, [storage(acc)]))
    return TaggedOk("GETQUOTA completed")


async def setquota(session: ImapSession, cmd: Command) -> TaggedOk:
    """SETQUOTA (RFC 9208 §4.1.3): refused, quotas are the administrator's."""
    raise UserError("Quotas are set by the administrator", imap_code="NOPERM")
