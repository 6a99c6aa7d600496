"""The junk filter's cost where users feel it, on the running daemon (issue #16 §1, §2)::

    python bench/junk_server.py [--messages 300] [--size 10240] [--rounds 2]

Two figures, each with ``[junk] enabled`` on and off, same machine, same run
(the runs alternate, ``--rounds`` times; the figure is the median of the
runs' medians):

* **end of DATA -> 250** for ``--size`` octet messages over one SMTP
  session (smtplib's ``data()``: the message, the final dot, the reply),
  each scored for its one recipient once the model has learnt both kinds;
* **UID MOVE of one message into Junk**, which trains it as spam in the
  move's own synced commit (junk on) or only moves it (junk off).

The daemon is ``bench.servers.Ours`` (one process, the shipped defaults
otherwise). Before each run the global model is trained on 100 spam-1 and
100 easy-ham-1 messages of the SpamAssassin corpus (``bench/junk.py``
installs it), through the store, as ``mailserver junk train`` does; the
messages sent are the corpus' messages made ``--size`` octets
(``junk_latency.sized``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import logging
import smtplib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.junk import GROUPS, load  # noqa: E402
from bench.junk_latency import sized  # noqa: E402
from bench.servers import DOMAIN, Ours  # noqa: E402

USER = f"alice@{DOMAIN}"
PASSWORD = "bench-password-1"


async def _train(data_dir: Path) -> None:
    import structlog

    from mailserver.config import JunkSettings
    from mailserver.junk.filter import JunkFilter
    from mailserver.store.base import content_address
    from mailserver.store.store import Store

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    store = await Store.open(data_dir)
    try:
        junk = JunkFilter(store, JunkSettings())
        for group, spam in (("spam-1", True), ("easy-ham-1", False)):
            for raw in load(group)[:100]:
                await junk.train(USER, await content_address(raw), raw, spam)
    finally:
        await store.close()


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def one_run(enabled: bool, messages: list[bytes]) -> tuple[float, float]:
    """(end-of-DATA -> 250 median ms, UID MOVE median ms) with junk ``enabled``."""
    with tempfile.TemporaryDirectory(prefix="junkbench-") as tmp:
        ours = Ours(Path(tmp))
        ours.extra = f"[junk]\nenabled = {'true' if enabled else 'false'}\n"
        asyncio.run(ours.add_users([(USER, PASSWORD)]))
        asyncio.run(_train(ours.data_dir))
        ours.start()
        try:
            data_times = []
            with smtplib.SMTP("127.0.0.1", ours.port("smtp"), timeout=60) as c:
                c.ehlo("bench.test")
                for msg in messages:
                    c.mail("sender@remote.test")
                    c.rcpt(USER)
                    t = time.perf_counter()
                    code, _ = c.data(msg)
                    data_times.append(time.perf_counter() - t)
                    assert code == 250, code
            move_times = []
            imap = imaplib.IMAP4("127.0.0.1", ours.port("imap"))
            imap.login(USER, PASSWORD)
            for msg in messages:
                imap.append("INBOX", None, None, msg)
            imap.select("INBOX")
            typ, data = imap.uid("SEARCH", "ALL")
            for uid in data[0].split():
                t = time.perf_counter()
                typ, _ = imap.uid("MOVE", uid, "Junk")
                move_times.append(time.perf_counter() - t)
                assert typ == "OK"
            imap.logout()
        finally:
            ours.stop()
    return _median_ms(data_times), _median_ms(move_times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    pool = [m for g in GROUPS for raw in load(g)
            if (m := sized(raw, args.size)) is not None]
    messages = [m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                for m in pool[: args.messages]]
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for enabled in (False, True):
            runs[enabled].append(one_run(enabled, messages))
            print(f"junk {'on ' if enabled else 'off'}: DATA->250 {runs[enabled][-1][0]:.2f} ms,"
                  f" MOVE {runs[enabled][-1][1]:.2f} ms", flush=True)
    off = [statistics.median(x) for x in zip(*runs[False], strict=True)]
    on = [statistics.median(x) for x in zip(*runs[True], strict=True)]
    print(f"\n| median, {len(messages)} messages of {args.size} octets, {args.rounds} rounds "
          "| junk off | junk on | added |")
    print("|---|---:|---:|---:|")
    for i, what in enumerate(("end of DATA -> 250 (scored)", "UID MOVE into Junk (trained)")):
        print(f"| {what} | {off[i]:.2f} ms | {on[i]:.2f} ms | {on[i] - off[i]:+.2f} ms |")


if __name__ == "__main__":
    main()
