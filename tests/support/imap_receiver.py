"""Drivers shared by the IMAP protocol unit tests: feed a Receiver and collect events,
the way a server would (``expect_line`` after IDLE and a bare AUTHENTICATE)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.imap.receiver import Receiver
from mailserver.protocol.imap.types import NEED_DATA, Authenticate, Command, Line

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
TRAILER = b"zz9 NOOP\r\n"


@dataclass(frozen=True)
class Err:
    """A ProtocolSyntaxError as an event, for comparing event lists."""

    tag: str | None
    fatal: bool = False


def corpus_messages() -> list[Path]:
    """Every corpus message; fails (never skips) when the corpus is missing."""
    messages = sorted((CORPUS / "messages").glob("*.eml"))
    assert messages, f"shared corpus missing at {CORPUS}"
    return messages


def _wants_line(event: object) -> bool:
    """Whether a server would call ``expect_line()`` after ``event``."""
    return isinstance(event, Command) and (
        event.name == "IDLE"
        or (isinstance(event.args, Authenticate) and event.args.initial is None)
    )


def run(chunks: list[bytes], **kw: int) -> list[object]:
    """Feed ``chunks`` one after another; return every event and error in order."""
    rx = Receiver(**kw)
    out: list[object] = []
    for chunk in chunks:
        rx.feed(chunk)
        while True:
            try:
                event = rx.next_event()
            except ProtocolSyntaxError as exc:
                out.append(Err(exc.tag, exc.fatal))
                if exc.fatal:
                    return out
                continue
            if event is NEED_DATA:
                break
            out.append(event)
            if _wants_line(event):
                rx.expect_line()
    return out


def feed_all_ways(data: bytes, **kw: int) -> list[object]:
    """Events for ``data`` fed whole, one byte at a time, and followed by another
    command; all three must agree (STYLE.md).  Returns the events of ``data``."""
    whole = run([data], **kw)
    bytewise = run([data[i : i + 1] for i in range(len(data))], **kw)
    assert bytewise == whole
    trailing = run([data + TRAILER], **kw)
    last = whole[-1] if whole else None
    if isinstance(last, Err) and last.fatal:
        assert trailing == whole
    elif _wants_line(last):
        assert trailing == [*whole, Line(TRAILER.rstrip())]
    else:
        assert trailing == [*whole, Command("zz9", "NOOP")]
    return whole


def parse_one(data: bytes, **kw: int) -> Command:
    """The single Command that ``data`` holds (continuation requests dropped)."""
    events = [e for e in feed_all_ways(data, **kw) if isinstance(e, Command)]
    others = [e for e in feed_all_ways(data, **kw) if isinstance(e, Err)]
    assert not others, others
    assert len(events) == 1, events
    return events[0]
