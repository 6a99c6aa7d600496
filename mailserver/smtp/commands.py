"""The SMTP commands (RFC 5321 §4.1.1) but AUTH, answered for ``adapter.SmtpConnection``.

A mixin of the connection, as ``auth.py`` is for AUTH: the connection keeps
the state and the I/O, this module parses (through ``protocol.smtp.command``)
and answers.  ``VERBS`` maps each verb to its method; the command loop
(``adapter.serve``) looks commands up there.

* EHLO lists our extensions (RFC 1869 §4.3) in one write; HELO lists none.
* MAIL/RCPT: ``parse_mail``/``parse_rcpt`` read the path (RFC 5321 §4.1.2)
  and the ESMTP parameters we implement: SIZE (RFC 1870), BODY (RFC 6152),
  SMTPUTF8 (RFC 6531), REQUIRETLS (RFC 8689, on a TLS session only: ``530
  5.7.10`` otherwise), AUTH (RFC 4954 §5, ignored), and DSN's RET, ENVID,
  NOTIFY and ORCPT (RFC 3461 §4), case kept where it matters (xtext,
  addresses).  A bad path is ``501 5.1.7``/``501 5.1.3``, a bad parameter
  ``501 5.5.4``, one we do not implement ``555 5.5.4`` (§4.1.1.11); after
  HELO (no extensions) any parameter is a syntax error.  The hooks decide
  the rest (``handler.SmtpHooks``).
* DATA is read in chunks by ``protocol.smtp.data.DataDecoder``, starting with
  what the command reader had already buffered (pipelining, RFC 2920), and
  what follows the message goes back to the reader.
* BDAT (CHUNKING, RFC 3030 §2) reads exactly the announced octets, from
  the reader's buffer first; a refused chunk's octets are read and dropped
  (§2), and once a chunk failed, the transaction's later chunks get ``503``
  until RSET.  The last chunk ends the message as DATA's end marker does,
  with the same hooks, limits and durability.  BODY=BINARYMIME (§3) is
  accepted, and then only BDAT may carry the message.
* STARTTLS (RFC 3207) drops whatever the client pipelined after it (§4.2:
  it was sent in the clear, before the handshake: the command-injection
  attack of CVE-2011-0411) before the ``220``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mailserver.errors import ProtocolSyntaxError, smtp_reply
from mailserver.protocol.smtp.command import (
    BadPath,
    MailArgs,
    RcptArgs,
    parse_bdat,
    parse_mail,
    parse_rcpt,
)
from mailserver.protocol.smtp.data import DataDecoder, DataError
from mailserver.smtp.compat import TLSSetupException

_Args = TypeVar("_Args", MailArgs, RcptArgs)

#: ``StreamReader.read`` size meaning "all that is buffered".
_READ_ALL = 1 << 62
#: Replies for refused content (``push`` adds the enhanced codes 5.5.2 and 5.3.4).
_DATA_REFUSALS = {
    DataError.LINE_TOO_LONG: "500 Line too long (see RFC5321 4.5.3.1.6)",
    DataError.TOO_MUCH: "552 Error: Too much mail data",
    DataError.BARE_LINE_ENDING: "550 5.5.2 Bare CR or LF not allowed (RFC 5321 2.3.8)",
}
#: Most octets one read takes during BDAT.
_CHUNK_READ = 1 << 16
#: Command syntax for HELP (RFC 5321 §4.1.1.8), and the verbs it lists.
_SYNTAX = {
    "AUTH": "AUTH <mechanism> [<initial-response>]",
    "BDAT": "BDAT <chunk-size> [LAST]",
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
            "CHUNKING",  # RFC 3030
            "BINARYMIME",  # RFC 3030
        ]
        if self.tls_context is not None and not self.is_tls:
            keywords.append("STARTTLS")  # RFC 3207
        if self.is_tls:
            # RFC 8689 §3: offered only where the session itself is protected.
            keywords.append("REQUIRETLS")
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

    async def _parsed(self, parse: Callable[[str | None], _Args], arg: str | None,
                      path_code: str, syntax: str) -> _Args | None:
        """MAIL's or RCPT's argument parsed by ``parse``, or None once the error was
        answered: ``501 <path_code>`` for a bad path (RFC 3463 §3.2: 5.1.7 sender,
        5.1.3 recipient), ``501``/``555 5.5.4`` for a bad or unknown parameter, and
        ``501 5.5.4`` for any parameter after HELO (RFC 5321 §4.1.2: no extensions)."""
        try:
            args = parse(arg)
        except BadPath as exc:
            await self.push(f"501 {path_code} {exc.text}")
            return None
        except ProtocolSyntaxError as exc:
            await self.push(str(smtp_reply(exc)))
            return None
        if args.params and not self.session.extended_smtp:
            await self.push(f"501 5.5.4 Syntax: {syntax}:<address> (no parameters after HELO)")
            return None
        return args

    async def smtp_MAIL(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.2 with the parameters of the module doc."""
        if await self.check_helo_needed():
            return
        envelope = self.envelope
        if envelope.mail_from:
            await self.push("503 Error: nested MAIL command")
            return
        args = await self._parsed(parse_mail, arg, "5.1.7", "MAIL FROM")
        if args is None:
            return
        options = list(args.params)
        if args.requiretls and not self.is_tls:
            # RFC 8689 §3: REQUIRETLS only on a TLS session (and it is not even
            # advertised before STARTTLS).  5.7.10 "Encryption needed" (RFC 5248).
            await self.push("530 5.7.10 REQUIRETLS needs a TLS session: STARTTLS first")
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
        args = await self._parsed(parse_rcpt, arg, "5.1.3", "RCPT TO")
        if args is None:
            return
        options = list(args.params)
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
        if envelope.chunks is not None:  # RFC 3030 §2: not in one transaction with BDAT
            await self.push("503 5.5.1 Error: DATA after BDAT; send RSET")
            return
        args = envelope.mail_args
        if args is not None and args.body == "BINARYMIME":  # RFC 3030 §3
            await self.push("503 5.5.1 Error: BODY=BINARYMIME needs BDAT, not DATA")
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
        await self._end_message(decoder.content)

    async def _end_message(self, content: bytes) -> None:
        """The whole message is in (DATA's end marker, BDAT LAST): the DATA hook
        decides and delivers, then the transaction is over (RFC 5321 §4.1.1.4)."""
        envelope = self.envelope
        envelope.content = content
        envelope.original_content = content
        status = await self._hook("DATA")
        self.reset_transaction()
        await self.push("250 OK" if status is None else status)

    async def smtp_BDAT(self, arg: str | None) -> None:
        """RFC 3030 §2 (see the module doc)."""
        try:
            size, last = parse_bdat(arg)
        except ProtocolSyntaxError as exc:
            # How many octets follow is unknown: reading on would run message
            # content as commands.  Answer and hang up.
            await self.push(str(smtp_reply(exc)))
            self.end_session()
            return
        envelope = self.envelope
        refusal = None
        if not self.session.host_name:
            refusal = "503 Error: send HELO first"
        elif not envelope.mail_from:
            refusal = "503 Error: need MAIL command"
        elif not envelope.rcpt_tos:
            refusal = "503 Error: need RCPT command"
        elif envelope.chunks_failed is not None:
            refusal = "503 5.5.1 Error: this transaction failed; send RSET"
        if refusal is None and envelope.chunks is None:
            envelope.chunks = bytearray()
        total = envelope.chunks_size + size
        keep = refusal is None and not (self.data_size_limit and total > self.data_size_limit)
        if not await self._read_chunk(size, envelope.chunks if keep else None):
            self.end_session()  # the client went away mid-chunk: nothing was accepted
            return
        if refusal is not None:
            await self.push(refusal)
            return
        envelope.chunks_size = total
        if not keep:
            envelope.chunks = bytearray()  # the message is refused: keep nothing
            envelope.chunks_failed = "552 5.3.4 Error: Too much mail data"
            await self.push(envelope.chunks_failed)
            return
        if not last:
            await self.push(f"250 2.0.0 {size} octets received")
            return
        await self._end_message(bytes(envelope.chunks))

    async def _read_chunk(self, size: int, into: bytearray | None) -> bool:
        """Read ``size`` octets (the reader's buffer first), appended to ``into``
        or dropped when it is None.  False if the stream ended first."""
        data = self.lines.take_bytes(size)
        left = size - len(data)
        if into is not None:
            into += data
        reader = self.stream_reader
        while left:
            chunk = await reader.read(min(left, _CHUNK_READ))
            if not chunk:
                return False
            left -= len(chunk)
            if into is not None:
                into += chunk
        return True


#: Verb -> method: the command loop's table (``adapter.serve``), built once.
VERBS: dict[str, Callable[[Any, str | None], Awaitable[None]]] = {
    name[len("smtp_"):]: fn for name, fn in vars(SmtpCommands).items() if name.startswith("smtp_")
}
