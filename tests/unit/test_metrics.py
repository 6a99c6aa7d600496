"""Pure pieces of the metrics: reply labels and tallies."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter

from mailserver import metrics
from mailserver.smtp.handler import _reply_labels


@pytest.mark.parametrize(("head", "labels"), [
    ("250 2.0.0", ("2xx", "2.0.0")),
    ("452 4.3.1", ("4xx", "4.3.1")),
    ("554 5.7.1", ("5xx", "5.7.1")),
    ("554 Trans", ("5xx", "")),  # no enhanced code (RFC 3463 is optional)
    ("451", ("4xx", "")),
    ("", ("other", "")),
])
def test_reply_labels(head: str, labels: tuple[str, str]) -> None:
    assert _reply_labels(head) == labels


def test_tally_reaches_its_counter_on_flush() -> None:
    registry = CollectorRegistry()
    counter = Counter("t", "t", ["k"], registry=registry)
    tally = metrics.Tally(counter.labels("a"))
    tally.n += 3
    assert registry.get_sample_value("t_total", {"k": "a"}) == 0
    metrics.flush_all()
    assert registry.get_sample_value("t_total", {"k": "a"}) == 3
    assert tally.n == 0
    metrics.flush_all()  # nothing new: nothing added
    assert registry.get_sample_value("t_total", {"k": "a"}) == 3
