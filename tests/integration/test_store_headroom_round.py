"""``headroom.Room``: the space measured once per writer round, then counted
up by what each request of the round asks for (whole pages, plus one), and
carried on by the next rounds for ``CARRY`` seconds while the counted-up
figure fits; ``headroom.FillWatch``: each warning level once per crossing
(``store/headroom.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailserver.store import headroom
from mailserver.store.headroom import FillWatch, Headroom, Room, Space, StoreFull, live_octets
from mailserver.store.kv import open_env


class _Fixed(Headroom):
    """A headroom whose capacity is given (the test's limit), live measured."""

    def __init__(self, env: Any, dbs: Any, path: Path, capacity: int) -> None:
        super().__init__(env, dbs, path, 1.0, warn=False)
        self.capacity = capacity
        self.measured = 0

    def measure(self, txn: Any) -> Space:
        self.measured += 1
        return Space(live_octets(txn, self._dbs), self.capacity, self.capacity, 0)


def test_requests_of_one_round_count_against_the_limit(tmp_path: Path) -> None:
    env, dbs = open_env(tmp_path / "store", 1 << 24)
    try:
        with env.begin(write=True) as txn:
            live = live_octets(txn, dbs)
            fixed = _Fixed(env, dbs, tmp_path / "store", live + 4 * 4096)
            room = fixed.room()
            room.require(txn, dbs, 1_000)  # measures, then counts 2 pages
            room.require(txn, dbs, 4_096)  # 2 pages: at the limit
            with pytest.raises(StoreFull):
                room.require(txn, dbs, 1)
            assert fixed.measured == 1 and room.space is not None
            Room().require(txn, dbs, 1 << 40)  # no headroom: no limit
            txn.abort()
        with env.begin(write=True) as txn:  # a new round measures again
            fixed.room().require(txn, dbs, 3 * 4096)
            assert fixed.measured == 2
            txn.abort()
        real = Headroom(env, dbs, tmp_path / "store", warn=False)
        space = real.space()  # the map (16 MiB) or the file system, whichever is less
        assert 0 < space.live <= space.capacity <= 1 << 24 and 0 < space.ratio < 1
        assert real.has_room(1000) and not real.has_room(1 << 24)
    finally:
        env.close()


def test_rounds_carry_a_measure_until_it_says_no(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    env, dbs = open_env(tmp_path / "store", 1 << 24)
    try:
        with env.begin() as txn:
            live = live_octets(txn, dbs)
        fixed = _Fixed(env, dbs, tmp_path / "store", live + 6 * 4096)

        def round_of(octets: int) -> Room:
            with env.begin(write=True) as txn:
                room = fixed.room()
                try:
                    room.require(txn, dbs, octets)
                finally:
                    txn.abort()  # nothing written: the exact measure stays ``live``
            fixed.carry(room)
            return room

        assert round_of(1_000).space is not None and fixed.measured == 1
        assert round_of(1_000).space is None and fixed.measured == 1  # carried: 4 pages counted
        # The carried figure says no (4 + 2 > 6 is false, 6 + 2 > 6 is true):
        # the exact measure decides, and nothing was written, so it fits.
        round_of(1_000)
        room = round_of(1_000)
        assert fixed.measured == 2 and room.space is not None
        with pytest.raises(StoreFull):  # exactly measured, and full
            round_of(6 * 4096)
        assert fixed.measured == 3
        fixed.drop_carry()  # a failed round: the next one measures
        round_of(1_000)
        assert fixed.measured == 4
        monkeypatch.setattr(headroom, "CARRY", -1.0)  # too old at once
        round_of(1_000)
        assert fixed.measured == 5
    finally:
        env.close()


def test_fill_warnings_once_per_crossing() -> None:
    watch = FillWatch((0.8, 0.9))
    seen = [watch.observe(r) for r in (0.1, 0.79, 0.8, 0.85, 0.8, 0.79, 0.8, 0.95, 0.99,
                                       0.89, 0.87, 0.9, 0.5, 0.81, 0.2)]
    assert seen == [None, None, 0.8, None, None, None, None, 0.9, None,
                    None, None, 0.9, 0.0, 0.8, 0.0]
    assert FillWatch((0.8, 0.9)).observe(0.95) == 0.9  # both at once: one warning, the higher
