"""``junk/ftrl.py``: FTRL-proximal logistic regression learns a separable
toy set, deterministically; scores stay in [0, 1] and learning never raises,
whatever the feature strings."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.junk.ftrl import FtrlModel, FtrlParams, bucket

SPAM = ["w:viagra", "w:casino", "w:prize", "w:winner", "h:no-date", "u:deals.example"]
HAM = ["w:meeting", "w:agenda", "w:patch", "w:review", "f:work.example", "w:minutes"]
COMMON = ["w:the", "w:and", "w:you", "w:for"]
SMALL = FtrlParams(bits=12, alpha=0.5)


def toy(rng: random.Random, spam: bool) -> list[str]:
    own = SPAM if spam else HAM
    return rng.sample(own, 3) + rng.sample(COMMON, 2)


def trained(seed: int = 1, params: FtrlParams = SMALL) -> FtrlModel:
    rng = random.Random(seed)
    model = FtrlModel(params)
    for _ in range(3):  # epochs
        for i in range(100):
            model.learn(toy(rng, i % 2 == 0), is_spam=i % 2 == 0)
    return model


def test_learns_a_separable_set() -> None:
    model = trained()
    rng = random.Random(99)
    assert all(model.score(toy(rng, True)) > 0.8 for _ in range(50))
    assert all(model.score(toy(rng, False)) < 0.2 for _ in range(50))
    assert (model.spam, model.ham) == (150, 150)


def test_untrained_scores_half() -> None:
    assert FtrlModel(SMALL).score(["w:anything"]) == 0.5


def test_deterministic() -> None:
    a, b = trained(), trained()
    assert a.z == b.z and a.n == b.n
    # The hash is CRC-32, not Python's per-process hash().
    assert bucket("w:viagra", 20) == 0x6F434165 & 0xFFFFF
    assert 0 <= bucket("w:\ud800", 20) < 1 << 20  # a lone surrogate hashes too


def test_l1_gives_sparse_weights() -> None:
    model = trained(params=FtrlParams(bits=12, alpha=0.5, l1=5.0))
    # Features seen on both sides with no signal ("w:the") stay at weight 0.
    assert model.score(["w:the"]) == model.score([])


def test_params_checked() -> None:
    with pytest.raises(ValueError):
        FtrlParams(bits=0)
    with pytest.raises(ValueError):
        FtrlParams(alpha=0.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.text(max_size=30), max_size=20), st.booleans()),
                max_size=10),
       st.lists(st.text(max_size=30), max_size=20))
def test_score_in_unit_interval(steps: list[tuple[list[str], bool]], probe: list[str]) -> None:
    model = FtrlModel(FtrlParams(bits=8, alpha=5.0, l1=0.0, normalize=False))
    for feats, spam in steps:
        assert 0.0 <= model.learn(feats, spam) <= 1.0
    assert 0.0 <= model.score(probe) <= 1.0
