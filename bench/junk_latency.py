"""The junk filter's scoring cost for a 10 KB message (issue #16 §2)::

    python bench/junk_latency.py [--messages 1000] [--size 10240]

What the server does per scored message on the ``smtp`` listener, minus the
store read of the counts: ``features()`` of the message (on the event loop
below ``filter.THREAD_OCTETS``, so for a 10 KB message), sorted as
``JunkFilter.features_of`` does, then the naive Bayes score over in-memory
counts (``MemoryModel``, trained on all of spam-1 + easy-ham-1), once (cold
start: the global model) and twice (an account past ``min_own_samples``:
own and global blended).  The FTRL model (bench only) is timed beside it.

Messages: the corpus' messages in turn (every group; no choice is made
here), each made ``--size`` octets: a longer one cut at a line end, a
shorter single-part one padded with its own body repeated (so the padding is
text the features read); shorter multipart ones are skipped (padding would
land in the epilogue, which is not read).  Median and p99 in milliseconds,
one process, after 50 warm-up messages.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.junk import GROUPS, load  # noqa: E402
from mailserver.junk.features import features  # noqa: E402
from mailserver.junk.ftrl import FtrlModel, FtrlParams  # noqa: E402
from mailserver.junk.model import MemoryModel  # noqa: E402

WARMUP = 50


def sized(raw: bytes, size: int) -> bytes | None:
    """``raw`` made ``size`` octets (see the module docstring), or None."""
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if len(raw) >= size:
        cut = raw.rfind(b"\r\n", 0, size)
        return raw[: cut + 2 if cut > 0 else size]
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if msg.is_multipart() or not sep or not body.strip():
        return None
    body = body if body.endswith(b"\r\n") else body + b"\r\n"
    out = head + sep + body
    while len(out) < size:
        out += body
    cut = out.rfind(b"\r\n", 0, size)
    return out[: cut + 2]


def quantiles(samples: list[float]) -> tuple[float, float]:
    """Median and 99th percentile of ``samples`` (ns) in ms."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) / 1e6, p99 / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--size", type=int, default=10 * 1024)
    args = ap.parse_args()
    data = {g: load(g) for g in GROUPS}
    nb = MemoryModel()
    ftrl = FtrlModel(FtrlParams())  # the parameters bench/junk.py chose
    for group, spam in (("spam-1", True), ("easy-ham-1", False)):
        for m in data[group]:
            learnt = features(m)
            nb.train(learnt, spam=spam)
            ftrl.learn(learnt, spam)
    pool = [m for g in GROUPS for m in data[g]]
    messages: list[bytes] = []
    for raw in pool[::2] + pool[1::2]:  # groups interleaved through the run
        made = sized(raw, args.size)
        if made is not None:
            messages.append(made)
        if len(messages) == args.messages + WARMUP:
            break
    t_feat: list[float] = []
    t_one: list[float] = []
    t_two: list[float] = []
    t_ftrl: list[float] = []
    clock = time.perf_counter_ns
    for i, m in enumerate(messages):
        a = clock()
        feats = sorted(features(m))
        b = clock()
        nb.score(feats)
        c = clock()
        nb.score(feats)
        d = clock()
        ftrl.score(feats)
        e = clock()
        if i >= WARMUP:
            t_feat.append(b - a)
            t_one.append(c - a)
            t_two.append(c - a + d - c)
            t_ftrl.append(b - a + e - d)
    sizes = [len(m) for m in messages[WARMUP:]]
    print(f"{len(t_feat)} messages, {min(sizes)}-{max(sizes)} octets "
          f"(median {statistics.median(sizes):.0f}); Python {sys.version.split()[0]}")
    print("\n| step | median ms | p99 ms |\n|---|---:|---:|")
    for name, samples in (("features() alone", t_feat),
                          ("features() + naive Bayes score (cold start: global model)", t_one),
                          ("features() + two naive Bayes scores (own + global, blended)", t_two),
                          ("features() + FTRL score (bench only)", t_ftrl)):
        med, p99 = quantiles(samples)
        print(f"| {name} | {med:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
