"""The benchmark harness: ours against Postfix + Dovecot on this machine (issue #5).

    python bench/run.py [--quick] [--parts 1,2,3,4,5,6] [--rounds N] [--no-reference]
                        [--idle-conns N] [--store-messages N] [--profile]

Starts throwaway instances (bench/servers.py) in a temp dir on loopback,
runs the parts (bench/parts.py), prints one line per figure — ours, the
reference, and ours/reference (for rates >1 is better, for times and memory
<1 is better) — and writes every figure to ``bench/results/<date>.json``.
Stops only what it started.  Every part is bounded in messages and seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import outbound, parts  # noqa: E402
from bench.common import ROOT, corpus_messages, median, wait_port  # noqa: E402
from bench.fillstore import seq_header  # noqa: E402
from bench.servers import (  # noqa: E402
    DOMAIN,
    VMAIL_UID,
    Dovecot,
    Ours,
    Postfix,
    dovecot_version,
    free_port,
    postfix_version,
    version_ours,
)

ALICE = ("alice@example.test", "alice-secret")


class Report:
    """Prints figures as they come and keeps them for the JSON file."""

    def __init__(self, header: dict) -> None:
        self.header, self.figures = header, []
        for k, v in header.items():
            print(f"# {k}: {v}")

    def add(self, name: str, ours: float | None, ref: float | None, unit: str,
            note: str = "") -> None:
        ratio = ours / ref if ours is not None and ref not in (None, 0) else None

        def fmt(x: float | None) -> str:
            return "-" if x is None else f"{x:,.2f}" if abs(x) < 100 else f"{x:,.0f}"

        r = "-" if ratio is None else f"{ratio:.2f}x"
        print(f"{name:<52} ours {fmt(ours):>10} {unit:<9} ref {fmt(ref):>10}  ratio {r:>7}"
              f"{'  ' + note if note else ''}", flush=True)
        self.figures.append({"name": name, "ours": ours, "reference": ref, "unit": unit,
                             "ratio": ratio, "note": note})

    def line(self, text: str) -> None:
        print(text, flush=True)
        self.figures.append({"name": text, "note": "text"})


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _med(runs: list[dict], key: str) -> float:
    return median([r[key] for r in runs])


class Profiler:
    """py-spy (from bench/.venv) recording one process for a part, if asked for."""

    def __init__(self, enabled: bool, outdir: Path) -> None:
        exe = ROOT / "bench" / ".venv" / "bin" / "py-spy"
        self.exe = exe if enabled and exe.exists() else None
        self.outdir = outdir
        self.proc: subprocess.Popen | None = None

    def start(self, pid: int, label: str) -> None:
        if self.exe is None:
            return
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(self.exe), "record", "--nonblocking", "-r", "200", "-f", "raw", "-o",
             str(self.outdir / f"{label}.txt"), "--subprocesses", "-p", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


async def run(args: argparse.Namespace, work: Path, report: Report) -> None:
    sel = {int(p) for p in args.parts.split(",")}
    q = args.quick
    rounds = args.rounds or (1 if q else 3)
    n_load = 2 if q else 8
    load_users = [(f"load{i}@{DOMAIN}", f"load{i}-secret") for i in range(n_load)]
    users = [ALICE, *load_users]
    vmail = work / "vmail"
    (vmail / DOMAIN).mkdir(parents=True)
    os.chown(vmail, VMAIL_UID, VMAIL_UID)
    os.chown(vmail / DOMAIN, VMAIL_UID, VMAIL_UID)

    ours = Ours(work / "ours")
    ours.workers = args.workers
    await ours.add_users(users)
    ours.start()
    stop = [ours.stop]
    pf = dv = None
    profiler = Profiler(args.profile, ROOT / "bench" / "results" / "profiles")
    try:
        if args.reference:
            pf = Postfix(work / "postfix", vmail, free_port())
            pf.configure([u for u, _ in users])
            pf.start()
            stop.append(pf.stop)
            dv = Dovecot(work / "dovecot", vmail, free_port())
            dv.configure(users)
            dv.start()
            stop.append(dv.stop)
        ours_count = parts.ImapCounter(ours.port("imap"))
        t_ours = parts.Target("ours", ours.port("smtp"), ours.port("imap"),
                              lambda: ours.pids, ours_count)

        async def maildir_count() -> int:
            assert pf is not None
            return pf.delivered(ALICE[0])

        t_ref = None
        if pf is not None and dv is not None:
            t_ref = parts.Target("postfix+dovecot", pf.smtp_port, dv.imap_port,
                                 lambda: pf.pids + dv.pids, maildir_count)
            await wait_port(dv.imap_port)
        targets = [t for t in (t_ours, t_ref) if t is not None]

        if 1 in sel:
            await part1(report, targets, rounds, q, profiler, ours, args.ingress)
        if 2 in sel:
            await outbound.part2(report, work, rounds, q, args.reference, args.workers)
        if 3 in sel:
            await part3(report, targets, load_users, rounds, q, profiler, ours, args.mix_seconds)
        if 4 in sel:
            res = {t.name: await parts.idle_latency(t, 100.0, 1.0 if q else 10.0)
                   for t in targets}
            ref = res.get("postfix+dovecot")
            for key in ("p50_ms", "p99_ms", "max_ms"):
                report.add(f"[4] SMTP 250 -> IDLE EXISTS {key[:-3]}", res["ours"][key],
                           ref and ref[key], "ms",
                           f"{res['ours']['seen']}/{res['ours']['sent']} seen, "
                           f"{res['ours']['achieved_rate']:.0f} msg/s")
        if 5 in sel:
            count = args.idle_conns or (50 if q else 10000)
            res5 = {"ours": await parts.idle_memory(t_ours, load_users, count)}
            if t_ref is not None:
                assert dv is not None
                t_dv = parts.Target("dovecot", None, dv.imap_port, lambda: dv.pids)
                res5["ref"] = await parts.idle_memory(t_dv, load_users, min(count, 1000))
            r, f = res5["ours"], res5.get("ref")
            report.add(f"[5] RSS with {r['connections']} IDLE conns (total)", r["rss_mib"],
                       None, "MiB", f"{r['failed']} failed, {r['setup_s']:.0f} s to open")
            report.add("[5] RSS per idle connection", r["per_conn_kib"],
                       f and f["per_conn_kib"], "KiB",
                       f"ref: {f['connections']} conns, {f['rss_mib']:.0f} MiB in "
                       f"{f['processes']} processes" if f else "")
            report.add("[5] PSS per idle connection", r["pss_per_conn_kib"],
                       f and f["pss_per_conn_kib"], "KiB",
                       f"ours total PSS {r['pss_mib']:.0f} MiB"
                       + (f"; ref {f['pss_mib']:.0f} MiB" if f else ""))
        ours_count_close = ours_count.close
        await ours_count_close()
    finally:
        profiler.stop()
        for fn in reversed(stop):
            fn()
    if 6 in sel:
        await part6(report, work, args.store_messages or (2000 if q else 100_000), rounds, dv)
    if 7 in sel:
        await part7(report, work, q, args.reference, args.workers, args.storm_seconds)
    if 10 in sel:
        await part10(report, work, rounds, q, args.workers)
    if 11 in sel:
        await part11(report, work, rounds, q, args.workers, profiler)
    if 9 in sel:  # not in the default parts: it kills the daemon (issue 12 §4)
        await part9(report, work, args.soak_seconds or (5.0 if q else 90.0), args.workers)


async def _ingress_on_off(work: Path, what: str, rounds: int, workers: int,
                          switch: Callable[[Ours, bool], None], sessions: int, size: int,
                          count: int, profiler: Profiler | None = None
                          ) -> dict[bool, list[dict]]:
    """Part 1's ingress on a daemon of its own with ``switch(daemon, on)``
    turning a feature on and off, rounds alternating which goes first;
    ``profiler`` records the first round with the feature on."""
    res: dict[bool, list[dict]] = {True: [], False: []}
    for r in range(rounds):
        for on in (True, False) if r % 2 == 0 else (False, True):
            d = Ours(work / f"ours-{what}-{on}")
            d.workers = workers
            switch(d, on)
            await d.add_users([ALICE])
            d.start()
            try:
                counter = parts.ImapCounter(d.port("imap"))
                t = parts.Target("ours", d.port("smtp"), d.port("imap"),
                                 lambda d=d: d.pids, counter)  # type: ignore[misc]
                profile = profiler is not None and on and r == 0
                if profile:
                    profiler.start(d.pids[0], f"ingress-{what}-on")
                try:
                    res[on].append(await parts.ingress_once(t, sessions, size, count))
                finally:
                    if profile:
                        profiler.stop()
                await counter.close()
            finally:
                d.stop()
    return res


async def part10(report: Report, work: Path, rounds: int, quick: bool, workers: int) -> None:
    """Ingress with mail-flow analytics on and off (issue 14 §4: the cost stays under
    5 %): the same daemon, ``[analytics] enabled`` switched; rounds alternate."""
    sessions, size, count = 20, 4096, 40 if quick else 2000

    def analytics(d: Ours, on: bool) -> None:
        d.analytics = on

    res = await _ingress_on_off(work, "analytics", rounds, workers, analytics,
                                sessions, size, count)
    on, off = _med(res[True], "rate"), _med(res[False], "rate")
    label = f"[10] ingress {sessions} sess {size // 1024} KB"
    report.add(f"{label} analytics on", on, None, "msg/s", f"{count} msgs x {rounds}")
    report.add(f"{label} analytics off", off, None, "msg/s")
    report.add(f"{label} analytics cost", (1 - on / off) * 100 if off else None, None, "%",
               "target < 5 %")
    report.add(f"{label} CPU/msg on/off", _med(res[True], "cpu_ms_per_msg"),
               _med(res[False], "cpu_ms_per_msg"), "ms")


async def part11(report: Report, work: Path, rounds: int, quick: bool, workers: int,
                 profiler: Profiler | None = None) -> None:
    """Ingress with every check on (SPF for MAIL FROM and HELO, DKIM, ARC,
    DMARC, Authentication-Results) against the same with them off (issue 11
    §4): a loopback DNS server (tests/support/dnsserver.py) that answers at
    once serves the sender's SPF and DMARC records; rounds alternate.  The
    target is checks on >= 2x Postfix's rate (which runs no checks; part 1
    measures it, so ``--parts 1,11`` reports the ratio)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.dnsserver import DnsServer

    dns = DnsServer()
    dns.start()
    dns.add("example.net", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")
    dns.add("_dmarc.example.net", "TXT", "v=DMARC1; p=reject")
    sessions, size, count = 20, 4096, 40 if quick else 2000

    def checks(d: Ours, on: bool) -> None:
        d.extra = (f"[checks]\nverify = {'true' if on else 'false'}\n"
                   f"[dns]\nresolver_address = \"{dns.address}\"\n"
                   f"resolver_port = {dns.port}\n")

    try:
        res = await _ingress_on_off(work, "checks", rounds, workers, checks,
                                    sessions, size, count, profiler)
    finally:
        dns.stop()
    on, off = _med(res[True], "rate"), _med(res[False], "rate")
    label = f"[11] ingress {sessions} sess {size // 1024} KB"
    report.add(f"{label} checks on", on, None, "msg/s", f"{count} msgs x {rounds}")
    report.add(f"{label} checks off", off, None, "msg/s")
    report.add(f"{label} CPU/msg on/off", _med(res[True], "cpu_ms_per_msg"),
               _med(res[False], "cpu_ms_per_msg"), "ms")


async def part9(report: Report, work: Path, seconds: float, workers: int) -> None:
    """The crash soak (bench/crash_soak.py): ours only, no reference."""
    from bench import crash_soak

    workers = workers if workers in (1, 2) else 2
    ledger = await crash_soak.soak(seconds, workers, int(time.time()), work / "soak")
    print(crash_soak.report(ledger, seconds, workers), flush=True)
    for key in ("smtp_acked", "append_acked", "store_acked", "expunge_acked",
                "daemon_kills", "worker_kills", "checks"):
        report.add(f"[9] crash soak {key}", ledger.counts[key], None, "count")
    report.add("[9] crash soak violations", sum(ledger.violations.values()), None, "count",
               ", ".join(f"{k}={v}" for k, v in sorted(ledger.violations.items())))


async def part1(report: Report, targets: list[parts.Target], rounds: int, quick: bool,
                profiler: Profiler, ours: Ours, only: str = "") -> None:
    """Part 1; ``only`` (``--ingress``): the rows to run, as ``SESSIONSxKB``
    comma-separated (``"1x4"``: one session, 4 KB; empty: every row and the
    latency figure)."""
    plan = [(1, 4096, 20 if quick else 300), (20, 4096, 40 if quick else 2000),
            (100, 4096, 100 if quick else 2000), (1, 102400, 10 if quick else 150),
            (20, 102400, 20 if quick else 600), (100, 102400, 100 if quick else 600)]
    if only:
        rows = set(only.split(","))
        plan = [p for p in plan if f"{p[0]}x{p[1] // 1024}" in rows]
    for sessions, size, count in plan:
        res: dict[str, list[dict]] = {}
        for r in range(rounds):
            for t in targets:
                profile = t.name == "ours" and sessions == 20 and size == 4096 and r == 0
                if profile:
                    profiler.start(ours.pids[0], "ingress-20s-4k")
                res.setdefault(t.name, []).append(
                    await parts.ingress_once(t, sessions, size, count))
                if profile:
                    profiler.stop()
        o, f = res["ours"], res.get("postfix+dovecot")
        label = f"[1] ingress {sessions:>3} sess {size // 1024:>3} KB"
        report.add(f"{label} delivered", _med(o, "rate"), f and _med(f, "rate"), "msg/s",
                   f"{count} msgs x {rounds}")
        report.add(f"{label} CPU/msg", _med(o, "cpu_ms_per_msg"),
                   f and _med(f, "cpu_ms_per_msg"), "ms")
    if only:
        return
    lat = {t.name: await parts.ingress_latency(t, 20, 5 if quick else 50, 4096) for t in targets}
    ref = lat.get("postfix+dovecot")
    for key in ("p50_ms", "p99_ms"):
        report.add(f"[1] end-of-DATA -> 250, 20 conns, 4 KB, {key[:-3]}", lat["ours"][key],
                   ref and ref[key], "ms", f"n={lat['ours']['n']}")


async def part3(report: Report, targets: list[parts.Target], users: list[tuple[str, str]],
                rounds: int, quick: bool, profiler: Profiler, ours: Ours,
                mix_seconds: float) -> None:
    corpus = [m for m in corpus_messages() if len(m) < 200_000]
    per_user = 20 if quick else 300
    seconds = mix_seconds or (3.0 if quick else 15.0)
    for t in targets:
        assert t.imap_port is not None
        await parts.fill_imap(t.imap_port, users, corpus, per_user)
    res: dict[str, list[dict]] = {}
    for r in range(rounds):
        for t in targets:
            if t.name == "ours" and r == 0:
                profiler.start(ours.pids[0], "imap-mix")
            res.setdefault(t.name, []).append(await parts.imap_mix(t, users, seconds))
            if t.name == "ours" and r == 0:
                profiler.stop()
    o, f = res["ours"], res.get("postfix+dovecot")
    report.add(f"[3] IMAP mix, {len(users)} conns, total", _med(o, "ops_per_s"),
               f and _med(f, "ops_per_s"), "ops/s", f"{per_user} msgs/mailbox, {seconds:.0f} s")
    report.add("[3] IMAP mix CPU/op", _med(o, "cpu_ms_per_op"),
               f and _med(f, "cpu_ms_per_op"), "ms")
    for cmd in sorted(o[0]["commands"]):
        def m(runs: list[dict] | None, key: str, cmd: str = cmd) -> float | None:
            if not runs:
                return None
            vals = [x["commands"][cmd][key] for x in runs if cmd in x["commands"]]
            return median(vals) if vals else None
        report.add(f"[3]   {cmd} ops/s", m(o, "per_s"), m(f, "per_s"), "ops/s")
        report.add(f"[3]   {cmd} p99", m(o, "p99_ms"), m(f, "p99_ms"), "ms")


#: Part 7's paced phase: logins/s of all stormers together (one per client per
#: second at 20 clients): the workers' latency at a moderate login rate (the
#: reference gets what its hashing allows).
PACED_RATE = 20.0


async def part7(report: Report, work: Path, quick: bool, reference: bool, workers: int,
                seconds: float) -> None:
    """Login storm (issue #13 §1): ``n`` clients in a LOGIN/LOGOUT loop while ``n``
    others APPEND/STORE/EXPUNGE; their p50 against an unloaded run, and logins/s.
    Production password cost on both sides: argon2id m=64 MiB, t=3, p=1 (our
    shipped [auth] defaults; what ``doveadm pw -s ARGON2ID`` makes), the same
    PHC strings in our store and in Dovecot's passwd-file."""
    from argon2 import PasswordHasher  # the bench's venv is the project's

    from mailserver.auth.passwords import DEFAULT_PARAMS

    n = 2 if quick else 20
    seconds = seconds or (2.0 if quick else 10.0)
    stormers = [(f"storm{i}@{DOMAIN}", f"storm{i}-secret") for i in range(n)]
    busy = [(f"busy{i}@{DOMAIN}", f"busy{i}-secret") for i in range(n)]
    ph = PasswordHasher(time_cost=DEFAULT_PARAMS.time_cost, memory_cost=DEFAULT_PARAMS.memory_kib,
                        parallelism=DEFAULT_PARAMS.parallelism)
    hashes = {u: await asyncio.to_thread(ph.hash, p) for u, p in stormers + busy}
    ours = Ours(work / "ours-login")
    ours.workers = workers
    ours.auth = None  # the shipped [auth]: production cost, cache on
    await ours.add_users(stormers + busy, hashes)
    ours.start()
    res: dict[str, dict[str, dict]] = {}

    async def phases(t: parts.Target, warmup: int) -> dict[str, dict]:
        return {"idle": await parts.login_storm(t, busy, [], seconds),
                "cold": await parts.login_storm(t, busy, stormers, seconds),
                "warm": await parts.login_storm(t, busy, stormers, seconds, warmup),
                "paced": await parts.login_storm(t, busy, stormers, seconds, 0, PACED_RATE)}

    try:
        # Warm: every stormer has logged in before on every worker process
        # (6 untimed logins each land on both of 2 workers with p ~ 97 %).
        res["ours"] = await phases(parts.Target("ours", None, ours.port("imap"),
                                                lambda: ours.pids), 6)
    finally:
        ours.stop()
    if reference:
        vmail = work / "vmail-login"
        (vmail / DOMAIN).mkdir(parents=True)
        os.chown(vmail, VMAIL_UID, VMAIL_UID)
        os.chown(vmail / DOMAIN, VMAIL_UID, VMAIL_UID)
        dv = Dovecot(work / "dovecot-login", vmail, free_port())
        dv.configure(stormers + busy, hashes)
        dv.start()
        try:
            await wait_port(dv.imap_port)
            # No warm-up: without an auth cache there is nothing to warm (and
            # with one, Dovecot would still verify the hash per login).
            res["ref"] = await phases(parts.Target("dovecot", None, dv.imap_port,
                                                   lambda: dv.pids), 0)
        finally:
            dv.stop()
    o, f = res["ours"], res.get("ref")
    report.line(f"[7] {n} clients in a LOGIN/LOGOUT loop + {n} working, {seconds:g} s "
                "per phase; cold: first logins included; warm: each account logged in before; "
                f"paced: warm, at most {PACED_RATE:.0f} logins/s")

    def p50(side: dict | None, phase: str, cmd: str) -> float | None:
        return side[phase]["commands"].get(cmd, {}).get("p50_ms") if side else None

    for cmd in ("APPEND", "STORE", "EXPUNGE"):
        report.add(f"[7]   {cmd} p50 unloaded", p50(o, "idle", cmd), p50(f, "idle", cmd), "ms")
    for phase in ("cold", "warm", "paced"):
        per_login = o[phase]["cpu_s"] / max(1, o[phase]["logins"]) * 1000
        report.add(f"[7] {phase} storm: logins/s", o[phase]["logins_per_s"],
                   f and f[phase]["logins_per_s"], "logins/s",
                   f"ours: server CPU {per_login:.1f} ms per login (workers' commands included)")
        report.add(f"[7] {phase} storm: LOGIN p50", o[phase].get("login_p50_ms"),
                   f and f[phase].get("login_p50_ms"), "ms")
        for cmd in ("APPEND", "STORE", "EXPUNGE"):
            loaded, base = p50(o, phase, cmd), p50(o, "idle", cmd)
            ref_loaded, ref_base = p50(f, phase, cmd), p50(f, "idle", cmd)
            ratios = []
            if loaded and base:
                ratios.append(f"ours {loaded / base:.2f}x unloaded")
            if ref_loaded and ref_base:
                ratios.append(f"ref {ref_loaded / ref_base:.2f}x")
            report.add(f"[7]   {cmd} p50, {phase} storm", loaded, ref_loaded, "ms",
                       "; ".join(ratios))


async def part6(report: Report, work: Path, count: int, rounds: int,
                dv: Dovecot | None) -> None:
    big = Ours(work / "ours-big")
    await big.add_users([ALICE])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "fillstore.py"), str(big.data_dir), ALICE[0],
        "Big", str(count), "--chunk", str(max(count // 10, 1)), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    chunks = [json.loads(line) async for line in proc.stdout]
    await proc.wait()
    if proc.returncode != 0 or not chunks:
        raise RuntimeError("fillstore failed")
    report.add(f"[6] ingest, first {chunks[0]['messages']} msgs", chunks[0]["rate"], None,
               "msg/s", "Store.deliver, 64 in flight")
    report.add(f"[6] ingest, last chunk (to {chunks[-1]['messages']})", chunks[-1]["rate"],
               None, "msg/s", f"store {chunks[-1]['store_bytes'] / 2**30:.2f} GiB")
    note = "reference: not measured"
    servers: dict[str, tuple[int, int | None, Callable[[], list[int]]]] = {}
    if dv is not None:
        # The same messages (corpus in turn, each behind its X-Bench-Seq header)
        # written into a Maildir folder; Dovecot indexes it on the first SELECT,
        # which big_mailbox makes before timing anything.  Dovecot was stopped
        # with the other parts' servers: it runs again for this part alone.
        corpus = [m for m in corpus_messages() if len(m) < 1_000_000]
        t0 = time.perf_counter()
        written = await asyncio.to_thread(
            dv.fill_folder, ALICE[0], "Big",
            (seq_header(i) + corpus[i % len(corpus)] for i in range(count)))
        note = (f"ref: Dovecot, {written} files written into a Maildir folder in "
                f"{time.perf_counter() - t0:.0f} s; rounds interleaved with ours")
    # /metrics, for the event loop's lag while each command runs (issue #13 §3).
    big.extra = '[listeners.http]\nprotocol = "http"\naddress = "127.0.0.1"\nport = 0\n'
    big.start()
    try:
        servers["ours"] = (big.port("imap"), big.port("http"), lambda: big.pids)
        if dv is not None:
            dv.start()
            await wait_port(dv.imap_port)
            servers["ref"] = (dv.imap_port, None, lambda: dv.pids)
        # Both side by side, each round on one then the other (parts.big_mailbox).
        res = await parts.big_mailbox(servers, *ALICE, "Big", rounds)
    finally:
        big.stop()
        if dv is not None:
            dv.stop()
    ref = res.get("ref", {})
    for label, ms in res["ours"].items():
        if label.endswith(" stalls"):
            report.add(f"[6] {count} msgs: {label} (lag probes > 20 ms)", ms, None, "")
        elif label.endswith(" worst lag"):
            report.add(f"[6] {count} msgs: {label} (bucket bound)", ms, None, "ms")
        elif label.endswith(" cpu"):
            report.add(f"[6] {count} msgs: {label[:-4]}: server CPU", ms, ref.get(label),
                       "ms", "per round, all server processes")
        else:
            report.add(f"[6] {count} msgs: {label}", ms, ref.get(label), "ms", note)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny counts (seconds, for the smoke test)")
    ap.add_argument("--parts", default="1,2,3,4,5,6,7,10,11",
                    help="comma-separated part numbers")
    ap.add_argument("--rounds", type=int, default=0, help="rounds per figure (median)")
    ap.add_argument("--no-reference", dest="reference", action="store_false",
                    help="measure ours only (no Postfix/Dovecot)")
    ap.add_argument("--ingress", default="",
                    help="part 1 rows only, SESSIONSxKB comma-separated (e.g. 1x4,20x4)")
    ap.add_argument("--idle-conns", type=int, default=0, help="part 5 connections")
    ap.add_argument("--mix-seconds", type=float, default=0.0, help="part 3 duration per round")
    ap.add_argument("--store-messages", type=int, default=0, help="part 6 mailbox size")
    ap.add_argument("--storm-seconds", type=float, default=0.0,
                    help="part 7 duration of each phase (unloaded, storm)")
    ap.add_argument("--soak-seconds", type=float, default=0.0,
                    help="part 9 (crash soak) duration (default 90; 5 with --quick)")
    ap.add_argument("--workers", type=int, default=0,
                    help="our daemon's workers setting (default 0: one per core; 1: one process)")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy our daemon in parts 1 and 3 (bench/.venv must have py-spy)")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/)")
    args = ap.parse_args()
    _raise_nofile()
    header = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(), "python": platform.python_version(),
        "mailserver": version_ours(),
        "postfix": postfix_version() if args.reference else "not run",
        "dovecot": dovecot_version() if args.reference else "not run",
        "kernel": platform.release(), "quick": args.quick, "workers": args.workers,
    }
    report = Report(header)
    work = Path(tempfile.mkdtemp(prefix="mailserver-bench-"))
    os.chmod(work, 0o755)  # postfix, dovecot and uid 65534 must reach their dirs
    try:
        asyncio.run(run(args, work, report))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        out = args.out or ROOT / "bench" / "results" / (
            dt.datetime.now().strftime("%Y-%m-%dT%H%M%S") + ".json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"header": header, "figures": report.figures}, indent=1))
        print(f"# results: {out}")


if __name__ == "__main__":
    main()
