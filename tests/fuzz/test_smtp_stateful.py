"""A model-based (hypothesis stateful) test of whole SMTP sessions on the MX
listener: random sequences of EHLO/HELO, STARTTLS, MAIL, RCPT (local, unknown,
remote), DATA, BDAT (RFC 3030), RSET, NOOP, VRFY, QUIT and reconnects, each
reply checked against RFC 5321's command sequencing (§4.1.4: 503 out of
order, 250 otherwise; §3.3: RSET clears the transaction; RFC 3207 §4.2:
STARTTLS resets the session) and every accepted message counted.

Invariant after every step: the recipient's INBOX holds exactly the
messages the model says were accepted (250 after DATA or the last BDAT).
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from support.server import ServerThread, make_config, running_server
from support.wire import client_tls_context

RCPT = "sm@example.test"
SERVER: ServerThread | None = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(tmp_path_factory.mktemp("smtp-stateful") / "data")
    with running_server(config, {RCPT: "sm-secret"}) as srv:
        yield srv


class SmtpSessions(RuleBasedStateMachine):
    """The model: greeted, under TLS, in a transaction (MAIL given), with how
    many accepted recipients; and how many messages were accepted."""

    def __init__(self) -> None:
        super().__init__()
        assert SERVER is not None
        self.srv = SERVER
        self.c = self._connect()
        self.greeted = self.tls = self.mail = False
        self.rcpts = 0
        self.accepted = 0
        self.base = 0
        self.serial = 0

    def _connect(self) -> smtplib.SMTP:
        assert SERVER is not None
        return smtplib.SMTP("127.0.0.1", SERVER.port("smtp"), timeout=30)

    def _inbox(self) -> int:
        mb = self.srv.call(self.srv.store.get_mailbox, RCPT, "INBOX")
        return int(mb.messages)

    @initialize()
    def count_what_is_there(self) -> None:
        self.base = self._inbox()

    def _transaction_reset(self) -> None:
        self.mail = False
        self.rcpts = 0

    # -- rules -----------------------------------------------------------------------

    @rule(ehlo=st.booleans())
    def greet(self, ehlo: bool) -> None:
        code, _ = self.c.docmd("EHLO" if ehlo else "HELO", "client.example.net")
        assert code == 250
        self.greeted = True
        self._transaction_reset()  # RFC 5321 §4.1.4: EHLO/HELO reset the state

    @rule()
    def starttls(self) -> None:
        code, _ = self.c.docmd("STARTTLS")
        if self.tls:
            assert code == 503  # not twice (RFC 3207 §4)
            return
        assert code == 220
        self.c.sock = client_tls_context().wrap_socket(self.c.sock)
        self.c.file = None
        self.tls = True
        self.greeted = False  # RFC 3207 §4.2: back to the start
        self._transaction_reset()

    @rule(sender=st.sampled_from(["x@remote.test", ""]))
    def mail_from(self, sender: str) -> None:
        code, _ = self.c.docmd("MAIL", f"FROM:<{sender}>")
        if not self.greeted or self.mail:
            assert code == 503
            return
        assert code == 250
        self.mail = True

    @rule(to=st.sampled_from([RCPT, "nobody@example.test", "x@elsewhere.test"]))
    def rcpt_to(self, to: str) -> None:
        code, _ = self.c.docmd("RCPT", f"TO:<{to}>")
        if not self.mail:
            assert code == 503
            return
        if to == RCPT:
            assert code == 250
            self.rcpts += 1
        else:
            assert code in (550, 554), code  # unknown user; relaying denied

    @rule(chunked=st.booleans(), size=st.integers(0, 3000))
    def data(self, chunked: bool, size: int) -> None:
        self.serial += 1
        body = b"Subject: s%d\r\n\r\n" % self.serial + b"y" * size + b"\r\n"
        if chunked:
            self.c.send(b"BDAT %d LAST\r\n" % len(body) + body)
            code, _ = self.c.getreply()
        else:
            code, _ = self.c.docmd("DATA")
            if code == 354:
                self.c.send(body + b".\r\n")
                code, _ = self.c.getreply()
        if not self.mail or not self.rcpts:
            # No valid recipients (RFC 5321 §4.1.4): refused, and the
            # transaction (MAIL) stays as it was, as Postfix keeps it.
            assert code in (503, 554), code
            return
        assert code == 250, code
        self.accepted += 1
        self._transaction_reset()

    @rule()
    def rset(self) -> None:
        assert self.c.docmd("RSET")[0] == 250
        self._transaction_reset()

    @rule(verb=st.sampled_from(["NOOP", "VRFY sm", "HELP"]))
    def harmless(self, verb: str) -> None:
        code, _ = self.c.docmd(verb)
        assert code in (250, 252, 214), code

    @rule()
    def reconnect(self) -> None:
        try:
            self.c.quit()
        except smtplib.SMTPException:
            pass
        self.c = self._connect()
        self.greeted = self.tls = False
        self._transaction_reset()

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def every_accepted_message_is_stored(self) -> None:
        assert self._inbox() == self.base + self.accepted

    def teardown(self) -> None:
        try:
            self.c.quit()
        except (smtplib.SMTPException, OSError):
            pass


def test_smtp_sessions_keep_the_model(server: ServerThread) -> None:
    global SERVER
    SERVER = server
    machine = SmtpSessions.TestCase
    machine.settings = settings(max_examples=30, stateful_step_count=20, deadline=None,
                                suppress_health_check=list(HealthCheck))
    machine().runTest()
