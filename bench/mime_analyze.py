"""Cost of the MIME analysis done once per delivered message::

    .venv/bin/python bench/mime_analyze.py [--rounds 5] [--small 2000] [--profile]

Times ``analyze(blob).to_bytes()`` (what delivery stores, see
``mailserver/delivery/local.py``) over every message of the shared corpus
(``../shared/corpus/messages/*.eml``, relative to the project root) and over a
4 KB message shaped like what ``smtp-source`` sends in the ingress benchmark
(a few header fields, a plain ASCII body).  Prints µs per message: median and
p99 over the corpus (each message's best of ``--rounds`` runs, so that a
scheduler hiccup does not land in the p99), the corpus total, and the median
for the 4 KB message (median of rounds).  ``--profile`` prints the top of a cProfile of the 4 KB
case instead.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailserver.protocol.mime import analyze  # noqa: E402

CORPUS = (ROOT / ".." / "shared" / "corpus" / "messages").resolve()


def smtp_source_like(size: int = 4096) -> bytes:
    """A message like ``smtp-source -l 4096`` sends, with the trace field our
    ingress prepends: a few header fields and 76-column ASCII lines."""
    head = (
        b"Received: from localhost (localhost [127.0.0.1])\r\n"
        b"\tby mail.example.test with ESMTP id 4f2a9c; Sat, 21 Nov 2026 10:00:00 +0000\r\n"
        b"From: <bench@example.net>\r\n"
        b"To: <alice@example.test>\r\n"
        b"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n"
        b"Message-Id: <20261121100000.0001.0002@client.example.net>\r\n"
        b"\r\n"
    )
    line = b"La de da de da 1. La de da de da 2. La de da de da 3. La de da de da 4.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def timings(blob: bytes, rounds: int, inner: int = 1) -> list[float]:
    """``rounds`` timings of ``inner`` runs each, in µs per run."""
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(inner):
            analyze(blob).to_bytes()
        out.append((time.perf_counter_ns() - t0) / inner / 1000)
    return out


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--small", type=int, default=1000, help="runs per round for the 4 KB message")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    small = smtp_source_like()
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(lambda: [analyze(small).to_bytes() for _ in range(args.small)])
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return

    paths = sorted(CORPUS.glob("*.eml"))
    if not paths:
        raise SystemExit(f"shared corpus missing at {CORPUS}")
    blobs = [p.read_bytes() for p in paths]
    per = [min(timings(b, args.rounds, max(1, 20_000 // max(len(b), 1)))) for b in blobs]
    slow = sorted(zip(per, (p.name for p in paths), strict=True), reverse=True)[:3]
    print(f"corpus    {len(blobs)} messages, {sum(map(len, blobs)) / 1e6:.1f} MB")
    print(f"corpus    median {statistics.median(per):9.1f} µs/msg")
    print(f"corpus    p99    {p99(per):9.1f} µs/msg")
    print(f"corpus    total  {sum(per) / 1000:9.1f} ms")
    print("corpus    slowest " + ", ".join(f"{n} {t / 1000:.1f} ms" for t, n in slow))
    small_us = statistics.median(timings(small, args.rounds * 3, args.small // 5))
    print(f"4kb       median {small_us:9.1f} µs/msg"
          f"  ({len(small)} octets)")


if __name__ == "__main__":
    main()
