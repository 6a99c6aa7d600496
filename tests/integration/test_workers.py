"""The multi-process daemon (``workers = 2``): supervisor, restarts, shared store, IDLE.

Each test runs ``python -m mailserver run -c CONF`` with port-0 listeners; the
supervisor binds one SO_REUSEPORT socket per worker on one port per listener,
so every worker serves the same ports.  Which worker takes a connection is the
kernel's choice (a hash of the 4-tuple): tests learn it from the
``smtp_connect`` / ``imap_connect`` log line (it carries ``worker``, and an SMTP
``conn_id`` starts with the serving process's pid in hex), opening connections
one at a time until they have one on each worker they need.
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from support.daemon import Daemon, add_user, inbox_uids
from support.wire import RawImap

from mailserver.config import Listener
from mailserver.process.sockets import bind_group

TIMEOUT = 45.0
PASSWORD = "correct horse battery"

CONFIG = """\
hostname = "mx.example.test"
data_dir = "data"
domains = ["example.test"]
workers = 2

[log]
format = "json"

[limits]
shutdown_grace = 5.0

[listeners.smtp]
protocol = "smtp"
address = "127.0.0.1"
port = 0

[listeners.imap]
protocol = "imap"
address = "127.0.0.1"
port = 0
"""


def start(conf: Path) -> Daemon:
    """``mailserver run -c CONF``, waiting at most ``TIMEOUT`` for each event."""
    return Daemon("-c", conf, timeout=TIMEOUT)


def worker_pids(d: Daemon) -> dict[int, int]:
    """Worker index -> pid of its latest process, from the ``worker_ready`` lines."""
    return {e["worker"]: e["worker_pid"] for e in d.logged("worker_ready")}


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "mailserver.toml"
    path.write_text(CONFIG, encoding="utf-8")
    add_user(path, "alice@example.test", PASSWORD)
    return path


@pytest.fixture
def daemon(conf: Path) -> Iterator[Daemon]:
    d = start(conf)
    workers = {d.wait_for("worker_ready")["worker"] for _ in range(2)}
    assert workers == {0, 1}
    d.wait_for("server_ready")
    try:
        yield d
    finally:
        d.kill()


def uids(data_dir: Path) -> list[int]:
    """UIDs in alice's INBOX, straight from the store (daemon stopped or not)."""
    return inbox_uids(data_dir, "alice@example.test")


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


def connect_on(d: Daemon, worker: int, connect: Callable[[], C], event: str) -> C:
    """A connection served by ``worker``, told by its ``event`` log line.

    One that lands on another worker is closed at once, and its disconnect
    awaited, before the next try: held open, such extras would use up the
    slots of a small ``max_connections_per_ip`` (shared by the workers) and
    the wanted connection would be refused."""
    for _ in range(100):
        client = connect()
        landed = d.wait_for(event)
        if landed["worker"] == worker:
            return client
        client.close()
        d.wait_for(event.replace("connect", "disconnect"), conn_id=landed["conn_id"])
    pytest.fail(f"no {event} landed on worker {worker}")


def smtp_on(d: Daemon, worker: int) -> smtplib.SMTP:
    return connect_on(
        d, worker, lambda: smtplib.SMTP("127.0.0.1", d.ports["smtp"], timeout=TIMEOUT),
        "smtp_connect")


def send(client: smtplib.SMTP, n: int) -> None:
    body = f"From: bob@remote.test\r\nTo: alice@example.test\r\nSubject: {n}\r\n\r\nhi {n}\r\n"
    refused = client.sendmail("bob@remote.test", ["alice@example.test"], body.encode())
    assert refused == {}


def greeting(port: int) -> tuple[socket.socket, bytes]:
    """A raw connection to ``port`` and the first line the server sent on it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    with sock.makefile("rb") as file:
        return sock, file.readline()


def pid_of(conn_id: str) -> int:
    """The serving process of an SMTP connection: its ``conn_id`` is "<pid hex>.<n>"."""
    return int(conn_id.partition(".")[0], 16)


def imap_on(d: Daemon, worker: int) -> RawImap:
    imap = connect_on(d, worker, lambda: RawImap(d.ports["imap"], TIMEOUT), "imap_connect")
    assert imap.greeting.startswith(b"* OK")
    return imap


# -- tests ---------------------------------------------------------------------------


def test_two_workers_share_ports_and_stop_cleanly_on_sigterm(conf: Path) -> None:
    d = start(conf)
    try:
        ready = [d.wait_for("worker_ready") for _ in range(2)]
        d.wait_for("server_ready")
        pids = {e["worker_pid"] for e in ready}
        assert len(pids) == 2 and d.proc.pid not in pids
        started = d.logged("listener_started")
        # Every worker serves both listeners, on the supervisor's ports.
        assert {(e["worker"], e["listener"]) for e in started} == {
            (0, "smtp"), (0, "imap"), (1, "smtp"), (1, "imap")}
        assert {e["listener"]: e["port"] for e in started} == d.ports
        assert d.stop() == 0
        stopped = d.logged("worker_stopped")
        assert sorted((e["worker"], e["clean"]) for e in stopped) == [(0, True), (1, True)]
        for pid in pids:  # no worker outlives the supervisor
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", d.ports["smtp"]), timeout=TIMEOUT)
    finally:
        d.kill()


def test_deliveries_through_both_workers_get_distinct_uids(daemon: Daemon, conf: Path) -> None:
    clients = [smtp_on(daemon, 0), smtp_on(daemon, 1), smtp_on(daemon, 0), smtp_on(daemon, 1)]
    errors: list[BaseException] = []

    def run(client: smtplib.SMTP, base: int) -> None:
        try:
            for i in range(10):
                send(client, base + i)
            client.quit()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c, 100 * k)) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors
    assert daemon.stop() == 0
    got = uids(conf.parent / "data")
    assert len(got) == 40 and len(set(got)) == 40
    delivered = daemon.logged("message_accepted")
    assert {e["worker"] for e in delivered} == {0, 1}
    assert len({e["queue_id"] for e in delivered}) == 40


def test_killed_worker_is_restarted_and_acknowledged_mail_survives(
    daemon: Daemon, conf: Path
) -> None:
    victim = smtp_on(daemon, 1)
    send(victim, 1)  # acknowledged by worker 1: fsynced before the 250
    pids = worker_pids(daemon)
    os.kill(pids[1], signal.SIGKILL)
    exited = daemon.wait_for("worker_exited", worker=1)
    assert exited["status"] == -signal.SIGKILL
    again = daemon.wait_for("worker_ready", worker=1)
    assert again["worker_pid"] != pids[1]
    victim.close()
    # Both workers serve again; mail through the new worker 1 lands too.
    client = smtp_on(daemon, 1)
    send(client, 2)
    client.quit()
    other = smtp_on(daemon, 0)
    send(other, 3)
    other.quit()
    assert daemon.stop() == 0
    assert len(set(uids(conf.parent / "data"))) == 3


def test_delivery_on_one_worker_wakes_idle_on_the_other(daemon: Daemon) -> None:
    for idler_worker, sender_worker in ((0, 1), (1, 0)):
        imap = imap_on(daemon, idler_worker)
        try:
            imap.ok("a1", f'LOGIN alice@example.test "{PASSWORD}"')
            exists = [x for x in imap.ok("a2", "SELECT INBOX") if x.endswith(b"EXISTS\r\n")]
            count = int(exists[0].split()[1])
            imap.sock.sendall(b"a3 IDLE\r\n")
            assert imap.readline().startswith(b"+")
            client = smtp_on(daemon, sender_worker)
            send(client, count + 1)
            client.quit()
            # No timing assertion: the socket timeout only bounds a failure.
            assert imap.readline() == f"* {count + 1} EXISTS\r\n".encode()
            imap.sock.sendall(b"DONE\r\n")
            assert imap.until_tagged("a3")[-1].startswith(b"a3 OK")
        finally:
            imap.close()
    assert daemon.stop() == 0


def test_bind_group_shares_one_port_and_the_kernel_spreads_connections() -> None:
    listener = Listener(name="smtp", protocol="smtp", address="127.0.0.1", port=0)
    group = bind_group(listener, 3)
    clients: list[socket.socket] = []
    try:
        ports = {s.getsockname()[1] for s in group}
        assert len(ports) == 1 and 0 not in ports
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in group)
        port = ports.pop()
        clients = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                   for _ in range(60)]
        # Every handshake is done: each queued connection sits in one socket's backlog.
        accepted = []
        for sock in group:
            sock.setblocking(False)
            n = 0
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
            accepted.append(n)
        assert sum(accepted) == 60
        assert all(n > 0 for n in accepted), accepted  # 3 * (2/3)**60: never by chance
    finally:
        for c in clients:
            c.close()
        for sock in group:
            sock.close()


def test_connections_are_spread_over_both_workers(daemon: Daemon) -> None:
    # Each worker writes its log lines in batches: lines of the two workers
    # interleave in any order, so the SMTP events are taken before any IMAP one.
    smtp = [greeting(daemon.ports["smtp"]) for _ in range(40)]
    imap: list[tuple[socket.socket, bytes]] = []
    try:
        assert all(line.startswith(b"220 ") for _, line in smtp)
        smtp_events = daemon.take("smtp_connect", 40)
        imap = [greeting(daemon.ports["imap"]) for _ in range(40)]
        assert all(line.startswith(b"* OK") for _, line in imap)
        imap_events = daemon.take("imap_connect", 40)
    finally:
        for sock, _ in smtp + imap:
            sock.close()
    pids = worker_pids(daemon)
    # The pid in each conn_id is the process that really served it.
    assert all(pid_of(e["conn_id"]) == pids[e["worker"]] for e in smtp_events)
    # All on one worker: (1/2)**39 for a fair hash.
    assert set(Counter(e["worker"] for e in smtp_events)) == {0, 1}
    assert set(Counter(e["worker"] for e in imap_events)) == {0, 1}
    assert daemon.stop() == 0


def test_connections_queued_for_a_killed_worker_wait_for_its_restart(daemon: Daemon) -> None:
    old = worker_pids(daemon)
    os.kill(old[1], signal.SIGKILL)
    # Connect at once, before the supervisor has even noticed: those the kernel
    # queues on worker 1's socket (the supervisor keeps it listening) must be
    # greeted by the new worker 1, not reset.
    conns = [greeting(daemon.ports["smtp"]) for _ in range(20)]
    try:
        assert [line[:4] for _, line in conns] == [b"220 "] * 20
        served = [pid_of(e["conn_id"]) for e in daemon.take("smtp_connect", 20)]
    finally:
        for sock, _ in conns:
            sock.close()
    new = worker_pids(daemon)
    assert new[1] != old[1] and new[0] == old[0]
    assert old[1] not in served
    assert set(served) == {old[0], new[1]}
    assert daemon.stop() == 0


# -- one writer for every worker (store/writer_service.py) ----------------------------


def test_the_supervisor_commits_for_every_worker(daemon: Daemon, conf: Path) -> None:
    for worker in (0, 1, 0, 1):
        client = smtp_on(daemon, worker)
        send(client, worker)
        client.quit()
    assert daemon.stop() == 0
    (stopped,) = daemon.logged("writer_service_stopped")
    # Every delivery was a request to the supervisor's writer; no worker has one.
    assert "worker" not in stopped
    assert stopped["requests"] >= 4 and stopped["committed"] >= stopped["requests"]
    assert {e["worker"] for e in daemon.logged("message_accepted")} == {0, 1}
    assert len(uids(conf.parent / "data")) == 4


def test_a_worker_killed_under_load_loses_no_acknowledged_mail(
    daemon: Daemon, conf: Path
) -> None:
    acked: dict[int, list[int]] = {0: [], 1: []}
    errors: dict[int, BaseException] = {}
    killed = threading.Event()

    def run(worker: int, client: smtplib.SMTP) -> None:
        n = 1000 * (worker + 1)
        try:
            # Worker 0 goes on well past the kill: the writer still serves it.
            while not killed.is_set() or (worker == 0 and len(acked[0]) < 40):
                n += 1
                send(client, n)
                acked[worker].append(n)
        except (smtplib.SMTPException, OSError) as exc:
            errors[worker] = exc

    clients = {0: smtp_on(daemon, 0), 1: smtp_on(daemon, 1)}
    threads = [threading.Thread(target=run, args=(w, c)) for w, c in clients.items()]
    for t in threads:
        t.start()
    daemon.take("message_accepted", 10)  # under load
    os.kill(worker_pids(daemon)[1], signal.SIGKILL)
    daemon.wait_for("worker_exited", worker=1)
    killed.set()
    for t in threads:
        t.join(TIMEOUT)
    assert 0 not in errors and len(acked[0]) >= 40
    assert 1 in errors  # its connection died with it
    for client in clients.values():
        client.close()
    daemon.wait_for("worker_ready", worker=1)
    assert daemon.stop() == 0
    stored = uids(conf.parent / "data")
    # Each acknowledged message is there (one more may have committed unacknowledged).
    assert len(stored) == len(set(stored)) >= len(acked[0]) + len(acked[1])


def test_cli_writes_while_the_daemon_serves(daemon: Daemon, conf: Path) -> None:
    client = smtp_on(daemon, 0)
    stop = threading.Event()
    sent: list[int] = []

    def deliver() -> None:
        while not stop.is_set():
            send(client, len(sent))
            sent.append(len(sent))

    thread = threading.Thread(target=deliver)
    thread.start()
    try:
        add_user(conf, "carol@example.test", PASSWORD)  # its own writer, its own process
    finally:
        stop.set()
        thread.join(TIMEOUT)
    client.quit()
    # The workers see the CLI's account; mail to it lands through the service.
    imap = imap_on(daemon, 1)
    try:
        imap.ok("a1", f'LOGIN carol@example.test "{PASSWORD}"')
    finally:
        imap.close()
    other = smtp_on(daemon, 1)
    assert other.sendmail("bob@remote.test", ["carol@example.test"], b"Subject: c\r\n\r\nc\r\n") \
        == {}
    other.quit()
    assert daemon.stop() == 0
    assert len(uids(conf.parent / "data")) == len(sent)
    assert len(inbox_uids(conf.parent / "data", "carol@example.test")) == 1


# -- limits shared by every worker (counters/) ------------------------------------------

PER_IP = 3


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Daemon]:
    """Two workers, ``max_connections_per_ip = 3`` and a 1 s failed-login step."""
    path = tmp_path / "mailserver.toml"
    path.write_text(CONFIG.replace(
        "shutdown_grace = 5.0",
        f"shutdown_grace = 5.0\nmax_connections_per_ip = {PER_IP}\n"
        "auth_failure_delay = 1.0\nauth_failure_delay_max = 8.0"), encoding="utf-8")
    add_user(path, "alice@example.test", PASSWORD)
    d = start(path)
    d.wait_for("server_ready")
    try:
        yield d
    finally:
        d.kill()


class Greeted:
    """A raw connection and the first line the server sent on it."""

    def __init__(self, port: int) -> None:
        self.sock, self.first = greeting(port)

    def close(self) -> None:
        self.sock.close()


def test_per_ip_limit_holds_across_workers(limited: Daemon) -> None:
    smtp, imap = limited.ports["smtp"], limited.ports["imap"]
    held: list[Greeted] = []
    try:
        for _ in range(PER_IP):  # the whole allowance, wherever the kernel puts them
            held.append(Greeted(smtp))
            assert held[-1].first.startswith(b"220 "), held[-1].first
            assert limited.wait_for("smtp_connect")["admitted"] is True
        # Counted per worker, a worker holding fewer than PER_IP would let more
        # in: every extra one is refused, on each worker.
        refused_on: set[int] = set()
        for _ in range(100):
            extra = Greeted(smtp)
            extra.close()
            assert extra.first.startswith(b"421 4.7.0 "), extra.first
            event = limited.wait_for("smtp_connect")
            assert event["admitted"] is False
            refused_on.add(event["worker"])
            if refused_on == {0, 1}:
                break
        assert refused_on == {0, 1}
        # Slots are per listener: IMAP has its own allowance, held the same way.
        imaps = [Greeted(imap) for _ in range(PER_IP)]
        held += imaps
        assert all(c.first.startswith(b"* OK") for c in imaps)
        extra = Greeted(imap)
        extra.close()
        assert extra.first == b"* BYE Too many connections\r\n"
        # A closed connection gives its slot back, to whichever worker asks next.
        held.pop(0).close()
        limited.wait_for("smtp_disconnect")
        for _ in range(20):  # the release is a one-way message: it may trail the connect
            fresh = Greeted(smtp)
            fresh.close()
            if fresh.first.startswith(b"220 "):
                break
        assert fresh.first.startswith(b"220 "), fresh.first
    finally:
        for c in held:
            c.close()


def test_killed_worker_gives_its_slots_back(limited: Daemon) -> None:
    smtp = limited.ports["smtp"]
    held = [connect_on(limited, 1, lambda: Greeted(smtp), "smtp_connect")]
    assert held[0].first.startswith(b"220 ")
    try:
        while len(held) < PER_IP:
            held.append(Greeted(smtp))
            assert held[-1].first.startswith(b"220 ")
        os.kill(worker_pids(limited)[1], signal.SIGKILL)
        limited.wait_for("worker_ready", worker=1)
        # Worker 1's slots went with its connection to the counter service.
        fresh = Greeted(smtp)
        fresh.close()
        assert fresh.first.startswith(b"220 "), fresh.first
    finally:
        for c in held:
            c.close()


def test_failed_logins_are_counted_across_workers(limited: Daemon) -> None:
    """The n-th failure from one IP waits base * 2**(n-2) seconds, whichever
    worker saw the earlier ones (auth/throttle.py)."""
    delays = []
    for worker in (0, 1, 0):
        imap = imap_on(limited, worker)
        try:
            began = time.monotonic()
            imap.send(b'a1 LOGIN alice@example.test "wrong"\r\n')
            assert imap.readline().startswith(b"a1 NO ")
            delays.append(time.monotonic() - began)
        finally:
            imap.close()
    assert delays[0] < 0.9  # the first failure is free (a typo)
    assert delays[1] >= 0.9  # second failure, first on worker 1: the base delay
    assert delays[2] >= 1.9  # third: twice the base
