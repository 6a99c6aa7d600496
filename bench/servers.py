"""Throwaway server instances for the benchmarks: ours, Postfix and Dovecot.

Each lives in its own directory under the run's temp dir, listens on loopback
only, and is stopped by the PID we started (never by name).

* ``Ours``: ``python -m mailserver run -c <generated toml>`` with port-0
  listeners; the bound ports are read from the JSON ``listener_started`` log
  lines on stderr.  Accounts are put into the store *before* the start with a
  deliberately cheap argon2id hash (t=1, m=64 KiB): the benchmarks open
  10,000 sessions, and at the production cost (~0.3 s of CPU per LOGIN on this
  machine) the logins alone would take a quarter of an hour.  Verification
  reads the parameters from the hash, so the daemon's code path is unchanged.
* ``Postfix``: the reference MTA with its own ``-c DIR`` (no /etc/postfix/main.cf
  on this box), ``maillog_file`` + a ``postlog`` service (no syslog), every
  service unchrooted, ``mynetworks`` = loopback (anvil would cap a client at 50
  connections), ``virtual(8)`` delivery into Maildirs that Dovecot serves.
* ``Dovecot``: the reference IMAP server, plaintext LOGIN on loopback, users in
  a passwd-file, ``maildir:~`` homes shared with Postfix (uid/gid 65534).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from bench.common import ROOT

DOMAIN = "example.test"
VMAIL_UID = 65534
#: Our [auth] for the cheap bench hashes (t=1, m=64 KiB, p=1): no rehash on login.
CHEAP_AUTH = "argon2_memory = 64\nargon2_time_cost = 1\nargon2_parallelism = 1"


def _wait(proc: subprocess.Popen, seconds: float) -> None:
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def version_ours() -> str:
    out = subprocess.run([sys.executable, "-c", "import importlib.metadata as m;"
                          "print(m.version('mailserver'))"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


# -- ours ----------------------------------------------------------------------------

class Ours:
    """Our daemon in ``workdir``; ``pids`` are the server processes to account."""

    name = "ours"

    def __init__(self, workdir: Path, data_dir: Path | None = None) -> None:
        self.dir = workdir
        self.data_dir = data_dir or workdir / "data"
        self.workers = 1  # the ``workers`` setting (0: one per core); set before start()
        self.analytics = True  # [analytics] enabled (part 10 measures both)
        #: More TOML after the generated tables (part 11: [checks] and [dns]).
        self.extra = ""
        #: The [auth] table (None: the shipped defaults, production cost).
        #: The default matches the cheap hashes ``add_users`` makes, so no
        #: login rehashes them to the production cost.
        self.auth: str | None = CHEAP_AUTH
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self._ready = threading.Event()

    async def add_users(self, users: list[tuple[str, str]],
                        hashes: dict[str, str] | None = None) -> None:
        """Create the domain and accounts (cheap hashes, see module doc; or the
        PHC strings of ``hashes``, by address).  Server stopped."""
        from argon2 import PasswordHasher

        from mailserver.store.store import Store

        hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)

        self.data_dir.mkdir(parents=True, exist_ok=True)
        store = await Store.open(self.data_dir)
        try:
            if not store.is_local_domain(DOMAIN):
                await store.add_domain(DOMAIN)
            for address, password in users:
                if store.get_account(address) is None:
                    phc = (hashes or {}).get(address) or hasher.hash(password)
                    await store.add_account(address, phc)
        finally:
            await store.close()

    def _config(self) -> Path:
        path = self.dir / "mailserver.toml"
        path.write_text(f"""hostname = "bench.localhost"
data_dir = "{self.data_dir}"
domains = ["{DOMAIN}"]
demo_account = false
workers = {self.workers}
[listeners.smtp]
protocol = "smtp"
port = 0
[listeners.imap]
protocol = "imap"
port = 0
[limits]
max_connections = 30000
max_connections_per_ip = 30000
[log]
format = "json"
level = "info"
[analytics]
enabled = {"true" if self.analytics else "false"}
""" + (f"[auth]\n{self.auth}\n" if self.auth else "") + self.extra)
        return path

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with open(self.dir / "daemon.log", "wb") as keep:
            for line in self.proc.stderr:
                if b"listener_started" in line:
                    ev = json.loads(line)
                    self.ports[ev["listener"]] = int(ev["port"])
                elif b'"server_ready"' in line:  # every worker listening
                    self._ready.set()
                if b'"level": "error"' in line or b'"level":"error"' in line or b"Traceback" in line:
                    keep.write(line)

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ready.clear()
        self.ports = {}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailserver", "run", "-c", str(self._config())],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(60):
            self.stop()
            raise RuntimeError("our daemon did not report its listeners within 60 s")

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def port(self, name: str) -> int:
        return self.ports[name]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            _wait(self.proc, 40)
        self.proc = None


# -- Postfix -------------------------------------------------------------------------

_MASTER_CF = """\
{address} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_version() -> str:
    out = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True)
    return out.stdout.strip() or "not installed"


def dovecot_version() -> str:
    out = subprocess.run(["dovecot", "--version"], capture_output=True, text=True)
    return out.stdout.strip() or "not installed"


class Postfix:
    """A throwaway Postfix delivering ``@example.test`` into Maildirs under ``vmail``."""

    name = "postfix"

    def __init__(self, workdir: Path, vmail: Path, port: int) -> None:
        self.dir, self.vmail, self.smtp_port = workdir, vmail, port
        self.etc = workdir / "etc"
        self.master_pid: int | None = None

    def configure(self, users: list[str], extra: str = "") -> None:
        """Write main.cf and master.cf; ``extra``: main.cf lines appended
        (parameters not set above: Postfix warns about a repeated one)."""
        for d in (self.etc, self.dir / "queue", self.dir / "data", self.vmail):
            d.mkdir(parents=True, exist_ok=True)
        os.chown(self.vmail, VMAIL_UID, VMAIL_UID)
        os.chown(self.dir / "data", _uid("postfix"), -1)
        (self.etc / "vmailbox").write_text(
            "".join(f"{u} {DOMAIN}/{u.split('@')[0]}/\n" for u in users))
        (self.etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.dir / 'queue'}
data_directory = {self.dir / 'data'}
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localhost
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {self.vmail}
virtual_mailbox_maps = texthash:{self.etc / 'vmailbox'}
virtual_uid_maps = static:{VMAIL_UID}
virtual_gid_maps = static:{VMAIL_UID}
virtual_minimum_uid = 100
virtual_mailbox_limit = 0
message_size_limit = 52428800
default_process_limit = 300
maillog_file = {self.dir / 'maillog'}
maillog_file_prefixes = {self.dir}
biff = no
append_dot_mydomain = no
""" + extra)
        (self.etc / "master.cf").write_text(
            _MASTER_CF.format(address=f"127.0.0.1:{self.smtp_port}"))

    def _postfix(self, *args: str) -> None:
        # Without syslog, Postfix reports a fatal configuration error only on a
        # TTY; run it under script(1) so the message reaches our exception.
        cmd = " ".join(["postfix", "-c", str(self.etc), *args])
        out = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise RuntimeError(f"{cmd}: {out.stdout.strip()[-500:]}")

    def start(self) -> None:
        self._postfix("start")
        pidfile = self.dir / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 30
        while not pidfile.exists():  # master writes it right after forking
            if time.monotonic() > deadline:
                raise RuntimeError("postfix master did not start")
            time.sleep(0.05)
        self.master_pid = int(pidfile.read_text().split()[0])

    @property
    def pids(self) -> list[int]:
        return [self.master_pid] if self.master_pid else []

    def delivered(self, user: str) -> int:
        """Messages in the user's Maildir (new/ and cur/)."""
        base = self.vmail / DOMAIN / user.split("@")[0]
        n = 0
        for sub in ("new", "cur"):
            try:
                n += sum(1 for _ in os.scandir(base / sub))
            except FileNotFoundError:
                pass
        return n

    def queue_empty(self) -> bool:
        q = self.dir / "queue"
        return not any(any(True for _ in (q / d).rglob("*") if _.is_file())
                       for d in ("incoming", "active", "deferred", "maildrop"))

    def stop(self) -> None:
        if self.master_pid is not None:
            try:
                self._postfix("stop")
            except RuntimeError:
                os.kill(self.master_pid, signal.SIGTERM)
            self.master_pid = None


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


# -- Dovecot -------------------------------------------------------------------------

class Dovecot:
    """A throwaway Dovecot serving the Maildirs under ``vmail`` over plain IMAP."""

    name = "dovecot"

    def __init__(self, workdir: Path, vmail: Path, port: int) -> None:
        self.dir, self.vmail, self.imap_port = workdir, vmail, port
        self.proc: subprocess.Popen | None = None

    def configure(self, users: list[tuple[str, str]],
                  hashes: dict[str, str] | None = None) -> None:
        """``hashes``: argon2id PHC strings by address (an ARGON2ID passdb, as
        ``doveadm pw -s ARGON2ID`` makes them); the others are PLAIN."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.vmail.mkdir(parents=True, exist_ok=True)
        os.chown(self.vmail, VMAIL_UID, VMAIL_UID)
        lines = []
        for address, password in users:
            home = self.vmail / DOMAIN / address.split("@")[0]
            phc = (hashes or {}).get(address)
            secret = f"{{ARGON2ID}}{phc}" if phc else f"{{PLAIN}}{password}"
            lines.append(f"{address}:{secret}:{VMAIL_UID}:{VMAIL_UID}::{home}::\n")
        (self.dir / "users").write_text("".join(lines))
        (self.dir / "dovecot.conf").write_text(f"""\
base_dir = {self.dir / 'run'}
state_dir = {self.dir / 'state'}
log_path = {self.dir / 'dovecot.log'}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~
first_valid_uid = 100
default_client_limit = 30000
default_process_limit = 12000
default_vsz_limit = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.dir / 'users'}
}}
userdb {{
  driver = passwd-file
  args = {self.dir / 'users'}
}}
protocol imap {{
  mail_max_userip_connections = 30000
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 2
  client_limit = 30000
}}
service imap {{
  process_limit = 12000
}}
service anvil {{
  client_limit = 30000
}}
service auth {{
  client_limit = 30000
}}
""")

    def fill_folder(self, user: str, folder: str, messages: Iterable[bytes]) -> int:
        """Write ``messages`` straight into ``user``'s Maildir++ folder ``folder``
        (``cur/``, no flags), owned by the vmail user, as a delivery agent
        would; Dovecot indexes them when the folder is first opened.  Returns
        how many were written."""
        home = self.vmail / DOMAIN / user.split("@")[0]
        root = home / f".{folder}"
        for sub in ("cur", "new", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for path in (home, root, root / "cur", root / "new", root / "tmp"):
            os.chown(path, VMAIL_UID, VMAIL_UID)
        stamp, pid, count = int(time.time()), os.getpid(), 0
        cur = os.open(root / "cur", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for count, data in enumerate(messages, 1):
                name = f"{stamp}.M{count}P{pid}.bench,S={len(data)}:2,"
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=cur)
                try:
                    os.write(fd, data)
                    os.fchown(fd, VMAIL_UID, VMAIL_UID)
                finally:
                    os.close(fd)
        finally:
            os.close(cur)
        return count

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.dir / "dovecot.conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.log", "wb"))  # noqa: SIM115

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            _wait(self.proc, 30)
        self.proc = None


def free_port() -> int:
    """An unused loopback port for the reference servers (they cannot bind port 0 and
    tell us).  Bound and released here; a race with another program is possible but
    harmless on a benchmark box (the start then fails loudly)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
