"""A feature-hashed logistic regression trained online with FTRL-proximal
(issue #16 §2), the model Stalwart uses; here only to be compared with the
naive Bayes of ``model.py`` in ``bench/junk.py`` (the server does not use it).

Reference: H. B. McMahan et al., "Ad Click Prediction: a View from the
Trenches", KDD 2013, Algorithm 1 (per-coordinate FTRL-proximal with L1 and
L2 regularization).

Input: the same feature strings as the naive Bayes (``features.features``),
each a binary feature (x_i = 1), hashed into ``2**bits`` buckets with CRC-32
of its UTF-8 bytes (stable across processes and runs, unlike ``hash()``),
plus one bias bucket every message has.  With ``normalize`` each message's
vector is scaled to unit length (x_i = 1/sqrt(k) for k buckets), so a long
message does not move the logit further per step than a short one.

State: two arrays of ``2**bits`` float64, ``z`` and ``n`` (16 MiB at the
default 20 bits).  The weights are not stored; for bucket i

    w_i = 0                                                if |z_i| <= l1
    w_i = -(z_i - sign(z_i) * l1) / ((beta + sqrt(n_i)) / alpha + l2)  else

p = sigmoid(sum_i w_i x_i); learning one message with label y in {0, 1}
takes g_i = (p - y) x_i, sigma_i = (sqrt(n_i + g_i^2) - sqrt(n_i)) / alpha,
z_i += g_i - sigma_i w_i, n_i += g_i^2.

Unlike the naive Bayes' counts, a training cannot be taken back exactly
(the update depends on the weights at the time), and a weight is not a
per-feature probability a user can read.
"""

from __future__ import annotations

import math
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

#: The logit is clamped to +/- this before the sigmoid (exp() stays finite).
_MAX_LOGIT = 35.0


@dataclass(frozen=True, slots=True)
class FtrlParams:
    """FTRL-proximal hyper-parameters (McMahan et al. 2013, Algorithm 1).

    ``alpha``, ``beta``: the per-coordinate learning rate
    alpha / (beta + sqrt(n_i)); ``l1``, ``l2``: regularization strengths
    (``l1`` > 0 makes weights exactly zero, a sparse model); ``bits``: log2
    of the number of hashed buckets (1 to 30); ``normalize``: scale each
    message's feature vector to unit length.  The defaults of ``alpha``,
    ``l1`` and ``normalize`` are those ``bench/junk.py`` chose on the
    SpamAssassin corpus (least log loss on its inner validation split, 3
    epochs); ``beta`` and ``l2`` were not searched.
    """

    alpha: float = 1.0
    beta: float = 1.0
    l1: float = 0.0
    l2: float = 1.0
    bits: int = 20
    normalize: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 30:
            raise ValueError(f"bits must be 1 to 30, not {self.bits}")
        if self.alpha <= 0 or self.beta < 0 or self.l1 < 0 or self.l2 < 0:
            raise ValueError("alpha must be > 0; beta, l1 and l2 >= 0")


def bucket(feature: str, bits: int) -> int:
    """The bucket of ``feature`` in ``[0, 2**bits)``: CRC-32 of its UTF-8
    bytes (lone surrogates kept), the low ``bits`` bits."""
    return zlib.crc32(feature.encode("utf-8", "surrogatepass")) & ((1 << bits) - 1)


class FtrlModel:
    """The model in memory (the benchmark, tests): ``learn``, ``score``.

    Mirrors ``model.MemoryModel`` where it makes sense: the same feature
    iterable in, a spam probability in [0, 1] out, higher is spammier; but
    ``learn`` has no undo (see the module docstring).
    """

    def __init__(self, params: FtrlParams | None = None) -> None:
        self.params = params or FtrlParams()
        size = 1 << self.params.bits
        self.z = array("d", bytes(8 * size))
        self.n = array("d", bytes(8 * size))
        #: Messages learnt: ``spam`` and ``ham``.
        self.spam = 0
        self.ham = 0
        # The bias: a bucket of its own would collide with features' buckets
        # in the shared space, so it keeps its own z and n.
        self._bias = [0.0, 0.0]

    def _indices(self, features: Iterable[str]) -> tuple[list[int], float]:
        """Distinct buckets of ``features`` and the value x_i of each."""
        bits = self.params.bits
        idx = list({bucket(f, bits) for f in features})
        x = 1.0 / math.sqrt(len(idx) + 1) if self.params.normalize else 1.0
        return idx, x

    def _weight(self, z: float, n: float) -> float:
        p = self.params
        if abs(z) <= p.l1:
            return 0.0
        return -(z - math.copysign(p.l1, z)) / ((p.beta + math.sqrt(n)) / p.alpha + p.l2)

    def _predict(self, idx: list[int], x: float) -> tuple[float, list[float], float]:
        z, n = self.z, self.n
        weights = [self._weight(z[i], n[i]) for i in idx]
        bias = self._weight(self._bias[0], self._bias[1])
        logit = (sum(weights) + bias) * x
        logit = max(-_MAX_LOGIT, min(_MAX_LOGIT, logit))
        return 1.0 / (1.0 + math.exp(-logit)), weights, bias

    def score(self, features: Iterable[str]) -> float:
        """P(spam) in [0, 1] of a message with ``features``; 0.5 untrained."""
        idx, x = self._indices(features)
        return self._predict(idx, x)[0]

    def learn(self, features: Iterable[str], is_spam: bool) -> float:
        """One online step on a message with ``features`` labelled
        ``is_spam``; returns the score it had before the step."""
        idx, x = self._indices(features)
        p, weights, bias = self._predict(idx, x)
        g = (p - (1.0 if is_spam else 0.0)) * x
        g2 = g * g
        alpha = self.params.alpha
        z, n = self.z, self.n
        for i, w in zip(idx, weights, strict=True):
            ni = n[i]
            sigma = (math.sqrt(ni + g2) - math.sqrt(ni)) / alpha
            z[i] += g - sigma * w
            n[i] = ni + g2
        bz, bn = self._bias
        sigma = (math.sqrt(bn + g2) - math.sqrt(bn)) / alpha
        self._bias = [bz + g - sigma * bias, bn + g2]
        if is_spam:
            self.spam += 1
        else:
            self.ham += 1
        return p
