"""``log.LineBatcher``: lines logged on an event loop within ``FLUSH_DELAY`` leave in one write."""

from __future__ import annotations

import asyncio
import io
import json
import threading

import uvloop

from mailserver import log as logsetup
from mailserver.config import LogSettings


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def emit(batcher: logsetup.LineBatcher, text: str) -> None:
    """What ``structlog.WriteLogger.msg`` does per line."""
    batcher.write(text + "\n")
    batcher.flush()


def test_lines_logged_on_a_loop_leave_together_after_the_delay() -> None:
    stream = CountingStream()
    batcher = logsetup.LineBatcher(stream)

    async def main() -> tuple[str, str]:
        for n in range(3):
            emit(batcher, f"line {n}")
            await asyncio.sleep(0)  # other iterations: still held
        held = stream.getvalue()
        await asyncio.sleep(logsetup.FLUSH_DELAY * 3)
        return held, stream.getvalue()

    held, after = uvloop.run(main())
    assert held == ""
    assert after == "line 0\nline 1\nline 2\n" and stream.writes == 1


def test_without_a_loop_lines_go_at_once_after_the_held_ones() -> None:
    stream = CountingStream()
    batcher = logsetup.LineBatcher(stream)

    async def main() -> None:
        emit(batcher, "on the loop")
        done = threading.Event()
        thread = threading.Thread(target=lambda: (emit(batcher, "from a thread"), done.set()))
        thread.start()
        thread.join()
        assert done.is_set()

    asyncio.run(main())
    assert stream.getvalue() == "on the loop\nfrom a thread\n"


def test_a_closed_loop_does_not_strand_lines_and_flush_all_writes_held_ones() -> None:
    stream = CountingStream()
    batcher = logsetup.LineBatcher(stream)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))

    async def log_and_leave() -> None:
        emit(batcher, "held")

    loop.run_until_complete(log_and_leave())
    loop.close()  # its flush never ran
    emit(batcher, "after")  # no loop: everything goes, in order
    assert stream.getvalue() == "held\nafter\n"

    async def hold() -> None:
        emit(batcher, "at exit")

    other = asyncio.new_event_loop()
    other.run_until_complete(hold())
    batcher.flush_now()
    other.close()
    assert stream.getvalue().endswith("at exit\n")


def test_configured_loggers_write_through_the_batcher() -> None:
    stream = io.StringIO()
    logsetup.configure(LogSettings(format="json", level="info"), stream)
    try:
        async def main() -> None:
            logsetup.get_logger("mailserver.test").info("first", n=1)
            logsetup.get_logger("mailserver.test").info("second", n=2)
            assert stream.getvalue() == ""
            await asyncio.sleep(logsetup.FLUSH_DELAY * 3)

        asyncio.run(main())
    finally:
        logsetup.configure(LogSettings(format="console", level="warning"))
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == [
        "first", "second"]
