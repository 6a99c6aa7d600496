"""Crash soak (issue 12 §4): ``kill -9`` under load, then check what was acknowledged.

    python bench/crash_soak.py [--seconds 90] [--workers 1|2] [--seed N]
    ./scripts/bench --parts 9 --soak-seconds 90        (the same, from bench/run.py)

For ``--seconds`` the daemon (``python -m mailserver run``, data dir in a temp
dir) serves concurrent load on alice's INBOX:

* ``smtp``: SMTP senders; a message counts as acknowledged at its ``250``;
* ``append``: IMAP APPEND; acknowledged at the tagged OK, whose APPENDUID
  (RFC 4315) names its UID;
* ``store``: ``UID STORE +FLAGS (\\Flagged)`` on appended messages; the flag
  is acknowledged at the tagged OK;
* ``expunge``: APPENDs messages of its own, then ``\\Deleted`` + ``UID
  EXPUNGE`` (RFC 4315); the removal is acknowledged at the tagged OK;
* ``idle``: a session IDLEs on INBOX and reads what it is told.

Every message carries a unique token in its Subject.  At random moments
(0.5 to 4 s apart) the soak kills with SIGKILL either the whole daemon (the
supervisor and all its processes; then starts it again on the same data dir)
or, with ``--workers 2``, one worker (the supervisor restarts it).  After
every kill, once the daemon serves again, and at the end, one IMAP session
checks:

* every acknowledged message is there (unless an expunge of it was sent: one
  that was not acknowledged may still have happened), with the UID its
  APPENDUID named, and carries every acknowledged flag;
* every acknowledged expunge holds (the message is gone);
* no UID names two different messages across the whole run (UIDs never repeat);
* UIDVALIDITY stays, UIDNEXT and HIGHESTMODSEQ (RFC 7162) never go back, and
  UIDNEXT is above every UID seen.

It prints the counts (operations acknowledged, kills, checks, violations by
kind); exit status 1 when any check failed.  Not run by the test suite
beyond a few seconds' smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import tree  # noqa: E402
from bench.imapc import Client, ImapError  # noqa: E402
from bench.servers import DOMAIN, Ours  # noqa: E402
from bench.smtpc import Sender, SmtpError  # noqa: E402

HOST = "127.0.0.1"
USER = f"alice@{DOMAIN}"
PASSWORD = "soak-password"
TOKEN = re.compile(rb"soak-([a-z]+-\d+)")
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT|HIGHESTMODSEQ) (\d+)\]")
#: Errors that mean "the server went away": the operation is not acknowledged.
GONE = (OSError, ImapError, SmtpError, TimeoutError, asyncio.IncompleteReadError, EOFError)


def message(token: str) -> bytes:
    """A small message whose Subject carries ``token``."""
    return (f"From: soak@example.net\r\nTo: {USER}\r\nSubject: soak-{token}\r\n"
            f"Message-ID: <{token}@soak.example.net>\r\n\r\n"
            + f"body of {token}\r\n" * 20).encode()


@dataclass
class Ledger:
    """What the server acknowledged, and what the checks found."""

    delivered: set[str] = field(default_factory=set)  # tokens (SMTP 250, APPEND OK)
    uid_of: dict[str, int] = field(default_factory=dict)  # APPENDUID
    flagged: set[str] = field(default_factory=set)  # tokens with an acknowledged \Flagged
    expunged: set[str] = field(default_factory=set)  # tokens with an acknowledged EXPUNGE
    doomed: set[str] = field(default_factory=set)  # tokens an EXPUNGE was sent for
    ever: dict[int, str] = field(default_factory=dict)  # UID -> token, whole run
    uidvalidity: int = 0
    uidnext: int = 0
    highestmodseq: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def violation(self, kind: str, detail: str) -> None:
        self.violations[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {detail}")


class Soak:
    def __init__(self, ours: Ours, ledger: Ledger, rng: random.Random) -> None:
        self.ours = ours
        self.ledger = ledger
        self.rng = rng
        self.stop = False
        self.serving = asyncio.Event()
        self._n = Counter[str]()

    def token(self, kind: str) -> str:
        self._n[kind] += 1
        return f"{kind}-{self._n[kind]}"

    async def imap(self) -> Client:
        c = await Client.connect(HOST, self.ours.port("imap"), timeout=20.0)
        await c.login(USER, PASSWORD)
        return c

    async def tagged(self, c: Client, line: bytes, literal: bytes | None = None) -> bytes:
        """Send a command; return its tagged line (OK only; else ImapError)."""
        tag = c._tag()
        async with asyncio.timeout(c.timeout):
            if literal is None:
                c.writer.write(tag + b" " + line + b"\r\n")
            else:
                c.writer.write(tag + b" " + line + b" {%d+}\r\n" % len(literal) + literal
                               + b"\r\n")
            while True:
                resp = await c._response_line()
                if resp.startswith(tag + b" "):
                    if resp[len(tag) + 1:len(tag) + 3] != b"OK":
                        raise ImapError(resp[:200].decode("latin-1"))
                    return resp

    async def forever(self, name: str, body) -> None:  # type: ignore[no-untyped-def]
        """Run ``body()`` again and again until the soak stops; a dead server
        costs a reconnect after it serves again."""
        while not self.stop:
            await self.serving.wait()
            try:
                await body()
            except GONE:
                self.ledger.counts[f"{name}_interrupted"] += 1
                await asyncio.sleep(0.05)

    # -- load ----------------------------------------------------------------------

    async def smtp_load(self) -> None:
        s = await Sender.connect(HOST, self.ours.port("smtp"), timeout=20.0)
        try:
            while not self.stop:
                token = self.token("smtp")
                await s.send("soak@example.net", USER, message(token), timeout=20.0)
                self.ledger.delivered.add(token)
                self.ledger.counts["smtp_acked"] += 1
        finally:
            await s.close()

    async def append_load(self) -> None:
        c = await self.imap()
        try:
            while not self.stop:
                token = self.token("append")
                line = await self.tagged(c, b"APPEND INBOX", message(token))
                m = _APPENDUID.search(line)
                self.ledger.delivered.add(token)
                if m:
                    self.ledger.uid_of[token] = int(m.group(2))
                self.ledger.counts["append_acked"] += 1
                await asyncio.sleep(0.01)
        finally:
            await c.close()

    async def store_load(self) -> None:
        c = await self.imap()
        try:
            await self.tagged(c, b"SELECT INBOX")
            while not self.stop:
                candidates = [t for t in self.ledger.uid_of if t.startswith("append-")
                              and t not in self.ledger.flagged]
                if not candidates:
                    await asyncio.sleep(0.05)
                    continue
                token = self.rng.choice(candidates)
                uid = self.ledger.uid_of[token]
                # A UID this session has not been told of yet is no message to
                # it (RFC 3501 §6.4.8): OK without a change.  Only a FETCH
                # back for the UID acknowledges the flag.
                untagged = await c.command(b"UID STORE %d +FLAGS (\\Flagged)" % uid)
                if any(b"FETCH" in u and b"UID %d" % uid in u and b"\\Flagged" in u
                       for u in untagged):
                    self.ledger.flagged.add(token)
                    self.ledger.counts["store_acked"] += 1
                else:
                    await c.command(b"NOOP")
                await asyncio.sleep(0.01)
        finally:
            await c.close()

    async def expunge_load(self) -> None:
        c = await self.imap()
        try:
            await self.tagged(c, b"SELECT INBOX")
            while not self.stop:
                token = self.token("doomed")
                line = await self.tagged(c, b"APPEND INBOX", message(token))
                self.ledger.delivered.add(token)
                m = _APPENDUID.search(line)
                if not m:
                    continue
                uid = int(m.group(2))
                self.ledger.uid_of[token] = uid
                # From here the message may go without an acknowledgement (the
                # EXPUNGE committed, the daemon died before it replied).
                self.ledger.doomed.add(token)
                await self.tagged(c, b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
                untagged = await c.command(b"UID EXPUNGE %d" % uid)
                if any(u.rstrip().endswith(b"EXPUNGE") for u in untagged):
                    self.ledger.expunged.add(token)
                    self.ledger.counts["expunge_acked"] += 1
        finally:
            await c.close()

    async def idle_load(self) -> None:
        c = await self.imap()
        try:
            await self.tagged(c, b"SELECT INBOX")
            while not self.stop:
                await c.idle_start()
                try:
                    async with asyncio.timeout(1.0):
                        while True:
                            line = await c.read_untagged()
                            if line.endswith(b"EXISTS\r\n"):
                                self.ledger.counts["idle_exists_seen"] += 1
                except TimeoutError:
                    pass
                await c.idle_done()
        finally:
            await c.close()

    # -- the checks ----------------------------------------------------------------

    async def check(self) -> None:
        """One IMAP session's view against the ledger (see the module docstring)."""
        led = self.ledger
        # What was acknowledged before this moment: snapshot it first, so an
        # operation acknowledged while the check reads is not demanded yet.
        delivered, expunged = set(led.delivered), set(led.expunged)
        doomed = set(led.doomed)
        flagged, uid_of = set(led.flagged), dict(led.uid_of)
        c = await self.imap()
        try:
            untagged = await c.command(b"SELECT INBOX (CONDSTORE)")
            codes = {m.group(1): int(m.group(2)) for u in untagged for m in _CODE.finditer(u)}
            seen: dict[str, tuple[int, bytes]] = {}
            fetched = await c.command(b"UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS "
                                      b"(SUBJECT)])")
        finally:
            await c.close()
        led.counts["checks"] += 1
        top = max(led.ever, default=0)  # UIDs seen by earlier checks
        for resp in fetched:
            uid_m, tok_m, flags_m = _UID.search(resp), TOKEN.search(resp), _FLAGS.search(resp)
            if not (uid_m and tok_m and flags_m):
                continue
            uid, token = int(uid_m.group(1)), tok_m.group(1).decode()
            if token in seen:
                led.violation("duplicate_message", f"{token} at UIDs {seen[token][0]}, {uid}")
            seen[token] = (uid, flags_m.group(1))
            before = led.ever.setdefault(uid, token)
            if before != token:
                led.violation("uid_reused", f"UID {uid} was {before}, now {token}")
        for token in delivered - expunged:
            if token not in seen:
                if token not in doomed:
                    led.violation("acknowledged_message_missing", token)
            elif token in uid_of and seen[token][0] != uid_of[token]:
                led.violation("uid_changed", f"{token}: APPENDUID {uid_of[token]}, "
                                             f"now {seen[token][0]}")
        for token in flagged - expunged:
            if token in seen and b"\\Flagged" not in seen[token][1]:
                led.violation("acknowledged_flag_missing", token)
        for token in expunged:
            if token in seen:
                led.violation("acknowledged_expunge_undone", token)
        validity = codes.get(b"UIDVALIDITY", 0)
        if led.uidvalidity and validity != led.uidvalidity:
            led.violation("uidvalidity_changed", f"{led.uidvalidity} -> {validity}")
        led.uidvalidity = validity
        for key, attr in ((b"UIDNEXT", "uidnext"), (b"HIGHESTMODSEQ", "highestmodseq")):
            now, last = codes.get(key, 0), getattr(led, attr)
            if now < last:
                led.violation(f"{attr}_went_back", f"{last} -> {now}")
            setattr(led, attr, max(now, last))
        if codes.get(b"UIDNEXT", 0) <= top:
            led.violation("uidnext_not_above_uids", f"UIDNEXT {codes.get(b'UIDNEXT')}, "
                                                    f"UID {top} seen")

    # -- the killer ----------------------------------------------------------------

    def _children(self) -> list[int]:
        assert self.ours.proc is not None
        return [p for p in tree(self.ours.proc.pid) if p != self.ours.proc.pid]

    async def kill_one(self, workers: int) -> None:
        """SIGKILL the daemon (and every process of it), or one worker."""
        assert self.ours.proc is not None
        whole = workers < 2 or self.rng.random() < 0.5
        if not whole:
            kids = self._children()
            if not kids:
                whole = True
            else:
                os.kill(self.rng.choice(kids), signal.SIGKILL)
                self.ledger.counts["worker_kills"] += 1
                # The supervisor starts a new one; the check waits until IMAP
                # answers again (connections queue on the shared socket).
                await self.check_when_serving()
                return
        self.serving.clear()
        pids = tree(self.ours.proc.pid)
        for pid in pids:  # the supervisor first, then what it left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        await asyncio.to_thread(self.ours.proc.wait)
        self.ours.proc = None
        self.ledger.counts["daemon_kills"] += 1
        await asyncio.to_thread(self.ours.start)
        self.ledger.counts["restarts"] += 1
        self.serving.set()
        await self.check_when_serving()

    async def check_when_serving(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                await self.check()
                return
            except GONE:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def soak(seconds: float, workers: int, seed: int, workdir: Path) -> Ledger:
    """Run the soak for ``seconds``; return the ledger (counts and violations)."""
    rng = random.Random(seed)
    ours = Ours(workdir)
    ours.workers = workers
    await ours.add_users([(USER, PASSWORD)])
    ledger = Ledger()
    s = Soak(ours, ledger, rng)
    ours.start()
    s.serving.set()
    loads = [("smtp", s.smtp_load), ("smtp", s.smtp_load), ("append", s.append_load),
             ("store", s.store_load), ("expunge", s.expunge_load), ("idle", s.idle_load)]
    tasks = [asyncio.create_task(s.forever(name, body)) for name, body in loads]
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(0.5, 4.0))
            await s.kill_one(workers)
        s.stop = True
        await asyncio.wait(tasks, timeout=30)
        await s.check_when_serving()  # the last word, after the load stopped
    finally:
        s.stop = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ours.stop()
    return ledger


def report(ledger: Ledger, seconds: float, workers: int) -> str:
    """The counts as text (one ``name value`` per line)."""
    lines = [f"crash soak: {seconds:.0f} s, workers={workers}"]
    for key in ("smtp_acked", "append_acked", "store_acked", "expunge_acked",
                "idle_exists_seen", "daemon_kills", "worker_kills", "restarts", "checks"):
        lines.append(f"  {key:<32} {ledger.counts[key]}")
    interrupted = sum(v for k, v in ledger.counts.items() if k.endswith("_interrupted"))
    lines.append(f"  {'operations_interrupted':<32} {interrupted}")
    lines.append(f"  {'uids_seen':<32} {len(ledger.ever)}")
    lines.append(f"  {'violations':<32} {sum(ledger.violations.values())}")
    for kind, n in sorted(ledger.violations.items()):
        lines.append(f"    {kind:<30} {n}")
    lines += [f"    e.g. {e}" for e in ledger.examples]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=90.0, help="how long the load runs")
    ap.add_argument("--workers", type=int, default=1, help="the daemon's workers (1 or 2)")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--json", type=Path, help="also write the counts here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crash-soak-") as tmp:
        ledger = asyncio.run(soak(args.seconds, args.workers, args.seed, Path(tmp)))
    print(report(ledger, args.seconds, args.workers) + f"\n  seed {args.seed}")
    if args.json:
        args.json.write_text(json.dumps({"counts": dict(ledger.counts),
                                         "violations": dict(ledger.violations),
                                         "examples": ledger.examples}, indent=1))
    return 1 if ledger.violations else 0


if __name__ == "__main__":
    sys.exit(main())
