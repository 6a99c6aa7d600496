"""``junk/features.py`` and ``junk/model.py``: features of real-looking mail,
training, undoing it, and accuracy above a floor on a labelled set made here
(the suite downloads nothing)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.junk.features import features, html_text
from mailserver.junk.model import THRESHOLD, MemoryModel, Totals, feature_probability

SPAM_WORDS = "viagra casino winner prize cheap offer unsubscribe million bitcoin urgent".split()
HAM_WORDS = "meeting agenda review patch release minutes draft schedule budget lunch".split()
COMMON = "the and you for with this that have from will".split()


def message(kind: str, rng: random.Random) -> bytes:
    words = SPAM_WORDS if kind == "spam" else HAM_WORDS
    body = " ".join(rng.choice(words + COMMON) for _ in range(60))
    subject = " ".join(rng.choice(words) for _ in range(4))
    sender = "promo@deals.example" if kind == "spam" else "colleague@work.example"
    extra = b"" if kind == "spam" else b"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
    return (f"From: {sender}\r\nSubject: {subject}\r\nTo: you@example.test\r\n".encode()
            + extra + b"\r\n" + body.encode() + b"\r\nhttp://www.deals.example/x\r\n")


def test_features_of_a_message() -> None:
    html = (b"From: Shop <news@mail.shop.example.co.uk>\r\nSubject: BIG SALE TODAY ONLY\r\n"
            b"Authentication-Results: mx.example.test; spf=fail smtp.mailfrom=x; dkim=none\r\n"
            b"Content-Type: text/html\r\n\r\n<html><style>p{}</style><p>Great offer "
            b"<a href='https://click.tracker.example.com/a'>here</a></p></html>\r\n")
    got = features(html)
    assert {"w:great", "w:offer", "b:great offer", "s:sale", "u:example.com",
            "f:example.co.uk", "a:spf=fail", "a:dkim=none", "h:no-date",
            "h:no-message-id", "h:subject-caps", "h:html-only"} <= got
    assert not any("p{}" in f for f in got)  # the style sheet is not text
    assert html_text("<b>a</b> &amp; <script>x()</script>b") == "a & b"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_features_never_raise(data: bytes) -> None:
    assert isinstance(features(data), set)


def test_probabilities_are_damped() -> None:
    totals = Totals(spam=100, ham=100)
    assert feature_probability(0, 0, totals) == 0.5
    assert 0.5 < feature_probability(1, 0, totals) < feature_probability(20, 0, totals) < 1
    assert feature_probability(0, 20, totals) < 0.1


def test_learns_undoes_and_scores_above_a_floor() -> None:
    rng = random.Random(7)
    model = MemoryModel()
    assert model.score(features(message("spam", rng))).value == 0.5  # knows nothing yet
    for _ in range(60):
        model.train(features(message("spam", rng)), spam=True)
        model.train(features(message("ham", rng)), spam=False)
    spam = [model.score(features(message("spam", rng))).value for _ in range(50)]
    ham = [model.score(features(message("ham", rng))).value for _ in range(50)]
    assert sum(s >= THRESHOLD for s in spam) >= 48
    assert sum(h >= THRESHOLD for h in ham) == 0
    top = model.score(features(message("spam", rng))).top
    assert top and all(p > 0.5 for _, p in top[:3])
    # Undoing a training takes back exactly what it added.
    before = dict((k, list(v)) for k, v in model.counts.items()), model.totals
    f = features(message("ham", rng))
    model.train(f, spam=True)
    model.train(f, spam=True, sign=-1)
    assert (dict((k, list(v)) for k, v in model.counts.items()), model.totals) == before
