"""Our exception hierarchy, and the one place it is mapped to protocol replies.

Three kinds, after mox:

* ``UserError`` — the client asked for something that cannot be done
  (no such mailbox, over quota).  IMAP: tagged ``NO [CODE]``; SMTP: the 4xx/5xx
  reply the subclass names.
* ``ProtocolSyntaxError`` — the client's bytes do not parse.  IMAP: tagged ``BAD``
  (or untagged ``BAD`` when there is no tag); SMTP: ``500``/``501``.
* anything else — our fault.  IMAP: ``NO [SERVERBUG]`` and a logged traceback;
  SMTP: ``451 4.3.0`` and a logged traceback.

The HTTP API answers every error as a problem details object (RFC 9457):
each class names its ``http`` problem (status and a stable ``type`` slug,
``http_problem``), and ``ApiError`` holds the refusals only HTTP has (no
token, read-only token, ``If-Match`` mismatch, a body that does not parse).

Only pure Python here: the protocol packages import it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HttpProblem:
    """The problem type (RFC 9457 §3.1) an error is answered with over HTTP.

    ``slug`` names it for good: the ``type`` member is ``PROBLEM_BASE + slug``
    (a relative reference, RFC 9457 §3.1.1, resolved against the request's
    URL to a page that describes it); ``title`` is its short summary, the
    same for every occurrence (§3.1.3).  Slugs are never reused or renamed
    (the API's compatibility policy, README).
    """

    status: int
    slug: str
    title: str

    @property
    def type(self) -> str:
        """The ``type`` member: ``/api/v1/problems/<slug>``."""
        return PROBLEM_BASE + self.slug


#: Where the problem types live (``HttpProblem.type``).
PROBLEM_BASE = "/api/v1/problems/"


class MailserverError(Exception):
    """Base of every exception we raise on purpose."""


class ConfigError(MailserverError):
    """The configuration file is unreadable or invalid; the message names file, key and problem."""

    http = HttpProblem(409, "config-error", "The server's configuration stands in the way")


class StoreNotFound(MailserverError):
    """There is no store in the data directory (``Store.open(create=False)``).

    ``data_dir`` is the directory looked in (the store would be its ``store/``).
    """

    def __init__(self, data_dir: object) -> None:
        super().__init__(f"no store at {data_dir}")
        self.data_dir = data_dir

    http = HttpProblem(503, "store-not-found", "There is no store")


class StoreUnavailable(MailserverError):
    """The store cannot be opened or reached (the PostgreSQL store's schema,
    durability or connection); the message says what to do."""

    http = HttpProblem(503, "store-unavailable", "The store cannot be reached")


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
    http = HttpProblem(422, "refused", "Request refused")

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
    http = HttpProblem(404, "not-found", "No such object")


class MailboxNotFound(NotFound):
    """Mailbox does not exist"""

    http = HttpProblem(404, "mailbox-not-found", "No such mailbox")


class AccountNotFound(NotFound):
    """No such account"""

    smtp = SmtpReply(550, "5.1.1", "No such user here")
    http = HttpProblem(404, "account-not-found", "No such account")


class DomainNotFound(NotFound):
    """No such domain"""

    http = HttpProblem(404, "domain-not-found", "No such local domain")


class AlreadyExists(UserError):
    """Already exists"""

    imap_code = "ALREADYEXISTS"
    http = HttpProblem(409, "already-exists", "Already exists")


class InvalidName(UserError):
    """Invalid name"""

    imap_code = "CANNOT"
    http = HttpProblem(422, "invalid-name", "Invalid name")


class InvalidPassword(UserError):
    """The password does not meet the password policy (``admin/policy.py``)"""

    imap_code = "CANNOT"
    http = HttpProblem(422, "invalid-password", "The password does not meet the policy")


class QuotaExceeded(UserError):
    """Quota exceeded"""

    imap_code = "OVERQUOTA"
    smtp = SmtpReply(552, "5.2.2", "Mailbox full")
    http = HttpProblem(507, "quota-exceeded", "Quota exceeded")  # RFC 4918 §11.5


class TooBig(UserError):
    """Message too big"""

    imap_code = "TOOBIG"
    smtp = SmtpReply(552, "5.3.4", "Message size exceeds fixed limit")
    http = HttpProblem(413, "too-big", "Too big")


class Cannot(UserError):
    """Operation not possible"""

    imap_code = "CANNOT"
    http = HttpProblem(409, "cannot", "Operation not possible in the present state")


class AuthenticationFailed(UserError):
    """Authentication failed (wrong credentials, or a SASL exchange that did
    not verify): IMAP ``NO [AUTHENTICATIONFAILED]`` (RFC 5530), SMTP ``535
    5.7.8`` (RFC 4954 §6)."""

    imap_code = "AUTHENTICATIONFAILED"
    smtp = SmtpReply(535, "5.7.8", "Authentication credentials invalid")


class TemporaryFailure(MailserverError):
    """A transient failure the peer should retry (SMTP 4xx, IMAP NO [UNAVAILABLE]).

    ``imap_code``: the RFC 5530 response code of the tagged NO (a subclass may
    name another, e.g. the full store's ``OVERQUOTA``)."""

    imap_code = "UNAVAILABLE"
    smtp = SmtpReply(451, "4.3.0", "Temporary failure, try again later")
    http = HttpProblem(503, "temporary-failure", "Temporary failure, try again later")


class ProtocolSyntaxError(MailserverError):
    """The peer's bytes do not follow the grammar (IMAP BAD, SMTP 500/501).

    ``tag`` is the IMAP tag when one could be read (``None`` otherwise), so the
    reply can be tagged BAD; ``fatal`` means the connection cannot continue
    (e.g. an over-long line whose end we cannot find) and should be closed
    after the reply (RFC 3501 §7.1.5 BYE).
    """

    #: The SMTP reply, when not the default ``501 5.5.4`` (a subclass sets it).
    smtp: SmtpReply | None = None
    http = HttpProblem(400, "syntax-error", "Syntax error")

    def __init__(self, text: str, *, tag: str | None = None, fatal: bool = False) -> None:
        super().__init__(text)
        self.tag = tag
        self.fatal = fatal

    @property
    def text(self) -> str:
        return str(self.args[0])


class ApiError(MailserverError):
    """A request to the HTTP API refused before the admin service sees it.

    ``text`` is the ``detail`` member (RFC 9457 §3.1.4); ``headers`` go with
    the response (``WWW-Authenticate`` on a 401, RFC 9110 §11.6.1).
    """

    http = HttpProblem(400, "invalid-request", "Invalid request")

    def __init__(self, text: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.headers = dict(headers or {})

    @property
    def text(self) -> str:
        """The detail: what exactly was wrong."""
        return str(self.args[0])


class InvalidRequest(ApiError):
    """The request's parameters or body do not follow the API's schema."""


class InvalidCursor(ApiError):
    """A ``cursor`` parameter this server did not hand out."""

    http = HttpProblem(400, "invalid-cursor", "Invalid pagination cursor")


class UnsupportedMediaType(ApiError):
    """A body that is not JSON (RFC 9110 §15.5.16)."""

    http = HttpProblem(415, "unsupported-media-type", "The body must be application/json")


class Unauthorized(ApiError):
    """No bearer token, or one this server does not know (RFC 6750 §3.1)."""

    http = HttpProblem(401, "unauthorized", "A valid bearer token is required")


class Forbidden(ApiError):
    """A read-only token used for a change (RFC 6750 §3.1 ``insufficient_scope``)."""

    http = HttpProblem(403, "read-only-token", "The token may only read")


class PreconditionFailed(ApiError):
    """``If-Match`` names none of the resource's current entity tags (RFC 9110 §13.1.1)."""

    http = HttpProblem(412, "etag-mismatch", "The resource has changed")


#: What an unexpected exception is answered with (the traceback goes to the log).
INTERNAL_ERROR = HttpProblem(500, "internal-error", "Internal server error")


def http_problem(exc: BaseException) -> HttpProblem:
    """Map an exception to its HTTP problem type (status, stable ``type``, title).

    Our errors carry their own (``http``, the most specific class wins);
    anything else, a bare ``MailserverError`` included ("store is closed"), is
    ``INTERNAL_ERROR``: the caller logs the traceback and shows no detail.
    """
    problem = getattr(type(exc), "http", None)
    return problem if isinstance(problem, HttpProblem) else INTERNAL_ERROR


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
        return "NO", exc.imap_code, str(exc) or "Temporary failure"
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
