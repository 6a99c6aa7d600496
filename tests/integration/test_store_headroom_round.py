"""``headroom.Room``: live octets measured once per writer round, then counted
up by what each request of the round asks for (``store/headroom.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailserver.store.headroom import Room, StoreFull, live_octets
from mailserver.store.kv import open_env


def test_requests_of_one_round_count_against_the_limit(tmp_path: Path) -> None:
    env, dbs = open_env(tmp_path / "store", 1 << 24)
    try:
        with env.begin(write=True) as txn:
            live = live_octets(txn, dbs)
            room = Room(live + 10_000)
            room.require(txn, dbs, 6_000)  # measures, then counts the 6,000
            room.require(txn, dbs, 4_000)  # exactly at the limit
            with pytest.raises(StoreFull):
                room.require(txn, dbs, 1)
            Room(0).require(txn, dbs, 1 << 40)  # 0: no limit
            txn.abort()
        with env.begin(write=True) as txn:  # a new round measures again
            Room(live + 10_000).require(txn, dbs, 10_000)
            txn.abort()
    finally:
        env.close()
