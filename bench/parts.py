"""The measurements, one coroutine per part of issue #5 §2 (see bench/README.md).

Each takes a ``Target`` (ports, the PIDs to account, how to count delivered
messages) so ours and the reference run the very same code.  Figures go to a
``Report`` (bench/run.py), which prints and records them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.common import ROOT, cpu_seconds, median, percentile, pss_bytes, rss_bytes, tree
from bench.imapc import Client, exists_count, status_messages
from bench.smtpc import Sender, latency_run, make_body

HOST = "127.0.0.1"
RCPT = "alice@example.test"


@dataclass
class Target:
    """One side of the comparison."""

    name: str  # "ours" or "postfix+dovecot"
    smtp_port: int | None
    imap_port: int | None
    pids: Callable[[], list[int]]  # server processes (trees) to account
    delivered: Callable[[], Awaitable[int]] | None = None  # messages in alice's INBOX
    extra: dict = field(default_factory=dict)


class ImapCounter:
    """Counts alice's INBOX with IMAP STATUS (RFC 3501 §6.3.10) over one connection."""

    def __init__(self, port: int, user: str = RCPT, password: str = "alice-secret") -> None:
        self.port, self.user, self.password = port, user, password
        self.client: Client | None = None

    async def __call__(self) -> int:
        if self.client is None:
            self.client = await Client.connect(HOST, self.port)
            await self.client.login(self.user, self.password)
        return status_messages(await self.client.command(b"STATUS INBOX (MESSAGES)"))

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None


# -- part 1: durable SMTP ingress ----------------------------------------------------

async def ingress_once(t: Target, sessions: int, size: int, count: int,
                       timeout: float = 600.0) -> dict:
    """smtp-source ``count`` messages over ``sessions`` parallel sessions (one connection
    per message), then wait until all are in the mailbox."""
    assert t.delivered is not None and t.smtp_port is not None
    base = await t.delivered()
    cpu0, t0 = cpu_seconds(t.pids()), time.perf_counter()
    if shutil.which("smtp-source"):
        proc = await asyncio.create_subprocess_exec(
            "smtp-source", "-l", str(size), "-m", str(count), "-s", str(sessions),
            "-f", "bench@example.net", "-t", RCPT, f"{HOST}:{t.smtp_port}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"smtp-source failed: {err.decode()[-300:]}")
    else:
        # No Postfix tools (the smoke test on a bare box): our own client, with
        # connections reused, so the figure is only a sanity check.
        per, extra = divmod(count, sessions)
        await asyncio.gather(*(latency_run(HOST, t.smtp_port, 1, per + (k < extra), size)
                               for k in range(sessions)))
    accepted = time.perf_counter() - t0
    deadline = time.perf_counter() + timeout
    while (n := await t.delivered()) < base + count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{t.name}: only {n - base}/{count} delivered")
        await asyncio.sleep(0.02)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(t.pids()) - cpu0
    return {"rate": count / wall, "accept_rate": count / accepted,
            "cpu_ms_per_msg": cpu / count * 1000}


async def ingress_latency(t: Target, sessions: int, per_session: int, size: int) -> dict:
    assert t.smtp_port is not None
    lat = await latency_run(HOST, t.smtp_port, sessions, per_session, size)
    return {"p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
            "n": len(lat)}


# -- part 3: IMAP mix ----------------------------------------------------------------

async def fill_imap(port: int, users: list[tuple[str, str]], corpus: list[bytes],
                    per_user: int) -> None:
    """APPEND ``per_user`` corpus messages to each user's INBOX (in corpus order)."""

    async def one(user: str, password: str) -> None:
        c = await Client.connect(HOST, port, timeout=120)
        try:
            await c.login(user, password)
            have = status_messages(await c.command(b"STATUS INBOX (MESSAGES)"))
            for i in range(have, per_user):
                await c.command(b"APPEND INBOX", corpus[i % len(corpus)])
        finally:
            await c.close()

    await asyncio.gather(*(one(u, p) for u, p in users))


async def imap_mix(t: Target, users: list[tuple[str, str]], seconds: float) -> dict:
    assert t.imap_port is not None
    cpu0 = cpu_seconds(t.pids())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "imapload.py"), "--port", str(t.imap_port),
        "--users", ",".join(f"{u}:{p}" for u, p in users), "--seconds", str(seconds),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"imapload failed against {t.name}")
    res = json.loads(out)
    res["cpu_ms_per_op"] = (cpu_seconds(t.pids()) - cpu0) / max(res["ops"], 1) * 1000
    return res


# -- part 7: login storm --------------------------------------------------------------

async def login_storm(t: Target, workers: list[tuple[str, str]],
                      stormers: list[tuple[str, str]], seconds: float, warmup: int = 0,
                      rate: float = 0.0) -> dict:
    """``bench/loginstorm.py`` against ``t``: ``workers`` APPEND/STORE/EXPUNGE
    while ``stormers`` (none: the unloaded baseline) log in and out in a loop,
    after ``warmup`` untimed logins each, at most ``rate`` logins/s (0: no cap)."""
    assert t.imap_port is not None
    cpu0 = cpu_seconds(t.pids())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "loginstorm.py"), "--port", str(t.imap_port),
        "--workers", ",".join(f"{u}:{p}" for u, p in workers),
        "--stormers", ",".join(f"{u}:{p}" for u, p in stormers), "--seconds", str(seconds),
        "--warmup", str(warmup), "--rate", str(rate), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"loginstorm failed against {t.name}")
    res = json.loads(out)
    res["cpu_s"] = cpu_seconds(t.pids()) - cpu0
    return res


# -- part 4: SMTP 250 -> IDLE EXISTS -------------------------------------------------

async def idle_latency(t: Target, rate: float, seconds: float,
                       password: str = "alice-secret") -> dict:
    """Send ``rate`` msg/s for ``seconds`` over one SMTP connection while one IMAP
    session IDLEs on the INBOX; per message, time from its 250 to the EXISTS that
    covers it (RFC 3501 §7.3.1; RFC 2177)."""
    assert t.smtp_port is not None and t.imap_port is not None
    c = await Client.connect(HOST, t.imap_port)
    await c.login(RCPT, password)
    base = exists_count(await c.command(b"SELECT INBOX")) or 0
    await c.idle_start()
    total = int(rate * seconds)
    acked: list[float] = []
    seen: dict[int, float] = {}

    async def watch() -> None:
        while len(seen) < total:
            line = await c.read_untagged()
            n = exists_count([line])
            if n is not None:
                now = time.perf_counter()
                for k in range(len(seen), n - base):
                    seen[k] = now

    watcher = asyncio.create_task(watch())
    s = await Sender.connect(HOST, t.smtp_port)
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await s.send("bench@example.net", RCPT, make_body(4096, i))
        acked.append(time.perf_counter())
    sent_for = time.perf_counter() - t0
    await s.close()
    try:
        await asyncio.wait_for(watcher, 60)
    except TimeoutError:
        pass
    await c.idle_done()
    await c.close()
    lat = [seen[k] - acked[k] for k in range(total) if k in seen]
    return {"p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
            "max_ms": max(lat, default=float("nan")) * 1000, "seen": len(lat), "sent": total,
            "achieved_rate": total / sent_for}


# -- part 5: idle connections ---------------------------------------------------------

async def idle_memory(t: Target, users: list[tuple[str, str]], count: int) -> dict:
    assert t.imap_port is not None
    base, base_pss = rss_bytes(t.pids()), pss_bytes(t.pids())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "idlemem.py"), "--port", str(t.imap_port),
        "--users", ",".join(f"{u}:{p}" for u, p in users), "--count", str(count),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 900)
    info = json.loads(line)
    await asyncio.sleep(1.0)  # let the server settle (lazy frees, kernel buffers)
    rss, pss = rss_bytes(t.pids()), pss_bytes(t.pids())
    procs = sum(len(tree(root)) for root in t.pids())
    proc.stdin.close()
    await proc.wait()
    ready = max(info["ready"], 1)
    return {"connections": info["ready"], "failed": info["failed"], "rss_mib": rss / 2**20,
            "baseline_mib": base / 2**20, "per_conn_kib": (rss - base) / ready / 1024,
            "pss_mib": pss / 2**20, "pss_per_conn_kib": (pss - base_pss) / ready / 1024,
            "processes": procs, "setup_s": info["seconds"]}


# -- part 6: store scale --------------------------------------------------------------

#: The event-loop lag histogram of our daemon (``mailserver_event_loop_lag_seconds``).
_LAG_BUCKET = "mailserver_event_loop_lag_seconds_bucket"


async def lag_buckets(port: int) -> dict[float, float]:
    """Our daemon's event-loop lag histogram from ``GET /metrics`` on the
    http listener ``port``: cumulative probe counts by bucket upper bound
    (seconds; ``inf`` is every probe).  Probes run every 0.1 s."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        text = (await reader.read()).decode("utf-8", "replace")
    finally:
        writer.close()
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(_LAG_BUCKET + "{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float(le)] = out.get(float(le), 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def stalls(before: dict[float, float], after: dict[float, float],
           limit: float = 0.02) -> tuple[int, float]:
    """Between two ``lag_buckets`` readings: how many probes came later than
    ``limit`` seconds, and the upper bound of the worst probe's bucket (0.0
    when no probe ran)."""
    def count(le: float) -> float:
        return after.get(le, 0.0) - before.get(le, 0.0)

    total = count(float("inf"))
    if total <= 0:
        return 0, 0.0
    late = int(total - count(limit)) if limit in after else 0
    worst = 0.0
    for le in sorted(after):
        if count(le) < total:
            continue
        worst = le
        break
    return late, worst


async def big_mailbox(servers: dict[str, tuple[int, int | None, Callable[[], list[int]]]],
                      user: str, password: str, mailbox: str,
                      rounds: int) -> dict[str, dict[str, float]]:
    """Part 6 on each of ``servers`` (name -> IMAP port, for ours the http
    port of ``/metrics``, and the server's process roots): the median time
    of each command on the big mailbox, ms, by server, and as ``"<label>
    cpu"`` the server's CPU per round, ms (all its processes; clock ticks of
    10 ms, summed over the rounds).  The servers run side by side and each round of
    a command runs on one server after the other, so a busy moment of the
    machine falls on both alike.  With a metrics port also, per command,
    ``"<label> stalls"``: probes of the event loop later than 20 ms, and
    ``"<label> worst lag"``: the upper bound of the worst probe's bucket, ms
    (over all the command's rounds, the other servers' included)."""
    clients: dict[str, Client] = {}
    out: dict[str, dict[str, float]] = {name: {} for name in servers}
    try:
        n = 1
        for name, (port, _, _) in servers.items():
            c = clients[name] = await Client.connect(HOST, port, timeout=600)
            await c.login(user, password)
            # The first SELECT also lets Dovecot build its index, untimed.
            n = exists_count(await c.command(b"SELECT " + mailbox.encode())) or 1
        head = b"1:%d" % min(n, 1000)  # a range past EXISTS is a BAD (RFC 9051 §6.4.5)
        tests: list[tuple[str, bytes]] = [
            ("STATUS", b"STATUS " + mailbox.encode() + b" (MESSAGES UIDNEXT UNSEEN)"),
            ("SELECT", b"SELECT " + mailbox.encode()),
            ("FETCH 1:* (FLAGS)", b"FETCH 1:* (FLAGS)"),
            (f"FETCH {head.decode()} (ENVELOPE)", b"FETCH " + head + b" (ENVELOPE)"),
            (f"FETCH {head.decode()} (BODYSTRUCTURE)", b"FETCH " + head + b" (BODYSTRUCTURE)"),
            ("SEARCH UNSEEN", b"SEARCH UNSEEN"),
            ('SEARCH SUBJECT "zzzz"', b'SEARCH SUBJECT "zzzz"'),
            ("UID SEARCH SINCE d BEFORE d", b"UID SEARCH SINCE 1-Jan-2000 BEFORE 1-Jan-2100"),
            # Alternating, so that every round changes every message.
            ("STORE 1:* +FLAGS / -FLAGS", b"STORE 1:* %sFLAGS.SILENT (\\Flagged)"),
        ]
        for label, cmd in tests:
            times: dict[str, list[float]] = {name: [] for name in servers}
            lag0 = {name: await _settled_lag(mp) for name, (_, mp, _) in servers.items()
                    if mp is not None}
            cpu0 = {name: cpu_seconds(roots()) for name, (_, _, roots) in servers.items()}
            for r in range(rounds):
                cmd_r = cmd % (b"-" if r % 2 else b"+") if b"%s" in cmd else cmd
                for name, c in clients.items():
                    t0 = time.perf_counter()
                    await c.command(cmd_r)
                    times[name].append(time.perf_counter() - t0)
            for name, (_, _, roots) in servers.items():
                out[name][label] = median(times[name]) * 1000
                out[name][label + " cpu"] = (cpu_seconds(roots()) - cpu0[name]) / rounds * 1000
            for name, before in lag0.items():
                late, worst = stalls(before, await _settled_lag(servers[name][1]))
                out[name][label + " stalls"] = late
                out[name][label + " worst lag"] = worst * 1000
    finally:
        for c in clients.values():
            await c.close()
    return out


async def _settled_lag(metrics_port: int | None) -> dict[float, float]:
    """``lag_buckets`` once the daemon has flushed its last probes (its
    processes add their tallies to the shared counters once a second)."""
    if metrics_port is None:
        return {}
    await asyncio.sleep(1.2)
    return await lag_buckets(metrics_port)
