"""The SMTP commands (RFC 5321 §4.1.1) but AUTH, answered for ``adapter.SmtpConnection``.

A mixin of the connection, as ``auth.py`` is for AUTH: the connection keeps
the state and the I/O, this module parses (through ``protocol.smtp.command``)
and answers.  ``VERBS`` maps each verb to its method; the command loop
(``adapter.serve``) looks commands up there.

* EHLO lists our extensions (RFC 1869 §4.3) in one write; HELO lists none.
* MAIL/RCPT: ``parse_mail``/``parse_rcpt`` read the path (RFC 5321 §4.1.2)
  and the ESMTP parameters we implement: SIZE (RFC 1870), BODY (RFC 6152),
  SMTPUTF8 (RFC 6531), AUTH (RFC 4954 §5, ignored), and DSN's RET, ENVID,
  NOTIFY and ORCPT (RFC 3461 §4), case kept where it matters (xtext,
  addresses).  A bad path is ``501 5.1.7``/``501 5.1.3``, a bad parameter
  ``501 5.5.4``, one we do not implement ``555 5.5.4`` (§4.1.1.11); after
  HELO (no extensions) any parameter is a syntax error.  The hooks decide
  the rest (``handler.SmtpHooks``).
* DATA is read in chunks by ``protocol.smtp.data.DataDecoder``, starting with
  what the command reader had already buffered (pipelining, RFC 2920), and
  what follows the message goes back to the reader.
* STARTTLS (RFC 3207) drops whatever the client pipelined after it (§4.2:
  it was sent in the clear, before the handshake: the command-injection
  attack of CVE-2011-0411) before the ``220``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mailserver.errors import ProtocolSyntaxError, smtp_reply
from mailserver.protocol.smtp.command import BadPath, parse_mail, parse_rcpt
from mailserver.protocol.smtp.data import DataDecoder, DataError
from mailserver.smtp.compat import TLSSetupException

#: ``StreamReader.read`` size meaning "all that is buffered".
_READ_ALL = 1 << 62
#: Replies for refused content (``push`` adds the enhanced codes 5.5.2 and 5.3.4).
_DATA_REFUSALS = {
    DataError.LINE_TOO_LONG: "500 Line too long (see RFC5321 4.5.3.1.6)",
    DataError.TOO_MUCH: "552 Error: Too much mail data",
    DataError.BARE_LINE_ENDING: "550 5.5.2 Bare CR or LF not allowed (RFC 5321 2.3.8)",
}
#: Command syntax for HELP (RFC 5321 §4.1.1.8), and the verbs it lists.
_SYNTAX = {
    "AUTH": "AUTH <mechanism> [<initial-response>]",
    "DATA": "DATA",
    "EHLO": "EHLO hostname",
    "HELO": "HELO hostname",
    "HELP": "HELP [command]",
    "MAIL": "MAIL FROM:<address> [SP <mail-parameters>]",
    "NOOP": "NOOP [ignored]",
    "QUIT": "QUIT",
    "RCPT": "RCPT TO:<address> [SP <rcpt-parameters>]",
    "RSET": "RSET",
    "STARTTLS": "STARTTLS",
    "VRFY": "VRFY <address>",
}


class SmtpCommands:
    """``smtp_<VERB>`` for every verb but AUTH (``auth.py``).

    Uses the connection's ``settings``, ``is_tls``, ``push``, ``_send``,
    ``session``, ``envelope``, ``hostname``, ``data_size_limit``, ``lines``
    (the command reader), ``stream_reader``, ``event_handler``, ``log``,
    ``end_session`` and ``start_tls``.
    """

    # The connection's attributes this mixin reads (set by SmtpConnection and compat).
    settings: Any
    session: Any
    envelope: Any  # Transaction | None
    hostname: str
    data_size_limit: Any
    tls_context: Any
    is_tls: Any  # a property of the connection
    event_handler: Any
    log: Any
    lines: Any  # protocol.smtp.command.CommandReader
    stream_reader: Any
    push: Any
    _send: Any
    end_session: Any
    start_tls: Any
    new_envelope: Any
    auth_mechanism_names: Any

    def reset_transaction(self) -> None:
        """A new, empty transaction (RSET, HELO/EHLO, after DATA: RFC 5321 §4.1.4)."""
        self.envelope = self.new_envelope()

    async def check_helo_needed(self, helo: str = "HELO") -> bool:
        """``503`` (and True) when no HELO/EHLO came first (RFC 5321 §4.1.4)."""
        if not self.session.host_name:
            await self.push(f"503 Error: send {helo} first")
            return True
        return False

    async def _hook(self, name: str, *args: Any) -> str | None:
        """The handler's ``handle_<name>`` reply, None when it has no such hook."""
        hook = getattr(self.event_handler, "handle_" + name, None)
        if hook is None:
            return None
        return str(await hook(self, self.session, self.envelope, *args))

    # -- session -----------------------------------------------------------------------

    async def smtp_HELO(self, hostname: str | None) -> None:
        """RFC 5321 §4.1.1.1 (no extensions)."""
        if not hostname:
            await self.push("501 Syntax: HELO hostname")
            return
        self.reset_transaction()
        self.session.extended_smtp = False
        self.session.host_name = hostname
        await self.push(f"250 {self.hostname}")

    async def smtp_EHLO(self, hostname: str | None) -> None:
        """RFC 5321 §4.1.1.1, listing the extensions we support (RFC 1869 §4.3)."""
        if not hostname:
            await self.push("501 Syntax: EHLO hostname")
            return
        self.reset_transaction()
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
        """RFC 3207 §4: ``220``, the handshake, then a new session (§4.2)."""
        if arg:
            await self.push("501 Syntax: STARTTLS")
            return
        if self.tls_context is None:
            await self.push("454 TLS not available")
            return
        if self.is_tls:
            await self.push("503 5.5.1 TLS already active")
            return
        dropped = self.lines.take_trailing_data()
        if dropped:
            self.log.info("starttls_pipelined_input_dropped", size=len(dropped))
        try:
            await self.start_tls()
        except TLSSetupException as exc:
            # The client's problem, not a server fault: note it and hang up.
            self.log.info("starttls_failed", error=repr(exc.__cause__))
            self.end_session()
            return
        self.log.info("starttls_done")

    async def smtp_NOOP(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.9: the argument is ignored."""
        await self.push("250 OK")

    async def smtp_RSET(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.5."""
        if arg:
            await self.push("501 Syntax: RSET")
            return
        self.reset_transaction()
        await self.push("250 OK")

    async def smtp_QUIT(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.10: ``221``, then close."""
        if arg:
            await self.push("501 Syntax: QUIT")
            return
        await self.push("221 Bye")
        self.end_session()

    async def smtp_VRFY(self, arg: str | None) -> None:
        """RFC 5321 §3.5.3, §7.3: we never confirm an address (``252``)."""
        if not arg:
            await self.push("501 Syntax: VRFY <address>")
            return
        await self.push("252 Cannot VRFY user, but will accept message and attempt delivery")

    async def smtp_EXPN(self, arg: str | None) -> None:
        """RFC 5321 §7.3: mailing lists are not expanded for strangers."""
        await self.push("502 EXPN not implemented")

    async def smtp_HELP(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.8: the verbs offered here, or one verb's syntax."""
        offered = sorted(v for v in _SYNTAX if self._offered(v))
        if arg:
            verb = arg.strip().upper()
            if verb in offered:
                await self.push(f"250 Syntax: {_SYNTAX[verb]}")
                return
            await self.push("501 Supported commands: " + " ".join(offered))
            return
        await self.push("250 Supported commands: " + " ".join(offered))

    def _offered(self, verb: str) -> bool:
        if verb == "STARTTLS":
            return self.tls_context is not None
        if verb == "AUTH":
            return bool(self.settings.submission)
        return True

    # -- the mail transaction -------------------------------------------------------------

    async def smtp_MAIL(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.2 with the parameters of the module doc."""
        if await self.check_helo_needed():
            return
        envelope = self.envelope
        if envelope.mail_from:
            await self.push("503 Error: nested MAIL command")
            return
        try:
            args = parse_mail(arg)
        except BadPath as exc:
            await self.push(f"501 5.1.7 {exc.text}")
            return
        except ProtocolSyntaxError as exc:
            await self.push(str(smtp_reply(exc)))
            return
        options = list(args.params)
        if options and not self.session.extended_smtp:
            await self.push("501 5.5.4 Syntax: MAIL FROM:<address> (no parameters after HELO)")
            return
        if args.body == "BINARYMIME":  # RFC 3030 §3: only with CHUNKING, not offered
            await self.push("555 5.5.4 BODY=BINARYMIME needs CHUNKING, not offered")
            return
        if args.size is not None and self.data_size_limit and args.size > self.data_size_limit:
            await self.push("552 Error: message size exceeds fixed maximum message size")
            return
        envelope.mail_args = args
        envelope.smtp_utf8 = args.smtputf8
        envelope.dsn_offered = args.dsn
        status = await self._hook("MAIL", args.address, options)
        if status is None:
            envelope.mail_from = args.address
            envelope.mail_options.extend(options)
            status = "250 OK"
        await self.push(status)

    async def smtp_RCPT(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.3 with NOTIFY= and ORCPT= (RFC 3461 §4.1, §4.2)."""
        if await self.check_helo_needed():
            return
        envelope = self.envelope
        if not envelope.mail_from:
            await self.push("503 Error: need MAIL command")
            return
        try:
            args = parse_rcpt(arg)
        except BadPath as exc:
            await self.push(f"501 5.1.3 {exc.text}")
            return
        except ProtocolSyntaxError as exc:
            await self.push(str(smtp_reply(exc)))
            return
        options = list(args.params)
        if options and not self.session.extended_smtp:
            await self.push("501 5.5.4 Syntax: RCPT TO:<address> (no parameters after HELO)")
            return
        envelope.dsn_offered = args.dsn
        status = await self._hook("RCPT", args.address, options)
        if status is None:
            envelope.rcpt_tos.append(args.address)
            envelope.rcpt_options.extend(options)
            status = "250 OK"
        await self.push(status)

    async def smtp_DATA(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.4, read in chunks by ``data.DataDecoder``."""
        if await self.check_helo_needed():
            return
        envelope = self.envelope
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        limits = self.settings.limits
        decoder = DataDecoder(max_size=self.data_size_limit,
                              max_line=limits.smtp_max_data_line_length)
        reader = self.stream_reader
        rest = decoder.feed(self.lines.take_trailing_data())  # pipelined with DATA
        while rest is None:
            chunk = await reader.read(_READ_ALL)
            if not chunk:
                self.end_session()  # the client went away mid-DATA: nothing was accepted
                return
            rest = decoder.feed(chunk)
        if rest:
            self.lines.feed(rest)  # pipelined commands after the message (RFC 2920)
        if decoder.error is not None:
            await self.push(_DATA_REFUSALS[decoder.error])
            self.reset_transaction()
            return
        content = decoder.content
        envelope.content = content
        envelope.original_content = content
        status = await self._hook("DATA")
        self.reset_transaction()
        await self.push("250 OK" if status is None else status)


#: Verb -> method: the command loop's table (``adapter.serve``), built once.
VERBS: dict[str, Callable[[Any, str | None], Awaitable[None]]] = {
    name[len("smtp_"):]: fn for name, fn in vars(SmtpCommands).items() if name.startswith("smtp_")
}
