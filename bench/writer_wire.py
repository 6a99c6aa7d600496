"""Writer-service wire benchmark (not a test): requests/s and the cost of one
request round trip between a worker (``RemoteWriter``) and a real writer
service in another process, as with ``workers > 1``.

Two kinds of request: ``noop`` (``queue.remove`` of an id that is not there:
the wire, the round and its synced commit, nothing else) and ``deliver``
(a 4 KB message, as SMTP ingress sends).  ``--concurrency`` requests are in
flight at a time, so rounds group them as under load.  Prints requests/s,
wall µs per request, and CPU µs per request of the worker and of the
service process.

Run: ``.venv/bin/python bench/writer_wire.py [--count N] [--concurrency C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailserver.store import messages, queue  # noqa: E402
from mailserver.store import writer_wire as wire  # noqa: E402
from mailserver.store.model import NewMessage  # noqa: E402
from mailserver.store.remote_writer import RemoteWriter  # noqa: E402
from mailserver.store.store import Store  # noqa: E402

A = "bench@example.org"
_TICK = os.sysconf("SC_CLK_TCK")


async def _serve(data_dir: Path) -> None:
    store = await Store.open(data_dir)
    service = await store.start_writer_service()
    await store.add_domain("example.org")
    await store.add_account(A, "x")
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await service.close()
    await store.close()


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _request(kind: str, n: int) -> tuple[object, tuple[object, ...], int]:
    if kind == "noop":
        return queue.remove, (f"none{n}",), 0
    blob = (f"Subject: {n}\r\n\r\n".encode() + b"x" * 76 + b"\r\n") * 52
    args = ([NewMessage(A, "INBOX")], blob, hashlib.sha256(blob).digest(), b"facts", n, 0)
    return messages.deliver, args, len(blob)


async def _run(address: str, kind: str, count: int, concurrency: int, server: int) -> None:
    remote = RemoteWriter(address, asyncio.get_running_loop(), lambda ids: None)
    sem = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        fn, args, weight = _request(kind, n)
        async with sem:
            await remote.submit(fn, *args, weight=weight)  # type: ignore[arg-type]

    await asyncio.gather(*(one(n) for n in range(200)))  # warm up, connect
    c0, s0, t0 = time.process_time(), _cpu(server), time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    c1, s1, t1 = time.process_time(), _cpu(server), time.perf_counter()
    await remote.close()
    print(f"{kind:8} {count / (t1 - t0):8.0f} req/s  wall {(t1 - t0) / count * 1e6:6.1f} µs/req"
          f"  worker cpu {(c1 - c0) / count * 1e6:6.1f} µs/req"
          f"  service cpu {(s1 - s0) / count * 1e6:6.1f} µs/req", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    a = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    if a.serve:
        asyncio.run(_serve(Path(a.serve)))
        return
    with tempfile.TemporaryDirectory(prefix="wirebench-") as tmp:
        data_dir = Path(tmp) / "data"
        proc = subprocess.Popen([sys.executable, __file__, "--serve", str(data_dir)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            while (line := proc.stdout.readline()) and line.strip() != "ready":
                pass  # the service's own log lines
            address = str(data_dir / "run" / wire.SERVICE_NAME)
            for kind in ("noop", "deliver"):
                asyncio.run(_run(address, kind, a.count, a.concurrency, proc.pid))
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(60)


if __name__ == "__main__":
    main()
