"""Our exception hierarchy, and the one place it is mapped to protocol replies.

Three kinds, after mox:

* ``UserError`` — the client asked for something that cannot be done
  (no such mailbox, over quota).  IMAP: tagged ``NO [CODE]``; SMTP: the 4xx/5xx
  reply the subclass names.
* ``ProtocolSyntaxError`` — the client's bytes do not parse.  IMAP: tagged ``BAD``
  (or untagged ``BAD`` when there is no tag); SMTP: ``500``/``501``.
* anything else — our fault.  IMAP: ``NO [SERVERBUG]`` and a logged traceback;
  SMTP: ``451 4.3.0`` and a logged traceback.

Only pure Python here: the protocol packages import it.
"""

from __future__ import annotations

from dataclasses import dataclass


class MailserverError(Exception):
    """Base of every exception we raise on purpose."""


class ConfigError(MailserverError):
    """The configuration file is unreadable or invalid; the message names file, key and problem."""


class StoreNotFound(MailserverError):
    """There is no store in the data directory (``Store.open(create=False)``).

    ``data_dir`` is the directory looked in (the store would be its ``store/``).
    """

    def __init__(self, data_dir: object) -> None:
        super().__init__(f"no store at {data_dir}")
        self.data_dir = data_dir


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """An SMTP reply: basic code (RFC 5321 §4.2), enhanced code (RFC 3463), text."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


class UserError(MailserverError):
    """A request that is well-formed but cannot be honoured.

    ``imap_code`` is the RFC 5530 response code sent as ``NO [CODE] text``
    (``None`` for none); ``smtp`` is the reply an SMTP session sends.
    """

    imap_code: str | None = None
    smtp: SmtpReply = SmtpReply(550, "5.0.0", "Requested action not taken")

    def __init__(self, text: str = "", *, imap_code: str | None = None) -> None:
        super().__init__(text or self.__class__.__doc__ or self.__class__.__name__)
        if imap_code is not None:
            self.imap_code = imap_code

    @property
    def text(self) -> str:
        return str(self.args[0])


class NotFound(UserError):
    """No such object."""

    imap_code = "NONEXISTENT"


class MailboxNotFound(NotFound):
    """Mailbox does not exist"""


class AccountNotFound(NotFound):
    """No such account"""

    smtp = SmtpReply(550, "5.1.1", "No such user here")


class DomainNotFound(NotFound):
    """No such domain"""


class AlreadyExists(UserError):
    """Already exists"""

    imap_code = "ALREADYEXISTS"


class InvalidName(UserError):
    """Invalid name"""

    imap_code = "CANNOT"


class InvalidPassword(UserError):
    """The password does not meet the password policy (``admin/policy.py``)"""

    imap_code = "CANNOT"


class QuotaExceeded(UserError):
    """Quota exceeded"""

    imap_code = "OVERQUOTA"
    smtp = SmtpReply(552, "5.2.2", "Mailbox full")


class TooBig(UserError):
    """Message too big"""

    imap_code = "TOOBIG"
    smtp = SmtpReply(552, "5.3.4", "Message size exceeds fixed limit")


class Cannot(UserError):
    """Operation not possible"""

    imap_code = "CANNOT"


class AuthenticationFailed(UserError):
    """Authentication failed (wrong credentials, or a SASL exchange that did
    not verify): IMAP ``NO [AUTHENTICATIONFAILED]`` (RFC 5530), SMTP ``535
    5.7.8`` (RFC 4954 §6)."""

    imap_code = "AUTHENTICATIONFAILED"
    smtp = SmtpReply(535, "5.7.8", "Authentication credentials invalid")


class TemporaryFailure(MailserverError):
    """A transient failure the peer should retry (SMTP 4xx, IMAP NO [UNAVAILABLE])."""

    smtp = SmtpReply(451, "4.3.0", "Temporary failure, try again later")


class ProtocolSyntaxError(MailserverError):
    """The peer's bytes do not follow the grammar (IMAP BAD, SMTP 500/501).

    ``tag`` is the IMAP tag when one could be read (``None`` otherwise), so the
    reply can be tagged BAD; ``fatal`` means the connection cannot continue
    (e.g. an over-long line whose end we cannot find) and should be closed
    after the reply (RFC 3501 §7.1.5 BYE).
    """

    #: The SMTP reply, when not the default ``501 5.5.4`` (a subclass sets it).
    smtp: SmtpReply | None = None

    def __init__(self, text: str, *, tag: str | None = None, fatal: bool = False) -> None:
        super().__init__(text)
        self.tag = tag
        self.fatal = fatal

    @property
    def text(self) -> str:
        return str(self.args[0])


def imap_status(exc: BaseException) -> tuple[str, str | None, str]:
    """Map an exception to an IMAP tagged status: ``(status, response code, text)``.

    ``status`` is ``"BAD"`` or ``"NO"``; the response code (RFC 5530) may be ``None``.
    Unexpected exceptions give ``NO [SERVERBUG]``; the caller logs their traceback.
    """
    if isinstance(exc, ProtocolSyntaxError):
        return "BAD", None, exc.text
    if isinstance(exc, UserError):
        return "NO", exc.imap_code, exc.text
    if isinstance(exc, TemporaryFailure):
        return "NO", "UNAVAILABLE", str(exc) or "Temporary failure"
    return "NO", "SERVERBUG", "Internal error, the incident has been logged"


def smtp_reply(exc: BaseException) -> SmtpReply:
    """Map an exception to the SMTP reply to send (RFC 5321 §4.2, RFC 3463 codes).

    Unexpected exceptions give ``451 4.3.0``; the caller logs their traceback.
    """
    if isinstance(exc, ProtocolSyntaxError):
        return exc.smtp or SmtpReply(501, "5.5.4", exc.text)
    if isinstance(exc, UserError):
        return exc.smtp if exc.text == (type(exc).__doc__ or "") else SmtpReply(
            exc.smtp.code, exc.smtp.enhanced, exc.text
        )
    if isinstance(exc, TemporaryFailure):
        return exc.smtp
    return TemporaryFailure.smtp
