"""``mailserver run``: serve the configuration until signalled."""

from __future__ import annotations

import os

import structlog

from mailserver import log as logsetup
from mailserver.config import Config, worker_count
from mailserver.process import lifecycle
from mailserver.process.single import run_single
from mailserver.process.supervisor import supervise

log = structlog.get_logger("mailserver.daemon")


def serve(config: Config) -> int:
    """Run the daemon until signalled; return the exit status.

    ``workers = 1``: this process serves (``single.py``).  More: this process
    becomes the supervisor of that many workers (``supervisor.py``): it
    serves every worker's writes (the writer service) and counters.  Either
    way on a uvloop event loop (``lifecycle.run``).
    """
    logsetup.configure(config.log)
    workers = worker_count(config)
    log.info("server_starting", pid=os.getpid(), config=str(config.source or "<built-in>"),
             data_dir=str(config.data_dir), workers=workers)
    if workers > 1:
        return lifecycle.run(supervise(config, workers))
    return lifecycle.run(run_single(config))
