"""``mailserver run``: serve the configuration until signalled."""

from __future__ import annotations

import os

import structlog

from mailserver import log as logsetup
from mailserver.config import Config, worker_count
from mailserver.process import lifecycle, pidfile
from mailserver.process.pidfile import PidFile
from mailserver.process.single import run_single
from mailserver.process.supervisor import supervise

log = structlog.get_logger("mailserver.daemon")


def serve(config: Config) -> int:
    """Run the daemon until signalled; return the exit status.

    ``workers = 1``: this process serves (``single.py``).  More: this process
    becomes the supervisor of that many workers (``supervisor.py``): it
    serves every worker's writes (the writer service) and counters.  Either
    way on a uvloop event loop (``lifecycle.run``).  The pid file
    (``pidfile.py``) is held meanwhile; raises ``UserError`` when another
    daemon holds it.
    """
    logsetup.configure(config.log)
    workers = worker_count(config)
    pid_file = PidFile(pidfile.path_for(config.data_dir))
    pid_file.acquire()  # UserError when a daemon already serves this data directory
    try:
        log.info("server_starting", pid=os.getpid(), config=str(config.source or "<built-in>"),
                 data_dir=str(config.data_dir), workers=workers, pid_file=str(pid_file.path))
        if workers > 1:
            return lifecycle.run(supervise(config, workers))
        return lifecycle.run(run_single(config))
    finally:
        pid_file.release()
