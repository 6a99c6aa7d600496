"""Exim as a real SMTP client that sends BDAT (issue 12 §5: CHUNKING tested
against a real peer).

Postfix's SMTP client never sends BDAT; Exim's does (``hosts_try_chunking``,
on by default). Debian's exim4 package would replace postfix (both are the
system MTA), so ``./scripts/test`` does not install it: it downloads the
``exim4-daemon-light`` package, unpacks its files into a cache directory
(``EXIM``, outside the repository), installs the libraries it links and adds
the ``Debian-exim`` user its binary was built for. Nothing of it runs as a
service: each test runs ``exim4 -C <its own config>`` once, as root, which
queues the message in the test's own spool and delivers it in the
foreground (``-odf``) to our listener, then exits.

``require_exim`` fails the test (no skip) when that set-up is missing.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mailserver-test" / "exim"
#: The unpacked binary (``MAILSERVER_EXIM`` overrides).
EXIM = Path(os.environ.get("MAILSERVER_EXIM", CACHE / "usr" / "sbin" / "exim4"))
USER = "Debian-exim"


def require_exim() -> None:
    """Fail (not skip) when Exim cannot run here."""
    if os.geteuid() != 0:
        raise AssertionError("the Exim peer test needs root; run ./scripts/test as root")
    if not EXIM.is_file():
        raise AssertionError(f"the Exim peer test needs {EXIM}: ./scripts/test unpacks "
                             "Debian's exim4-daemon-light there as root")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        raise AssertionError(f"the Exim peer test needs the {USER} user "
                             "(./scripts/test adds it)") from None


@dataclass
class Exim:
    """One throwaway Exim configuration relaying everything to ``port`` on 127.0.0.1."""

    dir: Path
    port: int

    @property
    def config(self) -> Path:
        return self.dir / "exim.conf"

    def write_config(self) -> None:
        spool, logs = self.dir / "spool", self.dir / "log"
        uid = pwd.getpwnam(USER).pw_uid
        for d in (spool, logs):  # Exim writes both as its user
            d.mkdir()
            os.chown(d, uid, -1)
        # Exim re-executes itself as its user for the delivery: a copy it can
        # reach (the cache may be under root's home, which it cannot).
        binary = self.dir / "exim4"
        shutil.copy2(EXIM, binary)
        self.config.write_text(f"""\
primary_hostname = exim.test
exim_path = {binary}
spool_directory = {spool}
log_file_path = {logs}/%slog
exim_user = {USER}
exim_group = nogroup
never_users =
trusted_users = root
keep_environment =
log_selector = +smtp_protocol_error +received_recipients
begin routers
to_peer:
  driver = manualroute
  route_list = * 127.0.0.1::{self.port}
  self = send
  transport = peer_smtp
begin transports
peer_smtp:
  driver = smtp
  hosts_try_chunking = *
  allow_localhost
begin retry
* * F,1m,1m
""")

    def send(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Submit ``message`` (``-odf``: delivered in the foreground before exim
        exits).  Raises AssertionError with the log when exim fails."""
        done = subprocess.run([str(self.dir / "exim4"), "-C", str(self.config), "-odf", "-oi", "-f", sender,
                               "--", *recipients], input=message, capture_output=True,
                              timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"exim exited {done.returncode}: {done.stderr!r}\n{self.log()}")

    def log(self) -> str:
        try:
            return (self.dir / "log" / "mainlog").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def deliveries(self) -> list[str]:
        """The mainlog's ``=>`` lines (one per delivery)."""
        return re.findall(r"^.* => .*$", self.log(), re.M)


@contextmanager
def exim_to(port: int) -> Iterator[Exim]:
    """An ``Exim`` relaying to 127.0.0.1:``port``, its directory removed on exit
    (made under /tmp, readable by ``Debian-exim``: pytest's tmp_path is root-only)."""
    require_exim()
    work = Path(tempfile.mkdtemp(prefix="exim-"))
    work.chmod(0o755)
    try:
        ex = Exim(work, port)
        ex.write_config()
        yield ex
    finally:
        shutil.rmtree(work, ignore_errors=True)
