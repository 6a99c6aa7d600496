"""IMAP URLs of one message or part (RFC 5092), as CATENATE takes them
(RFC 4469 §5): sans-IO parsing only.

::

    imapurl  = "imap://" iserver "/" ipath          ; the server part is ignored:
                                                    ; CATENATE's URLs name this server
    relative = "/" ipath
    ipath    = enc-mailbox [";UIDVALIDITY=" nz-number] "/;UID=" nz-number
               ["/;SECTION=" enc-section]

``enc-mailbox`` and ``enc-section`` are percent-encoded UTF-8 (RFC 5092 §9,
RFC 3986 §2.1).  A section is a part path, then ``HEADER``, ``TEXT`` or
(after a part) ``MIME``; ``HEADER.FIELDS``, ``;PARTIAL=`` and ``;URLAUTH=``
are not supported (``ValueError``, which CATENATE answers ``NO [BADURL]``).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from mailserver.protocol.imap.types import Section

_PATH = re.compile(r"/(?P<mailbox>[^;/]+)(?:;UIDVALIDITY=(?P<uidvalidity>[1-9][0-9]{0,9}))?"
                   r"/;UID=(?P<uid>[1-9][0-9]{0,9})(?:/;SECTION=(?P<section>[^;/]+))?",
                   re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class MessageUrl:
    """What a URL names: a message by ``mailbox`` name (UTF-8), ``uid`` (and
    the ``uidvalidity`` it must still have, when given), and a ``section``
    (``Section()``: the whole message)."""

    mailbox: str
    uidvalidity: int | None
    uid: int
    section: Section


def parse_message_url(url: str) -> MessageUrl:
    """The message ``url`` names.  Raises ``ValueError`` for anything else."""
    path = url
    if url[:7].lower() == "imap://":
        slash = url.find("/", 7)
        if slash < 0:
            raise ValueError("an IMAP URL without a path")
        path = url[slash:]
    m = _PATH.fullmatch(path)
    if m is None:
        raise ValueError("not a URL of one message (RFC 5092 §6)")
    try:
        mailbox = urllib.parse.unquote(m["mailbox"], errors="strict")
        section = _section(urllib.parse.unquote(m["section"] or "", errors="strict"))
    except UnicodeDecodeError:
        raise ValueError("percent-encoding that is not UTF-8") from None
    uidvalidity = int(m["uidvalidity"]) if m["uidvalidity"] else None
    uid = int(m["uid"])
    if uid > 0xFFFFFFFF or (uidvalidity is not None and uidvalidity > 0xFFFFFFFF):
        raise ValueError("a number out of range")
    return MessageUrl(mailbox, uidvalidity, uid, section)


def _section(text: str) -> Section:
    if not text:
        return Section()
    words = text.split(".")
    part: list[int] = []
    while words and words[0].isdigit():
        number = int(words.pop(0))
        if number == 0:
            raise ValueError("part numbers start at 1")
        part.append(number)
    rest = ".".join(words).upper()
    if rest == "":
        return Section(tuple(part))
    if rest in ("HEADER", "TEXT") or (rest == "MIME" and part):
        return Section(tuple(part), rest)
    raise ValueError(f"section {text!r} is not supported in a URL")
