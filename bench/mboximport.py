"""``mailserver import mbox`` against the daemon's own APPEND path (issue #15 §4)::

    python bench/mboximport.py [--mb 1024] [--append 2000]

Writes an mbox of ``--mb`` MiB from the corpus messages (each behind its own
``From `` line, mboxrd-quoted), imports it into a fresh store with the
command line (``mailserver import mbox``) and reports its peak RSS (the
child's ``ru_maxrss``) and rate; then starts the daemon on another fresh
store and APPENDs the first ``--append`` of the same messages over one IMAP
connection, for the rate of the APPEND path.  Prints one JSON object.
Targets: RSS under 200 MiB for 1 GiB, rate within 2x of APPEND's.  The
RSS is also given split (sampled from ``/proc``): the process's own memory
(``RssAnon``) and the store's memory map (``RssFile``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import corpus_messages  # noqa: E402
from bench.imapc import Client  # noqa: E402
from bench.servers import Ours  # noqa: E402

USER = ("alice@example.test", "alice-secret")


def quote(message: bytes) -> bytes:
    """mboxrd: ``>`` before every line that starts with ``>*From ``."""
    out = []
    for line in message.split(b"\n"):
        if line.lstrip(b">").startswith(b"From "):
            line = b">" + line
        out.append(line)
    return b"\n".join(out)


def write_mbox(path: Path, size: int) -> tuple[list[bytes], int]:
    """An mbox of at least ``size`` octets; returns the first messages (for
    APPEND) and how many it holds."""
    corpus = [m for m in corpus_messages() if len(m) < 1_000_000]
    first: list[bytes] = []
    written = n = 0
    with path.open("wb") as f:
        while written < size:
            body = b"X-Bench-Seq: %d\n" % n + corpus[n % len(corpus)].replace(b"\r\n", b"\n")
            if len(first) < 10_000:
                first.append(body)
            chunk = b"From bench@example.test Mon Feb  3 10:11:12 2025\n" + quote(body)
            chunk += b"\n" if chunk.endswith(b"\n") else b"\n\n"
            f.write(chunk)
            written += len(chunk)
            n += 1
    return first, n


def sample_peaks(proc: subprocess.Popen[str]) -> dict[str, int]:
    """Peaks (KiB) of ``RssAnon`` and ``RssFile`` of ``proc`` until it exits
    (sampled every 0.2 s from ``/proc``)."""
    peak: dict[str, int] = {}
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    key = line.split(":", 1)[0]
                    if key in ("RssAnon", "RssFile"):
                        peak[key] = max(peak.get(key, 0), int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.2)
    proc.wait()
    return peak


async def append_rate(work: Path, messages: list[bytes]) -> float:
    server = Ours(work / "append")
    await server.add_users([USER])
    server.start()
    try:
        c = await Client.connect("127.0.0.1", server.port("imap"))
        await c.login(*USER)
        t0 = time.perf_counter()
        for m in messages:
            await c.command(b"APPEND INBOX", m)
        rate = len(messages) / (time.perf_counter() - t0)
        await c.close()
        return rate
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=1024, help="mbox size, MiB")
    ap.add_argument("--append", type=int, default=2000, help="messages APPENDed for the rate")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mbox = work / "big.mbox"
        first, count = write_mbox(mbox, args.mb * 2**20)
        target = Ours(work / "import")
        asyncio.run(target.add_users([USER]))
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailserver", "import", "mbox", str(mbox), USER[0],
             "--data-dir", str(target.data_dir)], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        peak = sample_peaks(proc)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr.read() if proc.stderr else "import failed")
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        append = asyncio.run(append_rate(work, first[:args.append]))
        print(json.dumps({
            "mbox_mib": round(mbox.stat().st_size / 2**20, 1), "messages": count,
            "import_seconds": round(seconds, 1), "import_msg_per_s": round(count / seconds),
            "import_peak_rss_mib": round(rss / 2**20, 1),
            # RssFile is the store's memory map (LMDB pages the import touched:
            # page cache, shared and reclaimable); RssAnon the process's own.
            "import_peak_rss_anon_mib": round(peak.get("RssAnon", 0) / 1024, 1),
            "import_peak_rss_file_mib": round(peak.get("RssFile", 0) / 1024, 1),
            "append_msg_per_s": round(append), "ratio_append_over_import":
                round(append / (count / seconds), 2),
        }))


if __name__ == "__main__":
    main()
