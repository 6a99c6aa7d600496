"""Structured logging: structlog set-up and the field names every module uses.

One JSON object per line on stderr by default (what journald and log
shippers want); a human console renderer on a TTY or with ``format =
"console"``.  Every line has ``timestamp`` (ISO 8601, UTC), ``level``,
``logger`` and ``event`` (a snake_case name such as ``listener_started``),
plus the fields bound by the code that logged it.

stdlib ``logging`` (aiosmtpd logs through ``mail.log``, asyncio through
``asyncio``) is routed into the same stream at WARNING and above: those
libraries are chatty at INFO and speak free text, so only their problems are
worth a line.

Passwords and message bodies never reach the logs (STYLE.md §5): bind
addresses and sizes, not content.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

import structlog

from mailserver.config import LogSettings

#: Names of the fields bound to loggers across the code base; use these spellings.
CONN_ID = "conn_id"  # str, unique per connection in this process
PEER = "peer"  # "ip:port" of the remote end
USER = "user"  # authenticated account address
QUEUE_ID = "queue_id"  # a message's one id, from the 250 reply on (protocol/queue_id.py)
MAILBOX = "mailbox"  # mailbox name
DURATION_MS = "duration_ms"  # int, milliseconds

#: Lowest stdlib level routed to our stream (see module docstring).
STDLIB_LEVEL = logging.WARNING


#: Seconds a line logged on an event loop may wait for the lines after it.
FLUSH_DELAY = 0.01
#: Past this many held lines they go at once.
_MAX_HELD_LINES = 256


class LineBatcher:
    """The stream the loggers write to: lines logged on an event loop are held
    for up to ``FLUSH_DELAY`` seconds and leave together in one ``write``, not
    one ``write`` syscall (and one wake-up of journald or whoever reads the
    pipe) per line (~5 % of an SMTP worker's CPU at three lines per
    connection, bench/RESULTS.md).

    Lines logged where no loop runs (the CLI, other threads) go out at once,
    after any held ones, so the order of lines is kept; so do lines past
    ``_MAX_HELD_LINES``.  A kill -9 loses at most the last ``FLUSH_DELAY``
    seconds of lines; ``flush_all`` (at exit, before ``os._exit``, before a
    worker reports ready) writes what is held.  A stream that fails (a closed
    pipe) drops the held lines rather than raising in the loop's callback,
    which would log again.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lines: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # a flush is due there
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        """Hold ``text`` (one rendered line with its newline) until ``flush``."""
        with self._lock:
            self._lines.append(text)

    def flush(self) -> None:
        """Called after each line (by ``WriteLogger``): on an event loop, write
        within ``FLUSH_DELAY`` seconds; elsewhere, now."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            due = self._loop
            if due is not None and due.is_closed():
                due = self._loop = None  # its flush will never run
            if loop is not None and len(self._lines) < _MAX_HELD_LINES:
                if due is loop:
                    return
                if due is None:
                    loop.call_later(FLUSH_DELAY, self._flush_due)
                    self._loop = loop
                    return
            self._write_held()

    def flush_now(self) -> None:
        """Write every held line now."""
        with self._lock:
            self._write_held()

    def _flush_due(self) -> None:
        with self._lock:
            self._loop = None
            try:
                self._write_held()
            except (OSError, ValueError):
                self._lines.clear()

    def _write_held(self) -> None:  # with the lock held
        if self._lines:
            text = "".join(self._lines)
            self._lines.clear()
            self.stream.write(text)
            self.stream.flush()


_batchers: dict[int, LineBatcher] = {}


def _batcher(stream: TextIO) -> LineBatcher:
    """One batcher per stream, so lines of every configuration keep their order."""
    found = _batchers.get(id(stream))
    if found is None or found.stream is not stream:
        found = _batchers[id(stream)] = LineBatcher(stream)
    return found


@atexit.register
def flush_all() -> None:
    """Write the lines every batcher holds (at exit, and before a test reads a stream)."""
    for batcher in list(_batchers.values()):
        try:
            batcher.flush_now()
        except (OSError, ValueError):
            pass


class _NamedWriter(structlog.WriteLogger):
    """A ``WriteLogger`` that remembers the name passed to ``get_logger(name)``."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _Factory:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, *args: Any) -> _NamedWriter:
        name = args[0] if args and isinstance(args[0], str) else "mailserver"
        return _NamedWriter(self.stream, name)


def _add_logger_name(logger: Any, method_name: str, event_dict: Any) -> Any:
    event_dict.setdefault("logger", getattr(logger, "name", "mailserver"))
    return event_dict


class _StdlibBridge(logging.Handler):
    """Forwards stdlib ``logging`` records to structlog, keeping the logger name."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = structlog.get_logger(record.name)
            fields: dict[str, Any] = {}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            logger.log(record.levelno, record.getMessage(), **fields)
        except Exception:  # a broken log line must never take the server down
            self.handleError(record)


class _UtcTimestamp:
    """``timestamp`` as ISO 8601 UTC with microseconds ("2024-05-01T12:00:00.123456Z"),
    the spelling of structlog's ``TimeStamper(fmt="iso", utc=True)``.

    The date and time of day are formatted once per second; only the
    microseconds are formatted per line (a ``datetime`` per line was ~2 % of
    the CPU of an SMTP ingress, bench/RESULTS.md).
    """

    __slots__ = ("_second", "_prefix")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        micros = int((now - second) * 1_000_000)
        event_dict["timestamp"] = f"{self._prefix}.{micros:06d}Z"
        return event_dict


#: ``json.dumps``' defaults (ASCII only, ", " and ": "), built once, not per line.
_JSON = json.JSONEncoder(default=str)
_HEAD = ("timestamp", "level", "logger", "event")


def _render_json(logger: Any, method_name: str, event_dict: Any) -> str:
    """One JSON object, with timestamp, level, logger and event first: lines read
    left to right."""
    head = {k: event_dict.pop(k) for k in _HEAD if k in event_dict}
    head.update(event_dict)
    return _JSON.encode(head)


_resolved: dict[str, tuple[tuple[Any, ...], Any]] = {}


def get_logger(name: str) -> Any:
    """structlog's logger for ``name``, resolved once per configuration.

    ``structlog.get_logger(name).bind(...)`` builds the logger from the
    configuration on every call (we do not cache on first use, so that a later
    ``configure`` or ``structlog.testing.capture_logs`` still applies); for a
    logger bound per connection that was ~1 % of SMTP ingress.  This one is
    rebuilt only when the configuration changed.
    """
    config = structlog.get_config()
    hit = _resolved.get(name)
    if hit is not None:
        processors, factory, wrapper, context = hit[0]
        if (processors is config["processors"] and factory is config["logger_factory"]
                and wrapper is config["wrapper_class"] and context is config["context_class"]):
            return hit[1]
    key = (config["processors"], config["logger_factory"], config["wrapper_class"],
           config["context_class"])
    logger = structlog.get_logger(name).bind()
    _resolved[name] = (key, logger)
    return logger


def use_console(settings: LogSettings, stream: TextIO) -> bool:
    """True when lines should be rendered for humans rather than as JSON."""
    if settings.format == "console":
        return True
    if settings.format == "json":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def configure(settings: LogSettings | None = None, stream: TextIO | None = None) -> None:
    """Set up structlog and the stdlib bridge; may be called again to change them.

    ``stream`` defaults to ``sys.stderr``.  ``settings.level`` is a level name
    (``"info"``); ``settings.format`` is ``"json"``, ``"console"`` or ``"auto"``.
    """
    settings = settings or LogSettings()
    stream = stream or sys.stderr
    level = logging.getLevelNamesMapping()[settings.level.upper()]
    tail: list[Any]
    if use_console(settings, stream):
        # The console renderer formats exceptions itself (and warns if
        # format_exc_info ran first).
        tail = [structlog.dev.ConsoleRenderer(colors=bool(stream.isatty()))]
    else:
        tail = [
            structlog.processors.format_exc_info,
            _render_json,
        ]
    # No contextvars merging nor stack_info rendering: nothing binds context
    # variables or asks for stacks, and each costs every line (~1 % of ingress).
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _add_logger_name,
            _UtcTimestamp(),
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_Factory(_batcher(stream)),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdlibBridge):
            root.removeHandler(handler)
    root.addHandler(_StdlibBridge())
    root.setLevel(max(level, STDLIB_LEVEL))


# Connection ids: unique within the process, and the pid tells the worker
# processes apart in the logs; a counter, not os.urandom per connection.
_conn_ids = itertools.count(1)


def next_conn_id() -> str:
    """A short id for a new connection's log lines: ``<pid hex>.<counter hex>``
    (SMTP and IMAP connections of one process share the counter)."""
    return f"{os.getpid():x}.{next(_conn_ids):x}"
