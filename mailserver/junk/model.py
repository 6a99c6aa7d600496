"""The junk model: token naive Bayes (issue #16 §2), sans-IO.

For each feature the probability that a message containing it is spam,
p(w) = (s/S) / (s/S + h/H) with s, h the spam and ham messages that had it
and S, H the messages trained; Robinson's damping for rarely seen features,
f(w) = (STRENGTH * 0.5 + n * p(w)) / (STRENGTH + n), n = s + h; then the
``TOP`` features farthest from 0.5 (at least ``MIN_DISTANCE``) are combined
with Fisher's method (chi-square of the log-probabilities, as SpamBayes):
score = (1 + H' - S') / 2 in [0, 1], where S' and H' are the spam and ham
evidence.  This is the family mox uses (top words, rare-word damping).

The model is counts only, so training is an increment (``Delta``) and
undoing it the same with the sign turned: a message retrained the other way
(moved out of Junk) takes back its first training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: Robinson's strength of the 0.5 prior for rarely seen features.
STRENGTH = 1.0
#: Features combined, the most telling first; and the least distance from 0.5.
TOP = 150
MIN_DISTANCE = 0.1
#: Default threshold: score at or above it is junk.
THRESHOLD = 0.8


@dataclass(frozen=True, slots=True)
class Totals:
    """Messages trained: ``spam`` and ``ham``."""

    spam: int = 0
    ham: int = 0


@dataclass(frozen=True, slots=True)
class Score:
    """A message's score in [0, 1] and the features that decided it:
    ``(feature, probability)``, most telling first."""

    value: float
    top: tuple[tuple[str, float], ...]

    def header(self, threshold: float) -> str:
        """``X-Spam-Status``'s value: ``Yes|No, score=S, required=T``
        (SpamAssassin's form, scores scaled to 0-10)."""
        verdict = "Yes" if self.value >= threshold else "No"
        return f"{verdict}, score={self.value * 10:.1f}, required={threshold * 10:.1f}"


def _chi2q(x2: float, v: int) -> float:
    """P(chi-square with ``v`` (even) degrees of freedom >= ``x2``)."""
    m = x2 / 2.0
    term = total = math.exp(-m)
    for i in range(1, v // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


def feature_probability(spam: int, ham: int, totals: Totals) -> float:
    """Robinson's f(w) for a feature seen in ``spam``/``ham`` trained messages."""
    n = spam + ham
    if n == 0 or totals.spam == 0 or totals.ham == 0:
        return 0.5
    s_ratio = spam / totals.spam
    h_ratio = ham / totals.ham
    p = s_ratio / (s_ratio + h_ratio) if s_ratio + h_ratio else 0.5
    return (STRENGTH * 0.5 + n * p) / (STRENGTH + n)


def score(features: Iterable[str], counts: Callable[[str], tuple[int, int]],
          totals: Totals) -> Score:
    """The score of a message with ``features``; ``counts(feature)`` gives
    ``(spam, ham)`` training counts.  0.5 when the model knows nothing."""
    probs = []
    for f in features:
        s, h = counts(f)
        if s or h:
            p = feature_probability(s, h, totals)
            if abs(p - 0.5) >= MIN_DISTANCE:
                probs.append((abs(p - 0.5), f, p))
    probs.sort(reverse=True)
    chosen = probs[:TOP]
    if not chosen:
        return Score(0.5, ())
    n = len(chosen)
    spam_ln = sum(math.log(max(1e-200, 1.0 - p)) for _, _, p in chosen)
    ham_ln = sum(math.log(max(1e-200, p)) for _, _, p in chosen)
    s_ev = 1.0 - _chi2q(-2.0 * spam_ln, 2 * n)
    h_ev = 1.0 - _chi2q(-2.0 * ham_ln, 2 * n)
    value = (1.0 + s_ev - h_ev) / 2.0
    return Score(min(1.0, max(0.0, value)), tuple((f, p) for _, f, p in chosen[:10]))


class MemoryModel:
    """Counts in a dict (the benchmark, tests): ``train``, ``score``."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}
        self.totals = Totals()

    def train(self, features: Iterable[str], spam: bool, sign: int = 1) -> None:
        """Add (``sign`` 1) or take back (-1) one message's training."""
        i = 0 if spam else 1
        for f in features:
            c = self.counts.setdefault(f, [0, 0])
            c[i] = max(0, c[i] + sign)
        self.totals = Totals(max(0, self.totals.spam + sign * spam),
                             max(0, self.totals.ham + sign * (not spam)))

    def lookup(self, feature: str) -> tuple[int, int]:
        """``(spam, ham)`` of ``feature``."""
        c = self.counts.get(feature)
        return (c[0], c[1]) if c else (0, 0)

    def score(self, features: Iterable[str]) -> Score:
        """``model.score`` over these counts."""
        return score(features, self.lookup, self.totals)
