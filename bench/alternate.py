"""One SMTP client alternating between two builds of our daemon (issue #13 §4)::

    python bench/alternate.py --base a720b57 [--messages 900] [--workers 0]

On a shared machine one session's figure swings by 2x from one minute to
the next (the disk's sync latency most of all), so two runs one after the
other compare the machine, not the code.  Here the revision ``--base`` is
``git archive``d into a temporary directory, it and this tree each run a
daemon (``workers`` as given; 0: one per core), both at once, and one client
sends one message per connection (EHLO, MAIL, RCPT, DATA of ~4 KB, QUIT)
three at a time to each in turn, the order flipped every turn.  Printed per
daemon: p50 and mean of the whole message and of end of DATA -> ``250``, ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT  # noqa: E402
from bench.servers import Ours  # noqa: E402

ALICE = ("alice@example.test", "alice-secret")
BODY = (b"From: <bench@example.net>\r\nTo: <alice@example.test>\r\nSubject: one\r\n\r\n"
        + (b"a" * 76 + b"\r\n") * 52 + b".\r\n")


class Build(Ours):
    """``Ours`` started from the source tree ``tree`` (not this checkout)."""

    def __init__(self, workdir: Path, tree: Path) -> None:
        super().__init__(workdir)
        self.tree = tree

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ready.clear()
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailserver", "run", "-c", str(self._config())],
            cwd=self.tree, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(60):
            self.stop()
            raise RuntimeError(f"the daemon of {self.tree} did not start within 60 s")


def one(port: int) -> tuple[float, float]:
    """One message on its own connection: (whole, end of DATA -> 250) in ms."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        f = s.makefile("rb")

        def reply() -> bytes:
            while True:
                line = f.readline()
                if line[3:4] != b"-":
                    return line

        reply()
        for command in (b"EHLO client.example\r\n", b"MAIL FROM:<bench@example.net>\r\n",
                        b"RCPT TO:<alice@example.test>\r\n", b"DATA\r\n"):
            s.sendall(command)
            reply()
        t1 = time.perf_counter()
        s.sendall(BODY)
        if not reply().startswith(b"250"):
            raise RuntimeError("message refused")
        t2 = time.perf_counter()
        s.sendall(b"QUIT\r\n")
        reply()
    return (time.perf_counter() - t0) * 1000, (t2 - t1) * 1000


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare this tree with")
    ap.add_argument("--messages", type=int, default=900, help="messages per daemon")
    ap.add_argument("--workers", type=int, default=0, help="the daemons' workers setting")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailserver-alternate-"))
    builds: dict[str, Build] = {}
    try:
        base = work / "base-tree"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.base],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        for name, tree in ((f"base {args.base}", base), ("this tree", ROOT)):
            b = Build(work / name.replace(" ", "-"), tree)
            b.workers = args.workers
            await b.add_users([ALICE])
            b.start()
            builds[name] = b
        ports = {name: b.port("smtp") for name, b in builds.items()}
        names = list(ports)
        for name in names * 10:  # warm up
            one(ports[name])
        got: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for turn in range(-(-args.messages // 3)):
            for name in names if turn % 2 == 0 else names[::-1]:
                got[name] += [one(ports[name]) for _ in range(3)]
        for name, times in got.items():
            whole, data = [t[0] for t in times], [t[1] for t in times]
            print(f"{name}: {len(times)} messages; whole p50 {statistics.median(whole):.3f} "
                  f"mean {statistics.mean(whole):.3f} ms; end of DATA -> 250 p50 "
                  f"{statistics.median(data):.3f} mean {statistics.mean(data):.3f} ms")
    finally:
        for b in builds.values():
            b.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
