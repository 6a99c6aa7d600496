"""THREAD and UID THREAD (RFC 5256 §4): ORDEREDSUBJECT and REFERENCES.

::

    thread      = ["UID" SP] "THREAD" SP thread-alg SP search-criteria
    thread-data = "THREAD" [SP 1*thread-list]

The search part runs as for SEARCH; each matching message's header is
parsed once (in a worker thread) into a ``ThreadItem``, and the pure
algorithms of ``protocol.imap.thread`` build and render the threads.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mailserver.imap.commands.searching import run_search
from mailserver.imap.commands.sort import headers_of
from mailserver.protocol.imap import thread as algo
from mailserver.protocol.imap.sortkeys import ascii_casemap, base_subject
from mailserver.protocol.imap.types import Command, ThreadArgs
from mailserver.protocol.mime.headers import bytes_to_text, unfold

if TYPE_CHECKING:
    from mailserver.imap.session import ImapSession


def _text(raw: bytes | None) -> str | None:
    """A msg-id field as text: unfolded, not RFC 2047-decoded (ids are not text)."""
    return None if raw is None else bytes_to_text(unfold(raw))


async def thread(session: ImapSession, cmd: Command) -> None:
    """THREAD / UID THREAD: one ``* THREAD`` response listing the threads of
    the matching messages, by sequence number (UID for UID THREAD);
    ``NO [BADCHARSET]`` for a charset we cannot decode."""
    view = session.selected
    assert view is not None
    args = cmd.args
    assert isinstance(args, ThreadArgs)
    hits = await run_search(session, view, args)
    store = session.store

    def build() -> bytes:
        items = []
        with store.snapshot() as snap:  # one read transaction for every header
            for seq, rec in hits:
                h = headers_of(snap, rec)
                if h is None:
                    continue  # expunged meanwhile
                subject, is_reply = base_subject(h.subject_text())
                sent = h.sent_date()
                ids = algo.parse_msg_ids(_text(h.message_id))
                items.append(algo.ThreadItem(
                    seq=seq,
                    number=rec.uid if cmd.uid else seq,
                    date=rec.internal_date if sent is None else sent,  # RFC 5256 §2.2
                    subject=ascii_casemap(subject),
                    is_reply=is_reply,
                    message_id=ids[0] if ids else None,
                    references=algo.references_of(_text(h.references), _text(h.in_reply_to)),
                ))
        if args.algorithm == "REFERENCES":
            roots = algo.references(items)
        else:
            roots = algo.ordered_subject(items)
        return algo.render(roots)

    body = await asyncio.to_thread(build) if hits else b""
    session.write(b"* THREAD " + body + b"\r\n" if body else b"* THREAD\r\n")
