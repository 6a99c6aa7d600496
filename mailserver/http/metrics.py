"""``GET /metrics``: the Prometheus text exposition format (version 0.0.4).

What the response holds:

* every instrument of ``mailserver.metrics``, merged across the daemon's
  processes when they share a directory (``MultiProcessCollector``: any worker
  answers, each gives the same figures), else this process's registry;
* figures the store and files already hold, read at scrape time by
  ``StateCollector`` so that nothing on a hot path counts them: queue size
  and age of the oldest queued message, LMDB map use, free space on the data
  directory's file system, the TLS certificate's expiry.

Before collecting, this process's tallies are flushed (``metrics.flush_all``);
the other workers flush theirs once a second.  The collection reads files and
the store: it runs in a thread, off the event loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from mailserver import metrics
from mailserver.config import Config
from mailserver.junk.filter import drift_of, today
from mailserver.queue import model
from mailserver.store.store import Store

#: The exposition format's media type (what prometheus-client writes).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def certificate_path(config: Config) -> Path:
    """The served certificate: the configured one, else the self-signed one
    (``tls.server_context`` makes it in ``data_dir/tls``)."""
    return config.tls.cert_file or config.data_dir / "tls" / "cert.pem"


class StateCollector(Collector):
    """Gauges read at scrape time from the store and the file system.

    ``store``: the LMDB store, None on the PostgreSQL backend, whose queue
    records the listener reads before each scrape (``queue_records``)."""

    def __init__(self, config: Config, store: Store | None) -> None:
        self._config = config
        self._store = store
        self._cert: tuple[float, float] | None = None  # (mtime, not-after), cached
        #: The queue's records for the next scrape when there is no LMDB store.
        self.queue_records: list[bytes] = []

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        store = self._store
        records = self.queue_records if store is None else store.queue_list()
        created = []
        for raw in records:
            # A damaged record is the queue's to report (it logs it when taken);
            # here it still counts as queued, with no age.
            with contextlib.suppress(ValueError, KeyError, TypeError):
                created.append(model.decode(raw).created)
        yield GaugeMetricFamily("mailserver_queue_messages",
                                "Messages in the outbound queue.", value=len(records))
        yield GaugeMetricFamily(
            "mailserver_queue_oldest_message_age_seconds",
            "Age of the oldest message in the outbound queue (0 when empty).",
            value=max(0.0, now - min(created)) if created else 0.0)
        if store is not None:
            yield from self._space(store)
        fs = os.statvfs(self._config.data_dir)
        yield GaugeMetricFamily("mailserver_data_dir_free_bytes",
                                "Octets available to the daemon on the data directory's "
                                "file system.", value=fs.f_bavail * fs.f_frsize)
        yield GaugeMetricFamily("mailserver_data_dir_size_bytes",
                                "Size of the data directory's file system.",
                                value=fs.f_blocks * fs.f_frsize)
        if self._config.junk.enabled and store is not None:
            yield from self._junk(store)
        expiry = self._cert_expiry()
        if expiry is not None:
            yield GaugeMetricFamily("mailserver_tls_certificate_expiry_timestamp_seconds",
                                    "When the served TLS certificate expires (Unix time).",
                                    value=expiry)

    def _space(self, store: Store) -> Iterator[Metric]:
        """The LMDB store's fill (``store/headroom.py``)."""
        space = store.space()
        yield GaugeMetricFamily("mailserver_store_used_bytes",
                                "Octets of the pages the store's databases use.",
                                value=space.live)
        yield GaugeMetricFamily("mailserver_store_map_size_bytes",
                                "The LMDB map size (most the store can hold).",
                                value=space.map_size)
        yield GaugeMetricFamily("mailserver_store_capacity_bytes",
                                "Octets the store can grow to: the map size, or less when "
                                "the file system has less room.", value=space.capacity)
        yield GaugeMetricFamily("mailserver_store_map_fill_ratio",
                                "Store use over its capacity (the map, or the file system "
                                "when that has less room); new mail is refused at "
                                "[store] new_mail_limit.", value=space.ratio)
        yield GaugeMetricFamily("mailserver_store_new_mail_limit_ratio",
                                "The fill ratio at which new mail is refused.",
                                value=self._config.store.new_mail_limit)

    def _junk(self, store: Store) -> Iterator[Metric]:
        """The junk filter's drift figures (issue #16 §3), from the per-day counts."""
        day = today()
        d0 = dt.date.fromisoformat(day)
        days = [(d0 - dt.timedelta(days=i)).isoformat() for i in range(8)]
        drift = drift_of(store.junk_days(days), day)
        yield GaugeMetricFamily("mailserver_junk_correction_rate",
                                "Users' junk corrections per scored copy, today (UTC).",
                                value=drift.rate)
        yield GaugeMetricFamily("mailserver_junk_correction_baseline_rate",
                                "Users' junk corrections per scored copy over the 7 UTC "
                                "days before today: the drift warning's baseline (0: no "
                                "scored mail in those days).", value=drift.baseline or 0.0)
        if drift.agreement is not None:
            yield GaugeMetricFamily("mailserver_junk_agreement_ratio",
                                    "Share of users' junk trainings (8 days) whose label "
                                    "the model already agreed with.", value=drift.agreement)

    def _cert_expiry(self) -> float | None:
        path = certificate_path(self._config)
        try:
            mtime = path.stat().st_mtime
            if self._cert is None or self._cert[0] != mtime:
                cert = x509.load_pem_x509_certificate(path.read_bytes())
                self._cert = (mtime, cert.not_valid_after_utc.timestamp())
        except (OSError, ValueError):
            return None  # unreadable now; the daemon started with it, so it was fine then
        return self._cert[1]


def exposition(state: Collector) -> bytes:
    """The whole ``/metrics`` body (see the module docstring).  Blocking: run it
    in a thread."""
    registry = CollectorRegistry(auto_describe=False)
    path = metrics.multiprocess_dir()
    if path is None:
        registry.register(_Registry(metrics.instruments().registry))
    else:
        MultiProcessCollector(registry, str(path))
    registry.register(state)
    return generate_latest(registry)


class _Registry(Collector):
    """Another registry's metrics, as one collector."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()
