"""The server's Prometheus instruments: one set per process, one view across processes.

Every seam that counts (listener base, check pipeline, SMTP hooks, local
delivery, outbound rounds, the store's group commit, IMAP dispatch) takes its
instruments from ``instruments()`` once, when it is built, and keeps the
labelled children it needs (``labels(...)`` costs a dict lookup and a tuple per
call: not on a per-message path).  Values the store already holds (queue
size, age of the oldest queued message, LMDB map fill, the TLS certificate's
expiry) are not counted at all: ``mailserver.http.metrics`` reads them at
scrape time.

One view across the worker processes: prometheus-client's multiprocess mode,
chosen over aggregation in the supervisor because

* any worker can answer ``/metrics`` (the http listener's socket is shared
  like every other, so the kernel picks the worker) and every worker gives the
  same answer: it merges the value files of all processes in one directory,
  the supervisor's included (the group commit runs there with ``workers > 1``);
* an increment stays in the process (a write into a memory-mapped file, about
  a microsecond), with no message to the supervisor per event and no new
  wire protocol.

``enable_multiprocess`` (the supervisor, before it builds anything that
counts, and before it spawns a worker, which inherits the directory through
``PROMETHEUS_MULTIPROC_DIR``) makes the directory ``data_dir/run/metrics``
empty: values of an earlier run must not add up with this one's.  A worker
that exits is marked dead (``mark_dead``): its "live" gauges (open
connections) leave the sum; its counters stay, as counters must.  With
``workers = 1`` (and in tests that run ``App`` in process) nothing is
shared: the values live in this process's ``CollectorRegistry``.

Why module state here and nowhere else: the instruments are per process by
nature (one mmap file set per PID), and the seams that use them span every
layer; passing one object through every constructor would touch every
signature for no gain in testability (tests read the exposition, like
Prometheus does).

Names follow Prometheus conventions: ``mailserver_`` prefix, base units
(``_seconds``, ``_bytes``), ``_total`` on counters (added by the library).
"""

from __future__ import annotations

import os
import shutil
import weakref
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client import multiprocess as _mp

#: The environment variable prometheus-client reads (workers inherit it).
ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Buckets (seconds) for things that take milliseconds: end-of-DATA -> 250,
#: IMAP commands, store commits.
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.5, 5.0, 10.0)
#: Buckets (seconds) for event-loop lag: 20 ms is the issue #13 bound for a stall.
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Buckets (seconds) for outbound attempts (DNS, connect, TLS, a transaction).
SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Buckets (requests) for the size of one group commit.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)


class Instruments:
    """Every instrument of the server (see the module docstring for the names).

    Built once per process by ``instruments()``; registered in ``registry``
    (what ``/metrics`` shows when nothing is shared between processes).
    """

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Counter(
            "mailserver_connections", "Connections accepted by a listener, by outcome "
            "(accepted, or refused by a connection limit).",
            ["listener", "protocol", "outcome"], registry=r)
        self.open_connections = Gauge(
            "mailserver_open_connections", "Connections open now, by protocol.",
            ["protocol"], registry=r, multiprocess_mode="livesum")
        self.smtp_transactions = Counter(
            "mailserver_smtp_transactions", "SMTP transactions ended at DATA, by listener "
            "and reply (class like 2xx, and the enhanced code, RFC 3463).",
            ["listener", "reply_class", "enhanced_code"], registry=r)
        self.smtp_data_seconds = Histogram(
            "mailserver_smtp_data_seconds", "Time from the end of DATA to the reply "
            "(checks, delivery, the synced commit).", ["listener"], registry=r,
            buckets=FAST_BUCKETS)
        self.check_verdicts = Counter(
            "mailserver_smtp_check_verdicts", "Verdicts of each check stage, by phase "
            "(connect, helo, mail, rcpt, data) and verdict (accept, reject, quarantine).",
            ["listener", "phase", "stage", "verdict"], registry=r)
        self.auth_failures = Counter(
            "mailserver_auth_failures", "Failed logins (SMTP AUTH, IMAP LOGIN/AUTHENTICATE).",
            ["protocol"], registry=r)
        self.junk_verdicts = Counter(
            "mailserver_junk_verdicts", "Local copies scored by the junk filter, by verdict "
            "(junk, ham) and by the threshold that applied (arm: control, the configured "
            "one; candidate, the A/B comparison's; own, the account's).",
            ["verdict", "arm"], registry=r)
        self.junk_candidate_verdicts = Counter(
            "mailserver_junk_candidate_verdicts", "What the candidate threshold of the A/B "
            "comparison says of every scored copy, whichever threshold applied.",
            ["verdict"], registry=r)
        self.junk_corrections = Counter(
            "mailserver_junk_corrections", "Users' corrections of the junk filter seen in "
            "IMAP: false_positive (moved out of Junk, $NotJunk), false_negative (moved "
            "into Junk, $Junk), by the arm of the account.", ["kind", "arm"], registry=r)
        self.limit_hits = Counter(
            "mailserver_limit_hits", "Logins refused by the failed-login limits "
            "(limit=auth_failures; the connection, message and recipient limits are "
            "mailserver_connections_total{outcome=\"refused\"} and the sender_rate and "
            "first_time_recipients stages of mailserver_smtp_check_verdicts_total).",
            ["limit"], registry=r)
        self.local_deliveries = Counter(
            "mailserver_local_deliveries", "Messages stored in a local mailbox (one per "
            "account reached).", registry=r)
        self.outbound_attempts = Counter(
            "mailserver_outbound_attempts", "Outbound delivery attempts per recipient, by "
            "result (delivered, temporary, permanent).", ["result"], registry=r)
        self.outbound_attempt_seconds = Histogram(
            "mailserver_outbound_attempt_seconds", "Duration of one outbound attempt to a "
            "destination domain (DNS, connect, TLS, transaction).", registry=r,
            buckets=SLOW_BUCKETS)
        self.imap_command_seconds = Histogram(
            "mailserver_imap_command_seconds", "IMAP command duration, by command.",
            ["command"], registry=r, buckets=FAST_BUCKETS)
        #: ``imap_command_seconds`` children by command name, bound on first use.
        self.imap_commands: dict[str, Histogram] = {}
        self.event_loop_lag_seconds = Histogram(
            "mailserver_event_loop_lag_seconds", "How late the event loop ran a timer "
            "due every 0.1 s (a stall: one step that kept every connection of the "
            "process waiting).", registry=r, buckets=LAG_BUCKETS)
        self.store_commit_seconds = Histogram(
            "mailserver_store_commit_seconds", "Store group commit latency (write "
            "transaction and fsync).", registry=r, buckets=FAST_BUCKETS)
        self.store_commit_batch = Histogram(
            "mailserver_store_commit_batch_requests", "Write requests folded into one "
            "group commit.", registry=r, buckets=BATCH_BUCKETS)
        self.store_commit_failures = Counter(
            "mailserver_store_commit_failures", "Group commits that failed as a whole.",
            registry=r)


_instruments: Instruments | None = None


def instruments() -> Instruments:
    """This process's instruments (made on first use: after ``enable_multiprocess``)."""
    global _instruments
    if _instruments is None:
        _instruments = Instruments()
    return _instruments


def multiprocess_dir() -> Path | None:
    """The directory shared by the daemon's processes, or None (values in this process)."""
    path = os.environ.get(ENV)
    return Path(path) if path else None


def enable_multiprocess(path: Path) -> None:
    """Share values through ``path`` from now on, emptied first (see the module
    docstring).  Call before the first ``instruments()``.  Raises ``OSError``."""
    global _instruments
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    os.environ[ENV] = str(path)
    values.ValueClass = values.MultiProcessValue()
    _instruments = None


def open_connections() -> dict[str, int]:
    """Connections open now by protocol (``smtp``, ``imap``, ...), summed over
    the daemon's processes: the ``mailserver_open_connections`` gauge, read
    from the shared files in multiprocess mode (blocking file reads: call it
    off the event loop), else from this process.  Protocols with none open
    may be missing."""
    path = multiprocess_dir()
    if path is None:
        families = instruments().registry.collect()
    else:
        registry = CollectorRegistry(auto_describe=False)
        _mp.MultiProcessCollector(registry, str(path))
        families = registry.collect()
    out: dict[str, int] = {}
    for family in families:
        if family.name == "mailserver_open_connections":
            for sample in family.samples:
                protocol = sample.labels.get("protocol", "")
                out[protocol] = out.get(protocol, 0) + int(sample.value)
    return out


def mark_dead(pid: int) -> None:
    """Drop the live gauges of the exited process ``pid`` (multiprocess mode only)."""
    path = multiprocess_dir()
    if path is not None:
        _mp.mark_process_dead(pid, str(path))


class Tally:
    """A count kept in a plain int and added to its counter ``child`` by ``flush``.

    For counts taken several times per message (each check stage's accept
    verdict): ``n += 1`` costs nanoseconds where a shared counter's ``inc``
    costs about a microsecond.  ``flush_all`` runs once a second
    (``App``) and before every scrape in the scraping process, so another
    worker's figure is at most a second old.  Only touched on the event loop.
    """

    __slots__ = ("n", "_child", "__weakref__")

    def __init__(self, child: Counter) -> None:
        self.n = 0
        self._child = child
        _tallies.add(self)

    def flush(self) -> None:
        n = self.n
        if n:
            self.n = 0
            self._child.inc(n)


_tallies: weakref.WeakSet[Tally] = weakref.WeakSet()


def flush_all() -> None:
    """Add every ``Tally`` of this process to its counter."""
    for tally in list(_tallies):
        tally.flush()
