"""The SMTP rules we had before stages existed, as stages (see ``stage.py``).

Each is a few lines with no I/O (plain ``def`` checks).  Order matters: it is
the order of the list ``app.build_stages`` makes, and it decides which reply
a command that breaks two rules gets:

    PathSyntax, SubmissionAuth, SenderOwnership, MessageSize, StoreRoom,
    RecipientLimit, Relay, KnownRecipient, ReceivedLoop

(and, on smtp listeners with ``checks.verify``, ``authentication.SenderAuthentication``).

RFC references sit on the lines they justify.
"""

from __future__ import annotations

import re
from typing import Protocol

from mailserver.checks.stage import ACCEPT, CheckContext, RecipientFacts, Verdict, refuse
from mailserver.errors import SmtpReply
from mailserver.protocol.smtp import replies
from mailserver.protocol.smtp.sender import from_addresses
from mailserver.protocol.smtp_address import has_control_characters

#: RCPT reply when the account is already at or over its quota: temporary,
#: space may be freed (RFC 5321 §4.5.3.1.10 treats a 552 at RCPT as 452 anyway).
MAILBOX_FULL = SmtpReply(452, "4.2.2", "Mailbox full, try again later")
#: DATA reply when a From: mailbox is not the user's (RFC 6409 §6.1; RFC 3463 5.7.1).
FROM_NOT_OWNED = SmtpReply(553, "5.7.1", "From: header address not owned by the authenticated user")
#: RCPT reply for an address literal (RFC 5321 §4.1.3) on submission: the
#: queue delivers by domain (MX lookup) only.
LITERAL_REFUSED = SmtpReply(550, "5.1.2", "Address literals are not accepted as destinations")
#: MAIL's SIZE= or the message itself over our limit (RFC 1870 §6.1, §6.3).
TOO_BIG = SmtpReply(552, "5.3.4", "Message size exceeds fixed maximum message size")


class Owners(Protocol):
    """Who an address belongs to: the account it resolves to (alias, +tag), or None."""

    async def recipient_account(self, address: str) -> str | None:
        """The account ``address`` (store form, see ``store_form``) delivers to, or None."""


def _ascii_domain(domain: str) -> str:
    """The domain as the store keys it: lower-case, IDNA A-labels (RFC 5891)."""
    domain = domain.lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def store_form(address: str) -> str:
    """``local@domain`` with the domain as the store keys it."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{_ascii_domain(domain)}"


class PathSyntax:
    """A path with a control character is a syntax error (RFC 5321 §4.1.2): it would
    end up in ``Return-Path:``/``Delivered-To:``."""

    name = "path_syntax"

    def check_mail(self, ctx: CheckContext) -> Verdict:
        """Refuse a reverse-path with a control character: 501 5.1.7."""
        if has_control_characters(ctx.mail_from or ""):
            return refuse(replies.BAD_SENDER_SYNTAX, "control character in path")
        return ACCEPT

    def check_rcpt(self, ctx: CheckContext, rcpt: RecipientFacts) -> Verdict:
        """Refuse a forward-path with a control character: 501 5.1.3."""
        if has_control_characters(rcpt.address):
            return refuse(replies.BAD_RCPT_SYNTAX, "control character in path")
        return ACCEPT


class SubmissionAuth:
    """On a submission listener the client must be authenticated (RFC 6409 §4.3)."""

    name = "submission_auth"

    def check_mail(self, ctx: CheckContext) -> Verdict:
        """Refuse MAIL on a submission listener before AUTH: 530 5.7.0 (RFC 4954 §6)."""
        if ctx.submission and ctx.auth_user is None:
            return refuse(replies.AUTH_REQUIRED, "not authenticated")
        return ACCEPT

    def check_data(self, ctx: CheckContext, content: bytes) -> Verdict:
        """The same at end of DATA, should a transaction ever get there unauthenticated."""
        if ctx.submission and ctx.auth_user is None:  # check_mail makes this unreachable
            return refuse(replies.AUTH_REQUIRED, "not authenticated")
        return ACCEPT


class SenderOwnership:
    """On submission the reverse-path and every ``From:`` mailbox must be the user's
    own: the account or an alias (or ``+tag`` form) resolving to it (RFC 6409 §6.1)."""

    name = "sender_ownership"

    def __init__(self, owners: Owners) -> None:
        self.owners = owners

    async def _owns(self, account: str, address: str) -> bool:
        if address in ("", "<>") or "@" not in address:
            return False  # the null path is nobody's
        owner = await self.owners.recipient_account(store_form(address))
        return owner is not None and owner.lower() == account.lower()

    async def check_mail(self, ctx: CheckContext) -> Verdict:
        """On submission, refuse a reverse-path not owned by the user: 553 5.7.1."""
        account = ctx.auth_user
        if not ctx.submission or account is None:
            return ACCEPT
        if not await self._owns(account, ctx.mail_from or ""):
            return refuse(replies.SENDER_NOT_OWNED, "sender not owned")
        return ACCEPT

    async def check_data(self, ctx: CheckContext, content: bytes) -> Verdict:
        """On submission, refuse a message whose ``From:`` has a mailbox not the user's: 553 5.7.1.

        ``content``: the message as received, bytes.
        """
        account = ctx.auth_user
        if not ctx.submission or account is None:
            return ACCEPT
        # A message without From: (RFC 5322 §3.6 requires one) claims no author:
        # accepted as is, like the MAIL FROM check it cannot impersonate anyone;
        # the queue leaves it unsigned (RFC 6376 §5.4 signs From).
        for address in from_addresses(content):
            if not await self._owns(account, address):
                return refuse(FROM_NOT_OWNED, FROM_NOT_OWNED.text)
        return ACCEPT


class MessageSize:
    """``max_size`` octets at most: MAIL's SIZE= estimate (RFC 1870 §6.1) and the
    content itself (§6.3; the DATA reader also stops storing past it)."""

    name = "message_size"

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size

    def check_mail(self, ctx: CheckContext) -> Verdict:
        """Refuse MAIL whose SIZE= (octets) is over ``max_size``: 552 5.3.4 (RFC 1870 §6.1)."""
        size = ctx.mail_size
        if self.max_size and size is not None and size > self.max_size:
            return refuse(TOO_BIG, "declared size over the limit")
        return ACCEPT

    def check_data(self, ctx: CheckContext, content: bytes) -> Verdict:
        """Refuse a message of more than ``max_size`` octets: 552 5.3.4 (RFC 1870 §6.3)."""
        if self.max_size and len(content) > self.max_size:
            return refuse(TOO_BIG, "message over the size limit")
        return ACCEPT


#: MAIL reply while the store is above its new-mail limit (RFC 5321 §4.3.2
#: allows 452 to MAIL; RFC 1870 §6.1 for a SIZE= that does not fit now;
#: RFC 3463 X.3.1 "mail system full").  The same reply as at end of DATA.
STORE_FULL = SmtpReply(452, "4.3.1", "Insufficient system storage, try again later")


class Room(Protocol):
    """The store's headroom (``store.headroom.Headroom``)."""

    def has_room(self, octets: int = 0) -> bool:
        """Whether ``octets`` more of new mail fit below the new-mail limit now."""


class StoreRoom:
    """Refuse MAIL while the store has no room for the message (its SIZE=,
    else a small one): the client learns it before it sends the content,
    which DATA would refuse anyway (``store/headroom.py``)."""

    name = "store_room"

    def __init__(self, room: Room) -> None:
        self.room = room

    def check_mail(self, ctx: CheckContext) -> Verdict:
        """452 4.3.1 when the store is above its new-mail limit."""
        if not self.room.has_room(ctx.mail_size or 0):
            return refuse(STORE_FULL, "store above its new-mail limit")
        return ACCEPT


class RecipientLimit:
    """At most ``max_recipients`` per transaction (RFC 5321 §4.5.3.1.8: 452 4.5.3)."""

    name = "recipient_limit"

    def __init__(self, max_recipients: int) -> None:
        self.max_recipients = max_recipients

    def check_rcpt(self, ctx: CheckContext, rcpt: RecipientFacts) -> Verdict:
        """Refuse the recipient past ``max_recipients``: 452 4.5.3."""
        if ctx.rcpt_count >= self.max_recipients:
            return refuse(replies.TOO_MANY_RCPTS, "too many recipients")
        return ACCEPT


class Relay:
    """No open relay (RFC 5321 §3.6.2): other domains only for an authenticated
    submission client, only when there is an outbound queue, and never to an
    address literal (the queue routes by MX)."""

    name = "relay"

    def __init__(self, *, outbound: bool) -> None:
        self.outbound = outbound

    def check_rcpt(self, ctx: CheckContext, rcpt: RecipientFacts) -> Verdict:
        """Refuse a remote forward-path unless the client may relay (550 5.7.1), there
        is an outbound queue (451 4.3.0), and it is no address literal (550 5.1.2).
        """
        if not rcpt.domain or rcpt.local_domain:
            return ACCEPT
        if not (ctx.submission and ctx.auth_user is not None):
            return refuse(replies.RELAY_DENIED, "relay denied")
        if not self.outbound:
            return refuse(replies.NO_OUTBOUND, "no outbound queue")
        if rcpt.domain.startswith("["):
            return refuse(LITERAL_REFUSED, "address literal")
        return ACCEPT


class KnownRecipient:
    """A local forward-path must name an account or alias with room left."""

    name = "known_recipient"

    def check_rcpt(self, ctx: CheckContext, rcpt: RecipientFacts) -> Verdict:
        """Refuse an unknown local recipient (550 5.1.1) or a full account's (452 4.2.2)."""
        if rcpt.domain and not rcpt.local_domain:
            return ACCEPT  # remote: the relay stage's business
        if rcpt.account is None and not rcpt.forwards:
            return refuse(replies.RCPT_UNKNOWN, "no such user")
        if rcpt.full:
            return refuse(MAILBOX_FULL, "mailbox full")
        return ACCEPT


#: RFC 5321 §6.3 / RFC 3463 5.4.6: the message has passed through too many hops.
LOOP_DETECTED = SmtpReply(554, "5.4.6", "Too many Received: fields, mail loop suspected")

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_RECEIVED = re.compile(rb"^Received[ \t]*:", re.IGNORECASE | re.MULTILINE)


def received_count(content: bytes) -> int:
    """How many ``Received:`` fields (RFC 5321 §4.4) the header section holds."""
    m = _HEADER_END.search(content)
    head = content[: m.start() + 1] if m else content
    if head[:1] in (b"\r", b"\n"):
        return 0
    return len(_RECEIVED.findall(head))


class ReceivedLoop:
    """More than ``max_received`` ``Received:`` fields is a loop (RFC 5321 §6.3:
    a simple hop count is the usual detection): ``554 5.4.6``."""

    name = "received_loop"

    def __init__(self, max_received: int) -> None:
        self.max_received = max_received

    def check_data(self, ctx: CheckContext, content: bytes) -> Verdict:
        """``554 5.4.6`` when the message (bytes) has more Received: fields than
        ``max_received`` (RFC 5321 §6.3)."""
        if received_count(content) > self.max_received:
            return refuse(LOOP_DETECTED, "mail loop: too many Received fields")
        return ACCEPT
