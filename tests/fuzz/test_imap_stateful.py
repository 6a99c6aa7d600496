"""A model-based (hypothesis stateful) test of whole IMAP sessions against
the real server: random sequences of APPEND (also MULTIAPPEND), STORE in
every mode, COPY, MOVE, EXPUNGE, UID EXPUNGE, SELECT/EXAMINE switches,
reconnects and a second session, with the expected mailbox contents kept in
a plain model (RFC 3501 §2.3: UIDs ascend and are never reused, flags are
what STORE left, EXPUNGE removes exactly the \\Deleted messages; RFC 4315
UID EXPUNGE; RFC 6851 MOVE).

Invariants after every step: the server's ``UID FETCH 1:* (FLAGS)`` of the
selected mailbox equals the model (UIDs and flags, \\Recent aside), STATUS
MESSAGES/UNSEEN of both mailboxes agree with it, and UIDNEXT never goes back.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from support.server import ServerThread, make_config, running_server

USER, PASSWORD = "state@example.test", "state-secret"
BOXES = ("INBOX", "Other")
FLAGS = ("\\Seen", "\\Flagged", "\\Deleted", "$Work")
_FETCH = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(tmp_path_factory.mktemp("stateful") / "data")
    with running_server(config, {USER: PASSWORD}) as srv:
        yield srv


SERVER: ServerThread | None = None


class ImapSessions(RuleBasedStateMachine):
    """The model: for each mailbox, ``{uid: flags}`` and its UIDNEXT."""

    def __init__(self) -> None:
        super().__init__()
        assert SERVER is not None
        self.port = SERVER.port("imap")
        self.model: dict[str, dict[int, frozenset[str]]] = {b: {} for b in BOXES}
        self.uidnext: dict[str, int] = {}
        self.box = "INBOX"
        self.c = self._connect()
        self.serial = 0

    def _connect(self) -> imaplib.IMAP4:
        c = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        c.login(USER, PASSWORD)
        return c

    @initialize()
    def empty_both(self) -> None:
        # One server for every example: start each from empty mailboxes.
        for box in BOXES:
            typ, _ = self.c.select(box)
            if typ != "OK":
                assert self.c.create(box)[0] == "OK"
                self.c.select(box)
            self.c.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Deleted)")
            self.c.expunge()
            self.uidnext[box] = self._status(box)[2]
        assert self.c.select("INBOX")[0] == "OK"

    def _status(self, box: str) -> tuple[int, int, int]:
        typ, data = self.c.status(box, "(MESSAGES UNSEEN UIDNEXT)")
        assert typ == "OK", data
        got = dict(re.findall(rb"(MESSAGES|UNSEEN|UIDNEXT) (\d+)", data[0]))
        return int(got[b"MESSAGES"]), int(got[b"UNSEEN"]), int(got[b"UIDNEXT"])

    def _message(self) -> bytes:
        self.serial += 1
        return b"Subject: m%d\r\n\r\nbody %d\r\n" % (self.serial, self.serial)

    # -- rules -----------------------------------------------------------------------

    @rule(box=st.sampled_from(BOXES), flags=st.frozensets(st.sampled_from(FLAGS), max_size=3),
          count=st.integers(1, 3))
    def append(self, box: str, flags: frozenset[str], count: int) -> None:
        if count == 1:
            typ, data = self.c.append(box, "(" + " ".join(sorted(flags)) + ")", None,
                                      self._message())
            assert typ == "OK", data
        else:  # MULTIAPPEND (RFC 3502): raw, as imaplib has no form for it
            parts = []
            for _ in range(count):
                msg = self._message()
                parts.append(b"(" + " ".join(sorted(flags)).encode() + b") {%d+}\r\n" % len(msg)
                             + msg)
            tag = self.c._new_tag()
            self.c.send(tag + b" APPEND " + box.encode() + b" " + b" ".join(parts) + b"\r\n")
            typ, data = self.c._command_complete("APPEND", tag)
            assert typ == "OK", data
        for _ in range(count):
            self.model[box][self.uidnext[box]] = flags
            self.uidnext[box] += 1

    @rule(box=st.sampled_from(BOXES))
    def select(self, box: str) -> None:
        assert self.c.select(box)[0] == "OK"
        self.box = box

    @rule(mode=st.sampled_from(["+FLAGS", "-FLAGS", "FLAGS"]),
          flags=st.frozensets(st.sampled_from(FLAGS), max_size=3), pick=st.integers(0, 20),
          silent=st.booleans())
    def store(self, mode: str, flags: frozenset[str], pick: int, silent: bool) -> None:
        uids = sorted(self.model[self.box])
        if not uids:
            return
        chosen = uids[pick % len(uids):]
        item = mode + (".SILENT" if silent else "")
        typ, data = self.c.uid("STORE", ",".join(map(str, chosen)), item,
                               "(" + " ".join(sorted(flags)) + ")")
        assert typ == "OK", data
        for uid in chosen:
            old = self.model[self.box][uid]
            self.model[self.box][uid] = (old | flags if mode == "+FLAGS"
                                         else old - flags if mode == "-FLAGS" else flags)

    @rule(pick=st.integers(0, 20), move=st.booleans())
    def copy(self, pick: int, move: bool) -> None:
        uids = sorted(self.model[self.box])
        if not uids:
            return
        chosen = uids[pick % len(uids):]
        other = BOXES[1 - BOXES.index(self.box)]
        typ, data = self.c.uid("MOVE" if move else "COPY", ",".join(map(str, chosen)), other)
        assert typ == "OK", data
        for uid in chosen:
            self.model[other][self.uidnext[other]] = self.model[self.box][uid]
            self.uidnext[other] += 1
            if move:
                del self.model[self.box][uid]

    @rule(by_uid=st.booleans(), pick=st.integers(0, 20))
    def expunge(self, by_uid: bool, pick: int) -> None:
        model = self.model[self.box]
        if by_uid:  # RFC 4315: only the named messages that are \Deleted
            uids = sorted(model)
            if not uids:
                return
            chosen = uids[pick % len(uids):]
            assert self.c.uid("EXPUNGE", ",".join(map(str, chosen)))[0] == "OK"
        else:
            chosen = list(model)
            assert self.c.expunge()[0] == "OK"
        for uid in chosen:
            if "\\Deleted" in model[uid]:
                del model[uid]

    @rule()
    def reconnect(self) -> None:
        self.c.logout()
        self.c = self._connect()
        assert self.c.select(self.box)[0] == "OK"

    @rule(flags=st.frozensets(st.sampled_from(FLAGS), max_size=2))
    def other_session_appends(self, flags: frozenset[str]) -> None:
        other = self._connect()
        try:
            typ, _ = other.append(self.box, "(" + " ".join(sorted(flags)) + ")", None,
                                  self._message())
            assert typ == "OK"
        finally:
            other.logout()
        self.model[self.box][self.uidnext[self.box]] = flags
        self.uidnext[self.box] += 1
        # This session learns of it at its next command (EXISTS, RFC 3501 §7.3.1).
        assert self.c.noop()[0] == "OK"

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def selected_matches_the_model(self) -> None:
        typ, data = self.c.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK", data
        got: dict[int, frozenset[str]] = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not line:
                continue
            m = _FETCH.search(line)
            assert m is not None, line
            uid = int(m.group(1) or m.group(4))
            flags = (m.group(2) if m.group(1) else m.group(3)).decode().split()
            got[uid] = frozenset(f for f in flags if f != "\\Recent")
        assert got == self.model[self.box]

    @invariant()
    def status_matches_the_model(self) -> None:
        for box in BOXES:
            messages, unseen, uidnext = self._status(box)
            model = self.model[box]
            assert messages == len(model)
            assert unseen == sum(1 for f in model.values() if "\\Seen" not in f)
            assert uidnext == self.uidnext[box]  # never back, never reused

    def teardown(self) -> None:
        self.c.logout()


def test_imap_sessions_keep_the_model(server: ServerThread) -> None:
    global SERVER
    SERVER = server
    machine = ImapSessions.TestCase
    machine.settings = settings(max_examples=30, stateful_step_count=20, deadline=None,
                                suppress_health_check=list(HealthCheck))
    machine().runTest()
