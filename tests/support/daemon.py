"""``mailserver`` as a real process: the command line run to completion, the
daemon (``mailserver run``) kept running, and the store read from disk.

Processes run from the source tree (``PYTHONPATH``), even when the package is
not installed, and see neither the caller's ``MAILSERVER_CONFIG`` nor its
``NOTIFY_SOCKET``: a test decides both.  The daemon logs JSON lines on
stderr; a reader thread puts each on a queue, so ``Daemon.wait_for`` waits on
the queue (bounded by ``timeout``), never by polling.  Ports are learnt from
the ``listener_started`` lines: listeners bind port 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailserver.auth.login import authenticate
from mailserver.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0
T = TypeVar("T")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a ``mailserver`` child process, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "MAILSERVER_CONFIG")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_cli(*args: str | Path, stdin: str = "", cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m mailserver ARGS``, run to completion, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "mailserver", *map(str, args)],
        input=stdin, capture_output=True, text=True, cwd=cwd,
        env=env or cli_env(), timeout=TIMEOUT,
    )


def add_user(conf: Path, address: str, password: str) -> None:
    """``mailserver init`` (the admin commands never create a store) then
    ``mailserver user add``, the password on stdin, as an operator would."""
    result = run_cli("init", "-c", conf)
    assert result.returncode == 0, result.stderr
    result = run_cli("user", "add", address, "--password-stdin", "-c", conf,
                     stdin=password + "\n")
    assert result.returncode == 0, result.stderr


def on_store(data_dir: Path, use: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store in ``data_dir`` (daemon stopped or not), ``await use(store)``, close."""

    async def go() -> T:
        store = await Store.open(data_dir)
        try:
            return await use(store)
        finally:
            await store.close()

    return asyncio.run(go())


def check_login(data_dir: Path, address: str, password: str) -> str | None:
    """The account that ``address``/``password`` logs in as, against the real store."""
    return on_store(data_dir, lambda store: authenticate(store, address, password))


def inbox_uids(data_dir: Path, account: str) -> list[int]:
    """UIDs in the account's INBOX, read straight from the store."""

    async def read(store: Store) -> list[int]:
        box = store.get_mailbox(account, "INBOX")
        return [m.uid for m in store.list_messages(box.id)]

    return on_store(data_dir, read)


_CONSOLE = re.compile(r"^\S+ \[(\w+)\s*\] (\S+)\s+\[(\S+)\](.*)$")


def console_event(line: str) -> dict[str, Any] | None:
    """A ``format = "console"`` log line as the JSON form's dict (``event``,
    ``level``, ``logger`` and the ``key=value`` fields; digits as ints), None
    for any other line.  Values with spaces are not split right: not needed."""
    m = _CONSOLE.match(line.rstrip("\n"))
    if m is None:
        return None
    event: dict[str, Any] = {"level": m.group(1), "event": m.group(2), "logger": m.group(3)}
    for part in m.group(4).split():
        key, sep, value = part.partition("=")
        if sep:
            event[key] = int(value) if value.isdigit() else value
    return event


class Daemon:
    """``mailserver run ARGS`` in a subprocess.

    ``stderr`` and ``stdout`` collect the lines as they come; each JSON object
    on stderr is also put on ``events`` (``None`` once stderr closes).
    """

    def __init__(self, *args: str | Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailserver", "run", *map(str, args)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=cli_env(**(env or {})), cwd=cwd,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self.ports: dict[str, int] = {}
        self._threads = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                event = console_event(line)
            if isinstance(event, dict):
                self.events.put(event)
        self.events.put(None)  # EOF: the process is gone

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)

    def wait_for(self, name: str, **fields: Any) -> dict[str, Any]:
        """The next log event ``name`` whose fields include ``fields``; fails if
        the process ends first."""
        while True:
            try:
                event = self.events.get(timeout=self.timeout)
            except queue.Empty:
                pytest.fail(f"no {name} event within {self.timeout}s:\n{''.join(self.stderr)}")
            if event is None:
                self.proc.wait(self.timeout)
                pytest.fail(f"daemon exited ({self.proc.returncode}) before {name}:\n"
                            + "".join(self.stderr))
            if event.get("event") == "listener_started":
                self.ports[event["listener"]] = event["port"]
            if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                return event

    def take(self, name: str, count: int) -> list[dict[str, Any]]:
        """The next ``count`` log events ``name``."""
        return [self.wait_for(name) for _ in range(count)]

    def logged(self, name: str) -> list[dict[str, Any]]:
        """Every log event ``name`` so far, whether or not ``wait_for`` took it."""
        marker = f'"{name}"'
        return [json.loads(x) for x in list(self.stderr) if marker in x]

    def ready(self) -> Daemon:
        self.wait_for("server_ready")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        status = self.proc.wait(self.timeout)
        self.join()
        return status

    def join(self) -> None:
        """Wait for the readers to hit EOF, then close the pipes."""
        for t in self._threads:
            t.join(self.timeout)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(self.timeout)
        self.join()
