"""Issue #12 §3: every IMAP limit driven past its bound, and the server still
serves the next client.

Line, literal, nesting depth, connections per listener and the per-command
deadlines for a command's text and its literals.  (The autologout time and
connections per IP: test_imap_session.py.)  Limits are tiny so each crossing is cheap; the slow-peer tests
trickle octets more often than the autologout time, so only the deadline
can end them.  (Over-long lines and literals *with* their ends are also in
test_acceptance_bad_input.py.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.server import USERS, ServerThread, make_config, running_server
from support.wire import RawImap

ALICE = "alice@example.test"
LINE = 1000
LITERAL = 2048
IDLE = 60.0  # autologout: far longer than any pause between the trickled octets
DEADLINE = 0.4  # imap_line_timeout and imap_literal_timeout
NESTING = 10
TRICKLE = 0.05  # seconds between two octets of a slow peer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(
        tmp_path_factory.mktemp("imap-limits") / "data",
        imap_max_line_length=LINE,
        imap_max_literal_size=LITERAL,
        imap_idle_timeout=IDLE,
        imap_line_timeout=DEADLINE,
        imap_literal_timeout=DEADLINE,
        imap_max_nesting=NESTING,
    )
    with running_server(config) as srv:
        yield srv


def inbox_count(server: ServerThread) -> int:
    return server.call(server.store.get_mailbox, ALICE, "INBOX").messages


def next_client_works(server: ServerThread) -> None:
    """A new connection logs in and runs a command."""
    with RawImap(server.port("imap")) as c:
        assert c.greeting.startswith(b"* OK")
        c.login()
        c.ok("n", "SELECT INBOX")
        c.ok("z", "LOGOUT")


def trickle_until_closed(c: RawImap, piece: bytes = b"x", most: int = 2000) -> list[bytes]:
    """Send ``piece`` every TRICKLE seconds until the server closes; what it said."""
    for _ in range(most):
        try:
            c.send(piece)
        except OSError:  # reset: the server is gone
            break
        time.sleep(TRICKLE)
        c.sock.setblocking(False)
        try:
            chunk = c.sock.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            break
        finally:
            c.sock.setblocking(True)
        c.buf += chunk
        if not chunk or c.buf.endswith(b"\r\n") and b"* BYE" in c.buf:
            break
    else:
        pytest.fail("the server kept a trickling peer")
    return c.read_all()


def test_line_without_end_is_answered_at_the_limit(server: ServerThread) -> None:
    """BAD as soon as the line crosses the limit, before any LF; the flood that
    follows is dropped as it comes; the command after the LF runs."""
    with RawImap(server.port("imap")) as c:
        c.login()
        c.send(b"t1 NOOP " + b"x" * (LINE * 2))  # no LF
        assert c.readline() == b"t1 BAD Line too long\r\n"
        for _ in range(64):  # 4 MiB more of the same line, far beyond any buffer
            c.send(b"y" * 65536)
        c.send(b"\r\n")
        c.ok("t2", "NOOP")
    next_client_works(server)


def test_nesting_depth(server: ServerThread) -> None:
    """Lists or search keys nested past ``imap_max_nesting`` are BAD (not a
    crash, not a recursion error); the connection carries on."""
    with RawImap(server.port("imap")) as c:
        c.login()
        c.ok("s", "SELECT INBOX")
        c.ok("ok1", "SEARCH " + "(" * NESTING + "ALL" + ")" * NESTING)
        c.ok("ok2", "SEARCH " + "NOT " * NESTING + "ALL")
        over = NESTING + 1
        for i, line in enumerate([f"SEARCH {'(' * over}ALL{')' * over}",
                                  f"SEARCH {'NOT ' * over}ALL",
                                  f"SEARCH {'OR ALL ' * over}ALL",
                                  f"SEARCH {'(' * 300}ALL{')' * 300}",
                                  f"FETCH 1 {'(' * 400}FLAGS",
                                  f"STORE 1 +FLAGS {'(' * 400}",
                                  f"STATUS INBOX {'(' * 400}",
                                  f"ID {'(' * 400}",
                                  f"LIST {'(' * 400}",
                                  f"SELECT INBOX ({'(' * 400})"]):
            tag = f"d{i}"
            reply = c.cmd(tag, line)
            assert reply[-1].startswith(f"{tag} BAD".encode()), (line[:30], reply)
        c.ok("ok3", "NOOP")
    next_client_works(server)


def test_literal_over_the_limit(server: ServerThread) -> None:
    with RawImap(server.port("imap")) as c:
        c.login()
        before = inbox_count(server)
        c.send(f"a1 APPEND INBOX {{{LITERAL + 1}}}\r\n".encode())
        assert c.readline().startswith(b"a1 NO [TOOBIG]")
        c.ok("a2", "NOOP")
        assert inbox_count(server) == before
    next_client_works(server)


def test_trickled_command_line_hits_its_deadline(server: ServerThread) -> None:
    """One octet every TRICKLE s keeps autologout away, not the line deadline."""
    with RawImap(server.port("imap")) as c:
        c.login()
        c.send(b"t1 NOOP ")
        said = trickle_until_closed(c)
        assert said == [b"* BYE Command line took too long\r\n"], said
    next_client_works(server)


def test_trickled_lines_of_one_command_share_the_deadline(server: ServerThread) -> None:
    """Each line of a command complete, but the command never: the time of
    all its lines counts (a literal of 0 octets between them)."""
    with RawImap(server.port("imap")) as c:
        c.login()
        c.send(b"t1 LOGIN {0+}\r\n")
        said = trickle_until_closed(c, b" {0+}\r\n")
        assert said == [b"* BYE Command line took too long\r\n"], said
    next_client_works(server)


def test_trickled_literal_hits_its_deadline(server: ServerThread) -> None:
    with RawImap(server.port("imap")) as c:
        c.login()
        before = inbox_count(server)
        c.send(b"a1 APPEND INBOX {2000}\r\n")
        assert c.readline().startswith(b"+ ")
        said = trickle_until_closed(c)
        assert said == [b"* BYE Literal took too long\r\n"], said
    assert inbox_count(server) == before
    next_client_works(server)


def test_connections_per_listener(tmp_path: Path) -> None:
    srv = ServerThread(make_config(tmp_path / "d", max_connections=2))
    try:
        for address, password in USERS.items():
            srv.add_user(address, password)
        a = RawImap(srv.port("imap"))
        b = RawImap(srv.port("imap"))
        c = RawImap(srv.port("imap"))
        assert a.greeting.startswith(b"* OK") and b.greeting.startswith(b"* OK")
        assert c.greeting.startswith(b"* BYE"), c.greeting
        assert c.read_all() == []
        a.ok("z", "LOGOUT")
        assert a.read_all() == []  # the server closed it: its slot is free
        for x in (a, b, c):
            x.close()
        # The slot is released once the server has seen the close; a client
        # that comes a moment too early is refused and may retry.
        for _ in range(100):
            d = RawImap(srv.port("imap"))
            if d.greeting.startswith(b"* OK"):
                break
            d.close()
            time.sleep(0.02)
        with d:
            d.login()
            d.ok("n", "NOOP")
    finally:
        srv.stop()
