"""kill -9 with 100 messages queued and the receiver down; restart; receiver up:
all 100 arrive (at-least-once: the next attempt is saved before each attempt)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from support.dnsserver import dest_dns
from support.smtpreceiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
PROC = ROOT / "tests" / "support" / "queue_proc.py"
COUNT = 100


async def _spawn(data_dir: Path, dns_port: int, smtp_port: int, count: int):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return await asyncio.create_subprocess_exec(
        sys.executable, str(PROC), str(data_dir), str(dns_port), str(smtp_port), str(count),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
        cwd=ROOT,
    )


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()


async def test_kill_9_then_restart_delivers_all(tmp_path: Path) -> None:
    dns_server = dest_dns()
    rx = Receiver()
    port = await rx.start()
    await rx.stop()  # the receiver is down: its port refuses connections
    first = await _spawn(tmp_path, dns_server.port, port, COUNT)
    second = None
    try:
        assert first.stdout is not None
        async with asyncio.timeout(60):
            line = await first.stdout.readline()
        assert line.strip() == f"queued {COUNT}".encode()
        await _kill(first)  # mid-retry: some rounds are in flight

        rx = Receiver(port=port)
        await rx.start()
        second = await _spawn(tmp_path, dns_server.port, port, 0)
        seen: set[str] = set()
        async with asyncio.timeout(60):
            while len(seen) < COUNT:
                got = await rx.wait_for(len(rx.received) + 1)
                for item in got:
                    m = re.search(rb"Subject: crash (\d+)", item.data)
                    assert m is not None
                    seen.add(m.group(1).decode())
        assert seen == {str(i) for i in range(COUNT)}
    finally:
        await _kill(first)
        if second is not None:
            await _kill(second)
        await rx.stop()
        dns_server.stop()
