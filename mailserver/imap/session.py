"""One IMAP session: its state, the dispatch table, and the one place where
command outcomes become tagged replies (RFC 3501 §3, §6, §7.1).

Design notes
------------
* ``TABLE`` maps a command name to its handler and the states it is valid in;
  ``ImapSession.execute`` checks the state there and nowhere else (after mox).
* A handler writes untagged responses with ``session.write`` and returns a
  ``TaggedOk`` for the tagged OK (or ``None`` for "NAME completed").  It reports
  failure by raising: ``UserError`` -> ``NO [code]``, ``ProtocolSyntaxError``
  -> ``BAD``, anything else -> ``NO [SERVERBUG]`` plus a logged traceback.
  ``mailserver.errors.imap_status`` does the mapping, here only.
* After every command in the SELECTED state the view is synchronised with the
  store (``SelectedMailbox.sync``) before the tagged reply, so concurrent
  sessions see each other's changes (RFC 3501 §5.2).  EXPUNGE responses are
  held back during FETCH, STORE and SEARCH (§7.4.1; the UID forms may carry
  them, §6.4.8).
* Handlers never touch the socket; what they need from the connection (flush,
  read one raw line, start TLS or compression) is the small ``Conn`` protocol.
* ``ENABLE IMAP4rev2`` (RFC 9051 §6.3.1) switches the session to rev2
  behaviour (RFC 9051 Appendix E): no ``\\Recent`` and no RECENT or UNSEEN
  in SELECT (which sends a LIST line instead, §6.3.2), SEARCH answered by
  ESEARCH (§6.4.4, as ``RETURN ()``), mailbox names in UTF-8 both ways
  (§5.1).  ``ENABLE UTF8=ACCEPT`` (RFC 6855 §3) gives the UTF-8 names and
  quoted strings alone.  ``_adapt`` makes the per-command adjustments, here
  in one place, so the command modules see the arguments they already know.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from mailserver.config import Listener
from mailserver.errors import MailboxNotFound, ProtocolSyntaxError, UserError, imap_status
from mailserver.imap.commands import (
    auth,
    context,
    idle,
    listing,
    mailbox,
    messages,
    quota,
    searching,
    select,
    sort,
    thread,
)
from mailserver.imap.selected import SelectedMailbox
from mailserver.imap.state import CloseConnection, Conn, State, TaggedOk
from mailserver.protocol.imap.response import tagged
from mailserver.protocol.imap.types import Command, InvalidMailboxName, Rename, Search
from mailserver.services import Services

Handler = Callable[["ImapSession", Command], Awaitable[TaggedOk | None]]

#: Commands during whose response an EXPUNGE must not be sent (RFC 3501 §7.4.1);
#: their UID forms may (§6.4.8).
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD"})  # SORT/THREAD: RFC 5256

#: What ENABLE can turn on (RFC 5161 §3.1): RFC 7162, RFC 9051, RFC 6855.
ENABLEABLE = frozenset({"CONDSTORE", "QRESYNC", "IMAP4rev2", "UTF8=ACCEPT"})


class ImapSession:
    """The protocol state of one connection, independent of sockets.

    ``user`` is the account address once authenticated; ``selected`` the
    view of the selected mailbox.  ``after_reply`` is set by a handler that
    needs the connection to act once the tagged reply is on the wire
    (STARTTLS); the connection calls and clears it.
    """

    def __init__(self, services: Services, listener: Listener, conn: Conn, log: object) -> None:
        self.services = services
        self.store = services.store
        #: The account's mailboxes on either backend (``store.api.Mailboxes``):
        #: CREATE, DELETE, RENAME, SUBSCRIBE, LIST, STATUS go through it.
        self.mailboxes = services.backend.mailboxes
        #: Their messages on either backend (``store.api.Messages``): IDLE waits on it.
        self.messages = services.backend.messages
        self.limits = services.config.limits
        self.listener = listener
        self.conn = conn
        self.log = log
        self.state = State.NOT_AUTHENTICATED
        self.user: str | None = None
        self.selected: SelectedMailbox | None = None
        self.auth_failures = 0
        #: Extensions turned on by ENABLE or a CONDSTORE enabling command (RFC 5161,
        #: RFC 7162 §3.1): "CONDSTORE", "QRESYNC", "IMAP4rev2", "UTF8=ACCEPT"
        #: (spelt as in ``ENABLEABLE``).  They last until logout.
        self.enabled: set[str] = set()
        self.after_reply: Callable[[], Awaitable[None]] | None = None
        #: CONDSTORE was turned on by a command run while a mailbox was
        #: selected: its tagged OK carries [HIGHESTMODSEQ n] (RFC 7162 §3.1).
        self._tell_modseq = False

    # ------------------------------------------------------------- helpers

    def write(self, data: bytes) -> None:
        """Queue response bytes (sent at the end of the command, or on flush)."""
        self.conn.write(data)

    def plaintext_ok(self) -> bool:
        """Whether LOGIN / AUTHENTICATE PLAIN may be used now (RFC 3501 §6.2.3,
        §11.1): over TLS, or from a loopback peer (as Dovecot's
        ``disable_plaintext_auth`` treats localhost)."""
        return self.conn.tls or self.conn.loopback

    def capabilities(self) -> str:
        """The CAPABILITY list for the current state (RFC 3501 §7.2.1).

        Only what is fully implemented.  Before login: STARTTLS when the
        listener offers it and TLS is not on yet (§6.2.1), and AUTH=PLAIN,
        AUTH=SCRAM-SHA-256 (and -PLUS under TLS) or LOGINDISABLED (§6.2.3).  APPENDLIMIT (RFC 7889 §4) is the largest
        message APPEND takes.
        """
        caps = ["IMAP4rev1", "LITERAL+", "SASL-IR", "IDLE", "UNSELECT", "ID", "NAMESPACE",
                "ENABLE", "UIDPLUS", "MOVE", "CHILDREN", "SPECIAL-USE", "CREATE-SPECIAL-USE",
                "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE", "ESEARCH", "WITHIN", "CONDSTORE", "QRESYNC", f"APPENDLIMIT={self.append_limit()}",
                "MULTIAPPEND", "BINARY", "ESORT", "PARTIAL", "CATENATE",  # RFC 3502; 3516; 5267;
                "CONTEXT=SEARCH", "CONTEXT=SORT"]  # 9394; 4469; RFC 5267 §4
        # RFC 9051 §7.2.2 (with IMAP4rev1, RFC 9051 Appendix A), RFC 6855 §3.
        caps[1:1] = ["IMAP4rev2"]
        caps.append("UTF8=ACCEPT")
        # RFC 5256 SORT/THREAD, RFC 5957 SORT=DISPLAY, RFC 5182 SEARCHRES, RFC 9208 QUOTA.
        caps += ["SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES",
                 "SEARCHRES", "QUOTA", "QUOTA=RES-STORAGE"]
        if self.state is not State.NOT_AUTHENTICATED:
            caps.append("COMPRESS=DEFLATE")  # RFC 4978 §3: a command-auth command
        if self.state is State.NOT_AUTHENTICATED:
            if self.conn.tls_available():
                caps.append("STARTTLS")
            if self.plaintext_ok():
                caps.append("AUTH=PLAIN")
                scram = self.services.scram
                if scram is not None:  # RFC 7677; -PLUS: RFC 5802 §6 channel binding
                    caps.append("AUTH=SCRAM-SHA-256")
                    if scram.plus_available(self.conn.ssl_object()):
                        caps.append("AUTH=SCRAM-SHA-256-PLUS")
            else:
                caps.append("LOGINDISABLED")
        return " ".join(caps)

    def append_limit(self) -> int:
        """Largest message APPEND accepts, in octets (RFC 7889)."""
        return min(self.limits.imap_max_literal_size, self.limits.max_message_size)

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled

    @property
    def rev2(self) -> bool:
        """IMAP4rev2 behaviour was enabled (RFC 9051 §6.3.1)."""
        return "IMAP4rev2" in self.enabled

    @property
    def utf8(self) -> bool:
        """Mailbox names and quoted strings are UTF-8 both ways (RFC 6855 §3,
        RFC 9051 §5.1): after ENABLE UTF8=ACCEPT or ENABLE IMAP4rev2."""
        return "UTF8=ACCEPT" in self.enabled or "IMAP4rev2" in self.enabled

    def enable(self, name: str) -> bool:
        """Turn on an extension of ``ENABLEABLE`` (``name`` upper-cased as the
        parser gives it; QRESYNC implies CONDSTORE, RFC 7162 §3.2.3); True
        when it was not on yet.  The selected view and the receiver follow."""
        canonical = {n.upper(): n for n in ENABLEABLE}.get(name.upper())
        if canonical is None or canonical in self.enabled:
            return False
        was_utf8 = self.utf8
        had_condstore = self.condstore
        self.enabled.add(canonical)
        if canonical == "QRESYNC":
            self.enabled.add("CONDSTORE")
        if "CONDSTORE" in self.enabled and not had_condstore and self.selected is not None:
            self._tell_modseq = True
        if self.utf8 and not was_utf8:
            self.conn.enable_utf8()
        if self.selected is not None:
            self.apply_enabled(self.selected)
        return True

    def apply_enabled(self, view: SelectedMailbox) -> None:
        view.condstore = "CONDSTORE" in self.enabled
        view.qresync = "QRESYNC" in self.enabled
        if self.rev2:
            view.recent.clear()  # RFC 9051 has no \Recent (Appendix E)

    def claims_recent_in(self, mailbox_id: int) -> int | None:
        """``mailbox_id`` when a write adding messages there may claim them as
        ``\\Recent`` for this session in its own transaction (RFC 3501
        §2.3.2): it is the selected mailbox, read-write, and the session is
        not rev2 (which has no ``\\Recent`` and claims nothing).  Else None."""
        view = self.selected
        if view is None or view.readonly or self.rev2 or view.mailbox_id != mailbox_id:
            return None
        return mailbox_id

    def bind_log(self, **fields: object) -> None:
        self.log = self.log.bind(**fields)  # type: ignore[attr-defined]

    # ------------------------------------------------------------ dispatch

    async def execute(self, cmd: Command) -> None:
        """Run one command and queue its responses, tagged reply last.

        Never raises for the command's own failures; ``CancelledError`` passes.
        """
        self._tell_modseq = False
        try:
            entry = TABLE.get(cmd.name)
            if entry is None:
                raise ProtocolSyntaxError(f"Unknown command {cmd.name}")
            handler, states = entry
            if self.state not in states:
                raise ProtocolSyntaxError(f"{cmd.name} not allowed now")
            cmd = self._adapt(cmd)
            reply = await handler(self, cmd)
            await self._sync(cmd)
            if reply is None:
                reply = TaggedOk(f"{_label(cmd)} completed")
            if self._tell_modseq:
                reply = self._with_modseq(reply)
            self.write(tagged(cmd.tag, "OK", reply.text, reply.code))
        except (CloseConnection, TimeoutError, ConnectionError):
            raise  # the connection's business: autologout, client gone
        except ProtocolSyntaxError as exc:
            await self._sync_quietly(cmd)
            self.write(tagged(cmd.tag, "BAD", exc.text))
        except Exception as exc:  # noqa: BLE001 - mapped to NO here, logged if ours
            status, code, text = imap_status(exc)
            if code == "SERVERBUG":
                self.log.exception(  # type: ignore[attr-defined]
                    "imap_command_failed", command=cmd.name, mailbox=self._mailbox_name()
                )
            await self._sync_quietly(cmd)
            self.write(tagged(cmd.tag, status, text, code))

    def _adapt(self, cmd: Command) -> Command:
        """The per-command effects of ENABLE IMAP4rev2 / UTF8=ACCEPT.

        * RFC 6855 §3: after UTF8=ACCEPT a SEARCH must not name a CHARSET
          ("SHOULD reject the command with a BAD response").
        * RFC 9051 §6.4.4: a rev2 SEARCH without RETURN is answered by
          ``* ESEARCH`` with ALL, which is what ``RETURN ()`` means (RFC 4731 §3.1).
        """
        args = cmd.args
        _check_names(cmd)
        if cmd.name == "SEARCH" and isinstance(args, Search):
            if "UTF8=ACCEPT" in self.enabled and args.charset is not None:
                raise ProtocolSyntaxError("SEARCH CHARSET is not allowed after UTF8=ACCEPT")
            if self.rev2 and args.return_opts is None:
                return dataclasses.replace(cmd, args=dataclasses.replace(args, return_opts=()))
        return cmd

    def _with_modseq(self, reply: TaggedOk) -> TaggedOk:
        """The tagged OK of the command that enabled CONDSTORE while a mailbox
        was selected carries ``[HIGHESTMODSEQ n]`` (RFC 7162 §3.1); when it has
        a code of its own, an untagged OK says it just before."""
        self._tell_modseq = False
        view = self.selected
        if view is None:
            return reply
        # With expunges held back, the HIGHESTMODSEQ below the oldest (§3.2).
        modseq = view.pending_floor if view.pending else view.modseq
        if reply.code is not None:
            self.write(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % modseq)
            return reply
        return TaggedOk(reply.text, f"HIGHESTMODSEQ {modseq}")

    def _mailbox_name(self) -> str | None:
        return self.selected.name if self.selected is not None else None

    async def _sync(self, cmd: Command) -> None:
        """Report the selected mailbox's changes before the tagged reply."""
        if self.state is not State.SELECTED or self.selected is None:
            return
        allow = cmd.uid or cmd.name not in _NO_EXPUNGE
        await self.sync_view(allow_expunge=allow)

    async def sync_view(self, *, allow_expunge: bool) -> None:
        """Fold the store's changes into the view and queue the responses;
        new messages are judged for \\Recent before the client can ask.
        A vanished mailbox ends the session (``mailbox_vanished``)."""
        view = self.selected
        if view is None:
            return
        try:
            for line in view.sync(allow_expunge=allow_expunge):
                self.write(line)
            if not self.rev2:  # rev2 has no \Recent: claim nothing from rev1 sessions
                await view.claim_recent()
                if view.grew:  # RFC 3501 §7.3.2: RECENT follows the EXISTS it changed with
                    self.write(b"* %d RECENT\r\n" % len(view.recent))
            if view.contexts:  # RFC 5267 §4.3: ADDTO after the EXISTS it refers to
                await context.refresh(self, view)
            if view.pending and view.condstore:
                # RFC 7162 §3.2: MODSEQs above a held-back expunge were sent, so
                # tell the client a HIGHESTMODSEQ below that expunge's.
                self.write(b"* OK [HIGHESTMODSEQ %d] Expunges pending\r\n" % view.pending_floor)
        except MailboxNotFound:
            self.mailbox_vanished()

    async def _sync_quietly(self, cmd: Command) -> None:
        try:
            await self._sync(cmd)
        except Exception:  # noqa: BLE001 - a failed sync must not hide the reply
            self.log.exception("imap_sync_failed", mailbox=self._mailbox_name())  # type: ignore[attr-defined]

    def mailbox_vanished(self) -> None:
        """The selected mailbox was deleted or renamed away by another session:
        there is no way to tell the client but to end the session (RFC 3501
        §7.1.5 BYE; Dovecot does the same)."""
        self.write(b"* BYE Selected mailbox was deleted, have to disconnect\r\n")
        self.state = State.LOGOUT
        self.selected = None

    def select(self, view: SelectedMailbox | None) -> None:
        """Enter SELECTED with ``view``, or leave it (``None``)."""
        self.selected = view
        if view is None:
            if self.state is State.SELECTED:
                self.state = State.AUTHENTICATED
        else:
            self.apply_enabled(view)
            self.state = State.SELECTED
            self.bind_log(mailbox=view.name)


#: Commands whose mailbox argument names a mailbox to make (RFC 3501 §6.3.3-4).
_MAKES = frozenset({"CREATE", "RENAME"})


def _check_names(cmd: Command) -> None:
    """A mailbox name that is not modified UTF-7 (``InvalidMailboxName``,
    RFC 3501 §5.1.3) is still a valid astring: no mailbox has it, so the
    command fails with NO rather than BAD.  CREATE and RENAME cannot make it
    (``[CANNOT]``); the others do not find it (``[NONEXISTENT]``), COPY/MOVE/
    APPEND without TRYCREATE, as it could not be created (§6.4.7).  SELECT and
    EXAMINE check in their handler (the old mailbox is closed first, §6.3.1);
    LIST/LSUB patterns of it match nothing (``listing``)."""
    if cmd.name in ("SELECT", "EXAMINE", "LIST", "LSUB"):
        return
    args = cmd.args
    names = [getattr(args, "mailbox", None)]
    if isinstance(args, Rename):
        names = [args.old, args.new]
    for name in names:
        if not isinstance(name, InvalidMailboxName):
            continue
        if cmd.name in _MAKES and name is names[-1]:
            raise UserError("Mailbox name is not valid modified UTF-7", imap_code="CANNOT")
        raise MailboxNotFound("Mailbox does not exist")


def _label(cmd: Command) -> str:
    return f"UID {cmd.name}" if cmd.uid else cmd.name


# --------------------------------------------------------------------- table

_ANY = frozenset(State) - {State.LOGOUT}
_NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
_AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
_SEL = frozenset({State.SELECTED})

#: command name -> (handler, states it is valid in)  (RFC 3501 §6, one row per command)
TABLE: dict[str, tuple[Handler, frozenset[State]]] = {
    # any state (§6.1)
    "CAPABILITY": (auth.capability, _ANY),
    "NOOP": (auth.noop, _ANY),
    "LOGOUT": (auth.logout, _ANY),
    "ID": (auth.id_, _ANY),  # RFC 2971 §3.1
    # not authenticated (§6.2)
    "STARTTLS": (auth.starttls, _NOT_AUTH),
    "LOGIN": (auth.login, _NOT_AUTH),
    "AUTHENTICATE": (auth.authenticate, _NOT_AUTH),
    # authenticated (§6.3)
    "ENABLE": (auth.enable, _AUTH),  # RFC 5161 §3.1
    "COMPRESS": (auth.compress, _AUTH),  # RFC 4978 §3 (command-auth)
    "NAMESPACE": (mailbox.namespace, _AUTH),  # RFC 2342 §5
    "SELECT": (select.select, _AUTH),
    "EXAMINE": (select.examine, _AUTH),
    "CREATE": (mailbox.create, _AUTH),
    "DELETE": (mailbox.delete, _AUTH),
    "RENAME": (mailbox.rename, _AUTH),
    "SUBSCRIBE": (mailbox.subscribe, _AUTH),
    "UNSUBSCRIBE": (mailbox.unsubscribe, _AUTH),
    "LIST": (listing.list_, _AUTH),
    "LSUB": (listing.lsub, _AUTH),
    "STATUS": (listing.status, _AUTH),
    "APPEND": (mailbox.append, _AUTH),
    "IDLE": (idle.idle, _AUTH),  # RFC 2177
    "GETQUOTA": (quota.getquota, _AUTH),  # RFC 9208 §4.2
    "GETQUOTAROOT": (quota.getquotaroot, _AUTH),  # RFC 9208 §4.3
    "SETQUOTA": (quota.setquota, _AUTH),  # RFC 9208 §4.1.3
    # selected (§6.4)
    "CHECK": (messages.check, _SEL),
    "CLOSE": (messages.close, _SEL),
    "UNSELECT": (messages.unselect, _SEL),  # RFC 3691
    "EXPUNGE": (messages.expunge, _SEL),  # UID EXPUNGE: RFC 4315 §2.1
    "SEARCH": (searching.search, _SEL),
    "FETCH": (messages.fetch, _SEL),
    "STORE": (messages.store, _SEL),
    "COPY": (messages.copy, _SEL),
    "MOVE": (messages.move, _SEL),  # RFC 6851
    "SORT": (sort.sort, _SEL),  # RFC 5256 §3
    "THREAD": (thread.thread, _SEL),  # RFC 5256 §4
    "CANCELUPDATE": (context.cancelupdate, _SEL),  # RFC 5267 §4.3.5
}
