"""A queue process for crash tests: ``queue_proc.py DATA_DIR DNS_PORT SMTP_PORT COUNT``.

Opens the store, starts a ``QueueManager`` pointed at the test DNS server and
SMTP port, enqueues COUNT messages (0: none, just resume), prints
``queued N`` once they are durable, then runs until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import structlog

from mailserver.app import resolver_for
from mailserver.queue.manager import QueueManager
from mailserver.queue.settings import OutboundSettings
from mailserver.store.api import LmdbQueue
from mailserver.store.store import Store


async def main(data_dir: Path, dns_port: int, smtp_port: int, count: int) -> None:
    # stdout carries only our "queued" line; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    store = await Store.open(data_dir)
    settings = OutboundSettings(
        hostname="mail.example.test", resolver_address="127.0.0.1", resolver_port=dns_port,
        smtp_port=smtp_port, connect_timeout=5, command_timeout=10, backoff=(0.2, 0.5),
        jitter=0.0, delay_warning=None, dns_timeout=5,
    )
    mgr = QueueManager(LmdbQueue(store), settings, resolver=resolver_for(settings))
    await mgr.start()
    for i in range(count):
        body = (f"From: a@example.test\r\nTo: b@dest.test\r\nSubject: crash {i}\r\n"
                f"Message-ID: <crash{i}@example.test>\r\n\r\nmessage {i}\r\n").encode()
        await mgr.enqueue("a@example.test", ["b@dest.test"], body)
    print(f"queued {count}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    d, dp, sp, n = sys.argv[1:5]
    asyncio.run(main(Path(d), int(dp), int(sp), int(n)))
