"""The SMTP commands we implement over aiosmtpd's: EHLO, STARTTLS, MAIL, RCPT, DATA.

A mixin of ``adapter.SmtpConnection`` (before ``compat.AiosmtpdConnection`` in
its bases, so ``super()`` here is aiosmtpd's), as ``auth.py`` is for AUTH: the
connection keeps the state, this module parses and answers the commands.

* EHLO lists our extensions (RFC 1869 §4.3) in one write.
* MAIL/RCPT: the DSN parameters (RFC 3461 §4) are taken out of the argument
  before aiosmtpd sees it (it upper-cases parameters, and xtext and addresses
  are case-sensitive; it also refuses every RCPT parameter with 555), parsed
  by ``protocol.dsn_params`` (a syntax error is ``501 5.5.4``) and left on the
  envelope as ``dsn_offered`` for the hooks to keep once they accept the command.
* DATA is read in chunks by ``protocol.smtp.data.DataDecoder``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mailserver.errors import ProtocolSyntaxError, smtp_reply
from mailserver.protocol import dsn_params
from mailserver.protocol.smtp.data import DataDecoder, DataError
from mailserver.protocol.smtp_address import parse_path
from mailserver.smtp.compat import MISSING, syntax

if TYPE_CHECKING:
    pass

_AUTH_PARAM = re.compile(r"\s+AUTH=\S*", re.IGNORECASE)
#: A DSN parameter (RFC 3461 §4) somewhere in a MAIL/RCPT argument: the cheap
#: test that keeps commands without one off the parsing path.
_DSN_PARAM = re.compile(r"\s(?:RET|ENVID|NOTIFY|ORCPT)=", re.IGNORECASE)
#: ``StreamReader.read`` size meaning "all that is buffered".
_READ_ALL = 1 << 62
#: Replies for refused content, as aiosmtpd words them (``push`` adds the
#: enhanced codes 5.5.2 and 5.3.4).
_DATA_REFUSALS = {
    DataError.LINE_TOO_LONG: "500 Line too long (see RFC5321 4.5.3.1.6)",
    DataError.TOO_MUCH: "552 Error: Too much mail data",
    DataError.BARE_LINE_ENDING: "550 5.5.2 Bare CR or LF not allowed (RFC 5321 2.3.8)",
}


class SmtpCommands:
    """``smtp_EHLO``, ``smtp_STARTTLS``, ``smtp_MAIL``, ``smtp_RCPT``, ``smtp_DATA``.

    Uses the connection's ``settings``, ``is_tls``, ``push``, ``_send``,
    ``session``, ``envelope``, ``hostname``, ``data_size_limit``,
    ``line_length_limit``, ``local_part_limit``, ``tls_context`` and compat's
    public helpers.
    """

    # The connection's attributes this mixin reads (set by SmtpConnection and aiosmtpd).
    settings: Any
    session: Any
    envelope: Any  # Transaction | None
    hostname: str
    data_size_limit: Any
    line_length_limit: int
    local_part_limit: int
    tls_context: Any
    is_tls: Any  # a property of the connection
    auth_mechanism_names: list[str]
    push: Any
    _send: Any
    reset_transaction: Any
    end_data: Any
    call_hook: Any
    strip_keyword: Any
    stock_getaddr: Any
    stream_reader: Any
    check_helo_needed: Any
    check_auth_needed: Any

    async def smtp_EHLO(self, hostname: str | None) -> None:
        """RFC 5321 §4.1.1.1, listing the extensions we support (RFC 1869 §4.3)."""
        if not hostname:
            await self.push("501 Syntax: EHLO hostname")
            return
        self.reset_transaction()
        assert self.session is not None
        self.session.extended_smtp = True
        self.session.host_name = hostname
        keywords = [
            "PIPELINING",  # RFC 2920
            f"SIZE {self.data_size_limit}",  # RFC 1870
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            "ENHANCEDSTATUSCODES",  # RFC 2034
            "DSN",  # RFC 3461
        ]
        if self.tls_context is not None and not self.is_tls:
            keywords.append("STARTTLS")  # RFC 3207
        if self.settings.submission and self.is_tls:
            keywords.append("AUTH " + " ".join(self.auth_mechanism_names))  # RFC 4954
        keywords.append("HELP")
        # One write for the whole reply (RFC 5321 §4.2.1 multiline form), not a
        # send() per line.  No enhanced codes in EHLO replies (RFC 2034 §3).
        lines = [self.hostname, *keywords]
        last = len(lines) - 1
        await self._send("".join(
            f"250{' ' if i == last else '-'}{text}\r\n" for i, text in enumerate(lines)
        ).encode("utf-8", "surrogateescape"))

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        """RFC 3207 §4; a second STARTTLS on an encrypted connection is refused."""
        if self.is_tls:
            await self.push("503 5.5.1 TLS already active")
            return
        await super().smtp_STARTTLS(arg)  # type: ignore[misc]  # aiosmtpd's, via the MRO

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.2.  The AUTH= parameter (RFC 4954 §5) is accepted and ignored;
        RET= and ENVID= (RFC 3461 §4.3, §4.4) are ours (see ``_take_dsn``)."""
        if arg is not None:
            arg = await self._take_dsn(_AUTH_PARAM.sub("", arg), "FROM:")
            if arg is None:
                return
        await super().smtp_MAIL(arg)  # type: ignore[misc]  # aiosmtpd's, via the MRO

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.3, with NOTIFY= and ORCPT= (RFC 3461 §4.1, §4.2) taken
        out first (see ``_take_dsn``); aiosmtpd refuses any other parameter (555)."""
        if arg is not None:
            arg = await self._take_dsn(arg, "TO:")
            if arg is None:
                return
        await super().smtp_RCPT(arg)  # type: ignore[misc]  # aiosmtpd's, via the MRO

    async def _take_dsn(self, arg: str, keyword: str) -> str | None:
        """Take the DSN parameters (RFC 3461 §4) out of a MAIL (``keyword`` "FROM:")
        or RCPT ("TO:") argument, parsed into ``envelope.dsn_offered``.

        Returns the argument without them for aiosmtpd, or None once a syntax
        error was answered (``501 5.5.4``).  After HELO (no extensions), or
        when the path does not parse, the argument goes on untouched and
        aiosmtpd refuses it as before.  The other command's DSN keywords stay
        in, so aiosmtpd answers them ``555`` (RFC 5321 §4.2.2).
        """
        envelope = self.envelope
        if envelope is not None:
            envelope.dsn_offered = None
        if (envelope is None or self.session is None or not self.session.extended_smtp
                or not _DSN_PARAM.search(arg)):
            return arg
        rest = self.strip_keyword(keyword, arg)
        if rest is None:
            return arg
        address, params = self.parse_path(rest)
        if not address or not params or not rest.endswith(params):
            return arg
        mail = keyword == "FROM:"
        allowed = dsn_params.MAIL_KEYWORDS if mail else dsn_params.RCPT_KEYWORDS
        tokens = params.split()
        ours = [t for t in tokens if t.partition("=")[0].upper() in allowed]
        others = [t for t in tokens if t.partition("=")[0].upper() not in allowed]
        try:
            envelope.dsn_offered = (
                dsn_params.parse_mail(ours) if mail else dsn_params.parse_rcpt(ours)
            )
        except ProtocolSyntaxError as exc:
            await self.push(str(smtp_reply(exc)))
            return None
        path = rest[: len(rest) - len(params)].rstrip()
        return " ".join([keyword + path, *others])

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.4, read in chunks by ``data.DataDecoder`` (same checks and
        replies as aiosmtpd's line-by-line reader, without a ``readuntil`` per line)."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        decoder = DataDecoder(max_size=self.data_size_limit, max_line=self.line_length_limit)
        reader = self.stream_reader
        while True:
            # Everything buffered at once: after the end marker nothing is
            # left in the reader, so what follows can be put back in order.
            chunk = await reader.read(_READ_ALL)
            if not chunk:
                return  # the client went away mid-DATA: nothing was accepted
            rest = decoder.feed(chunk)
            if rest is not None:
                break
        if rest and not reader.at_eof():
            reader.feed_data(rest)  # pipelined commands after the message (RFC 2920)
        if decoder.error is not None:
            await self.push(_DATA_REFUSALS[decoder.error])
            self.end_data()
            return
        content = decoder.content
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self.call_hook("DATA")
        self.end_data()
        await self.push("250 OK" if status is MISSING else status)

    def parse_path(self, arg: str) -> tuple[str | None, str | None]:
        """RFC 5321 §4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">".

        Paths in the RFC 5321 grammar are split by ``smtp_address.parse_path``
        (aiosmtpd's answer, without its RFC 5322 token trees and a class
        created per call: ~11 % of ingress CPU).  Anything else goes to
        aiosmtpd's lenient parser as before, except that a path opened with
        "<" and never closed is a syntax error (501): aiosmtpd only notes the
        missing ">" as a defect and accepts the address.
        """
        parsed = parse_path(arg)
        if parsed is not None:
            address, rest = parsed
            limit = self.local_part_limit
            if limit and len(address.rpartition("@")[0]) > limit:
                return None, None
            return address, rest
        stripped = arg.lstrip()
        if stripped.startswith("<") and ">" not in stripped:
            return None, None
        return self.stock_getaddr(arg)


