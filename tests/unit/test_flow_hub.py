"""The flow hub (``analytics/hub.py``): windows, exact sketch merges, files."""

from __future__ import annotations

from pathlib import Path

from ddsketch import DDSketch
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.analytics import FlowEvent, Kind, result_of
from mailserver.analytics.hub import ACCURACY, FlowHub, sketch_dump, sketch_load


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _received(t: float, latency: float, domain: str = "example.test") -> FlowEvent:
    return FlowEvent(Kind.RECEIVED, t, "in", domain, result="ok", code="250 2.0.0",
                     size=100, latency=latency)


@given(st.lists(st.floats(min_value=0, max_value=1e4), min_size=1, max_size=50),
       st.lists(st.floats(min_value=0, max_value=1e4), min_size=1, max_size=50))
@settings(max_examples=30, deadline=None)
def test_sketches_merge_exactly_and_survive_a_round_trip(a: list[float], b: list[float]) -> None:
    one, two, whole = DDSketch(ACCURACY), DDSketch(ACCURACY), DDSketch(ACCURACY)
    for x in a:
        one.add(x)
        whole.add(x)
    for x in b:
        two.add(x)
        whole.add(x)
    merged = sketch_load(sketch_dump(one))
    merged.merge(sketch_load(sketch_dump(two)))
    for q in (0.5, 0.95, 0.99):
        assert merged.get_quantile_value(q) == whole.get_quantile_value(q)
    assert merged.count == whole.count


def test_windows_count_by_key_and_age_out() -> None:
    clock = Clock(1_000_020.0)
    hub = FlowHub(None, clock=clock)
    hub.add(_received(clock.t - 3000, 0.5))  # 50 minutes ago: 1 h and 24 h only
    hub.add(_received(clock.t, 0.1))
    hub.add(FlowEvent(Kind.REFUSED, clock.t, "in", "other.test", result="perm",
                      code="550 5.1.1"))
    w = hub.stats()["windows"]
    assert w["1m"]["totals"] == {"received": 1, "refused": 1}
    assert w["1h"]["totals"] == {"received": 2, "refused": 1}
    assert ["refused", "in", "other.test", "perm", 1] in w["1m"]["by"]
    assert w["1h"]["latency"]["data"]["count"] == 2
    assert abs(w["1m"]["latency"]["data"]["p50"] - 0.1) <= 0.1 * ACCURACY * 2
    assert w["1m"]["latency"]["remote"]["p99"] is None
    clock.t += 86400 + 120
    assert hub.stats()["windows"]["24h"]["totals"] == {}


def test_ids_grow_and_files_keep_minutes_and_events(tmp_path: Path) -> None:
    clock = Clock(1_000_020.0)
    hub = FlowHub(tmp_path, clock=clock)
    for i in range(5):
        hub.add(_received(clock.t, 0.01 * i))
    ids = [eid for eid, _ in hub.ring]
    assert ids == sorted(set(ids))
    hub.flush(final=True)
    again = FlowHub(tmp_path, clock=clock)
    assert again.stats()["windows"]["1m"]["totals"] == {"received": 5}
    assert again.last_id == ids[-1]
    again.add(_received(clock.t, 0.2))
    assert again.last_id > ids[-1]
    got = again.query(0, clock.t + 1, {"kind": "received"}, ids[1], 2)
    assert [e["id"] for e in got] == ids[2:4]
    # Old files go once past their retention.
    clock.t += 8 * 86400
    again.flush()
    assert not list(tmp_path.glob("events-*"))


def test_sender_domains_rank_and_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock(1_000_020.0)
    hub = FlowHub(tmp_path, clock=clock)
    for sender in ["b.test", "a.test", "b.test", ""]:  # "": the null reverse-path
        hub.add(FlowEvent(Kind.RECEIVED, clock.t, "in", "example.test", result="ok",
                          sender=sender))
    assert hub.stats()["windows"]["1h"]["senders"] == [["b.test", 2], ["a.test", 1]]
    hub.flush(final=True)
    again = FlowHub(tmp_path, clock=clock)
    assert again.stats()["windows"]["24h"]["senders"] == [["b.test", 2], ["a.test", 1]]
    [event] = again.query(0, clock.t + 1, {"kind": "received"}, 0, 1)
    assert event["sender"] == "b.test"


def test_result_of_reply_class() -> None:
    assert [result_of(r) for r in ("250 ok", "451 x", "550 x", "")] == ["ok", "temp", "perm", ""]
