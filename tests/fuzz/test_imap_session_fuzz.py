"""Hypothesis against the real IMAP listener: random and mutated command lines
over a raw socket in each state of RFC 3501 §3 (not authenticated,
authenticated, selected).

Property: every line is answered with well-formed responses (RFC 3501 §7:
``* ...`` untagged, ``+ ...`` continuation, or our tag with OK/NO/BAD), the
server never hangs (every read has a timeout) nor drops the connection except
on purpose (BYE first, §7.1.5), and the session then still answers NOOP.
After the fuzzing a normal delivery and fetch still work.

One server for the module.  The fuzzing account is ``fuzz@example.test``,
whose mailboxes the mutated commands may freely create, rename and delete;
connections are reused across examples and re-opened only when closed.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fuzzing import LINE_BYTES, mutated
from support.fuzzing import WIRE_FUZZ as FUZZ
from support.server import USERS, ServerThread, make_config, running_server
from support.wire import RawImap

FUZZ_USER, FUZZ_PASSWORD = "fuzz@example.test", "fuzz-secret"
LINE_LIMIT = 4096
LITERAL_LIMIT = 20_000
TAG = b"F"
#: §7: untagged, continuation, or tagged status.  Any tag, not only ours: bytes of a
#: mutated line that the server took as a command of their own get their own tag
#: (see test_acceptance_bad_input's NUL-octet test for the one known case).
RESPONSE = re.compile(rb"^(?:\* |\+(?: |\r\n)|[\x21-\x7e]+ (?:OK|NO|BAD)\b)")

SEEDS = [
    b"CAPABILITY", b"NOOP", b"ID NIL", b"ID (\"name\" \"fuzz\")", b"NAMESPACE",
    b"LOGIN fuzz@example.test wrong", b'LOGIN "a\\"b" {3}', b"AUTHENTICATE PLAIN",
    b"AUTHENTICATE PLAIN AGZ1enoAd3Jvbmc=", b"ENABLE CONDSTORE",
    b"SELECT INBOX", b"EXAMINE Sent", b'CREATE "fz/a b"', b"DELETE fz", b"RENAME fz fy",
    b"SUBSCRIBE fz", b"UNSUBSCRIBE fz", b'LIST "" *', b'LIST "" %', b'LSUB "" *',
    b"STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)",
    b"APPEND INBOX (\\Seen) {13+}\r\nSubject: x\r\n\r\n", b"APPEND INBOX {5}",
    b"FETCH 1:* (FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)",
    b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY[1.MIME]<0.10>)",
    b"FETCH 1,2:3 BODY[TEXT]", b"FETCH * RFC822.HEADER", b"UID FETCH 1:* (FLAGS)",
    b"STORE 1 +FLAGS.SILENT (\\Seen $Key)", b"STORE 1:* -FLAGS (\\Deleted)",
    b"UID STORE 1 FLAGS ()", b"SEARCH OR FROM a (SUBJECT b NOT SEEN) SINCE 1-Jan-2020",
    b"SEARCH CHARSET UTF-8 TEXT {3+}\r\nabc", b"UID SEARCH UID 1:* LARGER 10",
    b"COPY 1 Trash", b"UID COPY 1:* Sent", b"MOVE 1 Junk", b"EXPUNGE", b"UID EXPUNGE 1",
    b"CHECK", b"CLOSE", b"UNSELECT", b"IDLE", b"LOGOUT", b"STARTTLS",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(tmp_path_factory.mktemp("imap-fuzz") / "data",
                         imap_max_line_length=LINE_LIMIT, imap_max_literal_size=LITERAL_LIMIT,
                         max_connections_per_ip=1000, max_auth_failures=1000)
    with running_server(config, {**USERS, FUZZ_USER: FUZZ_PASSWORD}) as srv:
        with imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=30) as imap:
            imap.login(FUZZ_USER, FUZZ_PASSWORD)
            for i in range(3):
                imap.append("INBOX", None, None,
                            f"From: a@b.test\r\nSubject: seed {i}\r\n\r\nbody {i}\r\n".encode())
        yield srv


class Conn(RawImap):
    """``RawImap`` that answers continuation requests and notes the server closing."""

    def __init__(self, port: int) -> None:
        super().__init__(port, max_line=LINE_LIMIT * 64)
        self.closed = False
        assert self.greeting.startswith(b"* OK")

    def command(self, data: bytes) -> list[bytes]:
        """Send ``F <data>``; answer continuations; return the responses up to
        the tagged one, or up to EOF when the server closed (after BYE)."""
        out: list[bytes] = []
        self.send(TAG + b" " + data + b"\r\n")
        while True:
            line = self.readline()
            if not line:
                self.closed = True
                assert any(r.startswith(b"* BYE") for r in out), (
                    f"connection dropped without BYE after {data!r}: {out!r}")
                return out
            assert line.endswith(b"\r\n") and RESPONSE.match(line), (
                f"malformed response {line!r} to {data!r}")
            out.append(line)
            if line.startswith(b"+"):
                self.send(continuation_answer(data))
            elif line.startswith(TAG + b" "):
                return out

    def send(self, data: bytes) -> None:
        """Send; if the server has already closed (it may BYE and close before it
        reads all of an over-long line), the reads that follow show its BYE."""
        try:
            super().send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


def continuation_answer(data: bytes) -> bytes:
    """What a client sends after ``+``: the literal it announced, DONE for IDLE,
    ``*`` (cancel) for AUTHENTICATE."""
    verb = data.lstrip().split(b" ", 1)[0].upper()
    if verb == b"IDLE":
        return b"DONE\r\n"
    m = re.search(rb"\{(\d+)\}$", data)
    if m is not None and verb != b"AUTHENTICATE":
        return b"x" * int(m.group(1)) + b"\r\n"
    return b"*\r\n"


def prepare(data: bytes) -> bytes:
    """Complete a non-synchronizing literal at the end of the line (RFC 7888):
    the client sends its bytes without waiting, so the fuzzer must too."""
    m = re.search(rb"\{(\d{1,6})\+\}$", data)
    if m is not None and int(m.group(1)) <= LITERAL_LIMIT:
        return data + b"\r\n" + b"x" * int(m.group(1))
    return data


class Sessions:
    """One reusable connection per state, re-opened when the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conns: dict[str, Conn] = {}

    def get(self, state: str) -> Conn:
        conn = self.conns.get(state)
        if conn is not None and not conn.closed:
            # Put it back in its state: the last command may have changed it.
            if state == "auth":
                conn.command(b"UNSELECT")
            elif state == "selected":
                conn.command(b"SELECT INBOX")
            if not conn.closed:
                return conn
        if conn is not None:
            conn.close()
        conn = Conn(self.port)
        if state in ("auth", "selected"):
            assert conn.command(f"LOGIN {FUZZ_USER} {FUZZ_PASSWORD}".encode())[-1].startswith(
                b"F OK")
        if state == "selected":
            assert conn.command(b"SELECT INBOX")[-1].startswith(b"F OK")
        self.conns[state] = conn
        return conn

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


@pytest.fixture(scope="module")
def sessions(server: ServerThread) -> Iterator[Sessions]:
    s = Sessions(server.port("imap"))
    yield s
    s.close()


def exercise(sessions: Sessions, state: str, data: bytes) -> None:
    conn = sessions.get(state)
    if state == "noauth" and data.lstrip().upper().startswith(b"STARTTLS"):
        data = b"NOOP"  # a successful STARTTLS hands the socket to TLS; not fuzzed here
    responses = conn.command(prepare(data))
    if conn.closed:
        return  # closed on purpose, with BYE (checked in ``command``)
    tagged = responses[-1]
    assert tagged.startswith((b"F OK", b"F NO", b"F BAD")), responses
    if tagged.startswith(b"F OK") and data.lstrip().upper().startswith(b"LOGOUT"):
        assert any(r.startswith(b"* BYE") for r in responses), responses  # §6.1.3
        assert conn.readline() == b"", "LOGOUT completed but the connection stayed open"
        conn.closed = True
        return
    noop = conn.command(b"NOOP")
    assert conn.closed or noop[-1].startswith(b"F OK"), (data, noop)


#: Grammar pieces a mutation may insert: the places a parser gets wrong.
TOKENS = [b"(", b")", b'"', b"\\", b"{", b"}", b"[", b"]", b"*", b":", b",", b"<", b">", b"{0}",
          b"{4294967296}", b"NIL", b" ", b"\x00", b"\xff", b"%"]
_MUTATED = mutated(SEEDS, max_repeat=40, tokens=TOKENS)
LINES = st.one_of(LINE_BYTES, _MUTATED, _MUTATED, _MUTATED)


@FUZZ
@given(data=LINES)
def test_fuzz_not_authenticated(sessions: Sessions, data: bytes) -> None:
    exercise(sessions, "noauth", data)


@FUZZ
@given(data=LINES)
def test_fuzz_authenticated(sessions: Sessions, data: bytes) -> None:
    exercise(sessions, "auth", data)


@FUZZ
@given(data=LINES)
def test_fuzz_selected(sessions: Sessions, data: bytes) -> None:
    exercise(sessions, "selected", data)


def test_normal_session_after_fuzzing(server: ServerThread) -> None:
    body = b"Subject: after the fuzz\r\n\r\nstill here\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        assert client.sendmail("x@remote.test", ["alice@example.test"], body) == {}
    with imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30) as imap:
        assert imap.login("alice@example.test", USERS["alice@example.test"])[0] == "OK"
        typ, data = imap.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        typ, data = imap.fetch("1", "(BODY.PEEK[TEXT])")
        assert typ == "OK" and data[0][1] == b"still here\r\n"
        # The fuzz account still works too.
        imap.logout()
    with imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30) as imap:
        assert imap.login(FUZZ_USER, FUZZ_PASSWORD)[0] == "OK"
        assert imap.noop()[0] == "OK"
