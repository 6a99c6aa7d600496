"""One SMTP mail transaction's state (RFC 5321 §3.3): what MAIL, RCPT and DATA built.

The envelope (reverse-path, forward-paths, content: aiosmtpd's class) plus what our
stages resolved: local accounts and remote forward-paths, DSN parameters
(RFC 3461), the header fields stages asked to add and whether a stage asked
for quarantine.  Reset by RSET, HELO/EHLO and after DATA (``commands.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserver.smtp.compat import Envelope

if TYPE_CHECKING:
    from mailserver.delivery.interface import Delivery, LocalRecipient
    from mailserver.protocol.dsn_params import MailDsn, RcptDsn
    from mailserver.protocol.smtp.command import MailArgs


class Transaction(Envelope):
    """aiosmtpd's envelope plus the accounts our RCPT policy resolved."""

    def __init__(self) -> None:
        super().__init__()
        self.local_recipients: list[LocalRecipient] = []
        #: Accepted forward-paths for other domains (authenticated submission only).
        self.remote_recipients: list[str] = []
        #: DSN parameters (RFC 3461) of the MAIL or RCPT being answered, set by the
        #: adapter; the hooks keep them when they accept the command.
        self.dsn_offered: MailDsn | RcptDsn | None = None
        self.mail_dsn: MailDsn | None = None
        #: Accepted forward-path -> its RCPT's DSN parameters (only those that had some).
        self.rcpt_dsn: dict[str, RcptDsn] = {}
        #: BDAT (RFC 3030): the chunks so far (None: no BDAT yet), the octets
        #: announced so far, and the reply that failed the transaction, if one did.
        self.chunks: bytearray | None = None
        self.chunks_size = 0
        self.chunks_failed: str | None = None
        #: MAIL's parsed argument (``protocol.smtp.command.MailArgs``), once given.
        self.mail_args: MailArgs | None = None
        #: The message's delivery (``delivery.interface``), begun when MAIL is accepted.
        self.delivery: Delivery | None = None
