"""A throwaway Postfix on loopback as a real SMTP peer (issue 12 §5): the
bench's instance (``bench.servers.Postfix``: its own ``-c DIR``, every
service unchrooted, ``maillog_file``, stopped by ``postfix -c DIR stop``),
never the system's Postfix service.

Postfix needs root: ``postfix start`` is reserved for the super-user, and
master(8) starts as root to give each service its ``mail_owner`` and bind
the listener.  ``require_postfix`` says so and fails the test (no skip);
``./scripts/test`` installs Debian's postfix when it is missing (as root, no
system service set up).  ``debug_peer_list = 127.0.0.1`` makes Postfix log
both sides of every SMTP dialogue with a loopback peer, which is what the
tests read (``dialogue``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.servers import Postfix


def require_postfix() -> None:
    """Fail (not skip) when Postfix cannot run here: not root, or not installed."""
    if os.geteuid() != 0:
        raise AssertionError("the Postfix peer tests need root (postfix start and "
                             "master(8) run as the super-user); run ./scripts/test as root")
    if shutil.which("postfix") is None:
        raise AssertionError("the Postfix peer tests need Debian's postfix: "
                             "./scripts/test installs it as root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PeerPostfix(Postfix):
    """``Postfix`` with a maillog reader: ``log`` and ``wait_log``."""

    def log(self) -> str:
        try:
            return (self.dir / "maillog").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first match of ``pattern`` in the maillog, once it is there
        (Postfix writes it through postlogd, asynchronously: polled)."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log(), re.M)
            if m is not None:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"not in Postfix's log: {pattern}\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def dialogue(self, program: str) -> list[str]:
        """What was said in the SMTP dialogues of ``program`` ("smtp": the
        client, "smtpd": the server) as ``debug_peer_list`` logs them:
        ``> text`` sent by Postfix, ``< text`` received."""
        pattern = r"postfix/" + program + r"\[\d+\]: ([<>]) \S+: (.*)$"
        return [f"{d} {text}" for d, text in re.findall(pattern, self.log(), re.M)]


@contextmanager
def running_postfix(extra: str, users: tuple[str, ...] = ()) -> Iterator[PeerPostfix]:
    """A started ``PeerPostfix`` with ``extra`` main.cf lines; stopped and its
    directory removed on exit.  The directory is made under /tmp readable by
    the ``postfix`` user (pytest's tmp_path is root-only)."""
    require_postfix()
    work = Path(tempfile.mkdtemp(prefix="pf-"))
    work.chmod(0o755)
    pf = PeerPostfix(work, work / "vmail", free_port())
    pf.configure(list(users), extra + "\ndebug_peer_list = 127.0.0.1\n")
    try:
        pf.start()
        yield pf
    finally:
        pf.stop()
        shutil.rmtree(work, ignore_errors=True)
