"""mbox (mboxrd) and Maildir on disk: reading, writing, flags, folder names.

Pure code over files and bytes; the import and export that use it against
the store are ``mailio.py``.

mboxrd (the ``mboxrd`` variant of RFC 4155's ``application/mbox``): a
message starts at a line ``From <sender> <asctime date>``; in its text every
line matching ``>*From `` gains one ``>`` when written and loses it when
read, so any text survives; an empty line follows each message.  Flags travel
in the ``Status:`` (``R``: seen), ``X-Status:`` (``A``nswered, ``F``lagged,
``T`` draft, ``D``eleted) and ``X-Keywords:`` headers, as mutt, Thunderbird
and Dovecot write them; the importer takes them out of the stored message
(Dovecot hides them too) and the exporter puts them back at the end of the
header, so an mbox written by this exporter round-trips byte for byte.

Maildir (cr.yp.to/proto/maildir.html, Maildir++ folders): a file per
message in ``cur/`` or ``new/``, flags after ``:2,`` in its name (``D``raft,
``F``lagged, ``P``assed = ``$Forwarded``, ``R``eplied = ``\\Answered``,
``S``een, ``T``rashed = ``\\Deleted``; ``a``..``z`` index the keywords of
Dovecot's ``dovecot-keywords`` file), INTERNALDATE the file's mtime.  Folder
``A/B`` is the directory ``.A.B`` of the root (the root is INBOX), levels
in modified UTF-7 as Dovecot writes them, a ``.`` or ``%`` inside a level as
``%2E``/``%25``.

Text is exchanged with files in their LF form; the caller applies the CRLF
rule (``protocol.line_endings.to_crlf``) on the way in and turns CRLF back
into LF on the way out.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mailserver.protocol.imap import utf7

FROM_ = b"From "
_QUOTED_FROM = re.compile(rb"^>+From ")
_NEEDS_QUOTE = re.compile(rb"^>*From ")
_ASCTIME = "%a %b %d %H:%M:%S %Y"

#: Maildir info letters and the flags they stand for (in ASCII order, as
#: the info part must be written).
MAILDIR_FLAGS = (("D", "\\Draft"), ("F", "\\Flagged"), ("P", "$Forwarded"),
                 ("R", "\\Answered"), ("S", "\\Seen"), ("T", "\\Deleted"))
_X_STATUS = (("A", "\\Answered"), ("F", "\\Flagged"), ("T", "\\Draft"), ("D", "\\Deleted"))
_STATUS_HEADERS = (b"status:", b"x-status:", b"x-keywords:")
#: Dovecot's and UW-IMAP's own mbox bookkeeping: dropped, meaning nothing here.
_BOOKKEEPING = (b"x-uid:", b"x-imapbase:", b"x-imap:")
KEYWORDS_FILE = "dovecot-keywords"


@dataclass(frozen=True, slots=True)
class DiskMessage:
    """One message read from disk: its text (LF form, unquoted, status headers
    removed), flags, INTERNALDATE (POSIX seconds, None when unknown)."""

    data: bytes
    flags: frozenset[str]
    date: int | None


# -- mbox ------------------------------------------------------------------------------


def parse_from_line(line: bytes) -> tuple[str, int | None]:
    """``(sender, date)`` of a ``From `` line; the date (asctime, read as UTC)
    is None when it does not parse."""
    rest = line[len(FROM_):].rstrip(b"\r\n").decode("latin-1")
    sender, _, date = rest.partition(" ")
    date = " ".join(date.split())
    for candidate in (date, " ".join(date.split()[:5])):
        try:
            return sender, calendar.timegm(time.strptime(candidate, _ASCTIME))
        except ValueError:
            continue
    return sender, None


def from_line(sender: str, date: int) -> bytes:
    """The ``From `` line (with its LF) of a message received at ``date``."""
    return f"From {sender or 'MAILER-DAEMON'} {time.asctime(time.gmtime(date))}\n".encode()


def read_mbox(f: BinaryIO) -> Iterator[DiskMessage]:
    """The messages of an mboxrd file, one at a time (memory: one message).

    A message whose ``From `` line has no date gets ``date`` None.  The
    folder-data pseudo message of UW-IMAP comes as an empty ``data``: skip it.
    """
    lines: list[bytes] = []
    date: int | None = None
    started = False
    for line in f:
        if line.startswith(FROM_):
            if started:
                yield _mbox_message(lines, date)
            lines = []
            date = parse_from_line(line)[1]
            started = True
            continue
        if not started:
            if line.strip():  # text before the first From line: not an mbox
                raise ValueError("not an mbox file: it does not start with a 'From ' line")
            continue
        if _QUOTED_FROM.match(line):
            line = line[1:]
        lines.append(line)
    if started:
        yield _mbox_message(lines, date)


def _mbox_message(lines: list[bytes], date: int | None) -> DiskMessage:
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines.pop()  # the empty line that separates messages
    data = b"".join(lines)
    if _is_folder_data(data):
        return DiskMessage(b"", frozenset(), date)
    data, flags = split_status(data)
    return DiskMessage(data, flags, date)


def _is_folder_data(data: bytes) -> bool:
    """UW-IMAP's (and Dovecot's, with ``mbox_lazy_writes`` off) first pseudo
    message, "DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA", which
    holds its ``X-IMAP:`` header: not mail."""
    head = data[:_header_end(data)].lower()
    return head.startswith(b"x-imap:") or b"\nx-imap:" in head


def write_mbox_message(out: BinaryIO, data: bytes, flags: Iterable[str], date: int,
                       sender: str) -> None:
    """Append one message (LF form) to an mboxrd file, with its status headers."""
    out.write(from_line(sender, date))
    text = add_status(data, frozenset(flags))
    for line in text.splitlines(keepends=True):
        out.write(b">" + line if _NEEDS_QUOTE.match(line) else line)
    if not text.endswith(b"\n"):
        out.write(b"\n")
    out.write(b"\n")


def _header_end(data: bytes) -> int:
    """Offset of the empty line that ends the header (``len(data)`` if none)."""
    if data.startswith(b"\n") or data.startswith(b"\r\n"):
        return 0
    for sep in (b"\n\n", b"\n\r\n"):
        i = data.find(sep)
        if i >= 0:
            return i + 1
    return len(data)


def split_status(data: bytes) -> tuple[bytes, frozenset[str]]:
    """``data`` without its ``Status``/``X-Status``/``X-Keywords`` header
    fields, and the flags they carried."""
    end = _header_end(data)
    kept: list[bytes] = []
    flags: set[str] = set()
    dropping = removed = False
    for line in data[:end].splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and dropping:
            continue
        low = line.lower()
        dropping = low.startswith(_STATUS_HEADERS + _BOOKKEEPING)
        if low.startswith(_BOOKKEEPING):
            removed = True
            continue
        if not dropping:
            kept.append(line)
            continue
        removed = True
        value = line.split(b":", 1)[1].decode("latin-1").strip()
        if low.startswith(b"status:"):
            if "R" in value:
                flags.add("\\Seen")
        elif low.startswith(b"x-status:"):
            flags.update(f for letter, f in _X_STATUS if letter in value)
        else:
            flags.update(k for k in re.split(r"[\s,]+", value) if k)
    if not removed:
        return data, frozenset()
    return b"".join(kept) + data[end:], frozenset(flags)


def add_status(data: bytes, flags: frozenset[str]) -> bytes:
    """``data`` with ``Status``/``X-Status``/``X-Keywords`` fields for
    ``flags`` at the end of its header (none when there are no flags)."""
    fields = []
    if "\\Seen" in flags:
        fields.append(b"Status: RO\n")
    letters = "".join(letter for letter, f in _X_STATUS if f in flags)
    if letters:
        fields.append(f"X-Status: {letters}\n".encode())
    keywords = sorted(f for f in flags if not f.startswith("\\"))
    if keywords:
        fields.append(f"X-Keywords: {' '.join(keywords)}\n".encode())
    if not fields:
        return data
    end = _header_end(data)
    head = data[:end]
    if head and not head.endswith(b"\n"):
        head += b"\n"
    return head + b"".join(fields) + data[end:]


_ESCAPED = re.compile(r"%(25|2E)")


def _unescape(level: str) -> str:
    return _ESCAPED.sub(lambda m: "%" if m.group(1) == "25" else ".", level)


def _mbox_level(level: str) -> str:
    """A folder level as a file name: ``%`` as ``%25``; a leading ``.`` (hidden
    files, ``..``) and the ``.`` of a ``.sbd`` ending as ``%2E``."""
    level = level.replace("%", "%25")
    if level.startswith("."):
        level = "%2E" + level[1:]
    if level.endswith(".sbd"):
        level = level[:-4] + "%2Esbd"
    return level


def mbox_folder(rel: Path) -> str:
    """The folder of an mbox file at ``rel`` under an export directory
    (Thunderbird's layout: the children of ``A`` are in ``A.sbd/``)."""
    parts = [_unescape(p[:-4] if p.endswith(".sbd") else p) for p in rel.parts]
    return "/".join(parts)


def mbox_path(folder: str) -> Path:
    """The relative path of folder ``folder``'s mbox file (``mbox_folder`` reversed)."""
    levels = [_mbox_level(level) for level in folder.split("/")]
    return Path(*[f"{p}.sbd" for p in levels[:-1]], levels[-1])


# -- Maildir ---------------------------------------------------------------------------


def maildir_flags(name: str, keywords: dict[str, str]) -> frozenset[str]:
    """The flags in a Maildir file name's ``:2,`` info; lower-case letters
    through ``keywords`` (letter: keyword, from ``dovecot-keywords``)."""
    _, sep, info = name.rpartition(":2,")
    if not sep:
        return frozenset()
    table = dict(MAILDIR_FLAGS)
    out = set()
    for letter in info:
        flag = table.get(letter) or keywords.get(letter)
        if flag:
            out.add(flag)
    return frozenset(out)


def maildir_info(flags: Iterable[str], letters: dict[str, str]) -> str:
    """The ``:2,`` info for ``flags``; keywords through ``letters``
    (keyword: letter), those without a letter are left out."""
    flags = set(flags)
    out = [letter for letter, flag in MAILDIR_FLAGS if flag in flags]
    out.extend(sorted(letters[f] for f in flags if f in letters))
    return ":2," + "".join(out)


def read_keywords(folder: Path) -> dict[str, str]:
    """Dovecot's ``dovecot-keywords`` of a Maildir folder: ``{letter: keyword}``
    (lines ``<index> <keyword>``, index 0 is ``a``); empty when absent."""
    path = folder / KEYWORDS_FILE
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        index, _, keyword = line.strip().partition(" ")
        if index.isdigit() and int(index) < 26 and keyword:
            out[chr(ord("a") + int(index))] = keyword
    return out


def write_keywords(folder: Path, keywords: list[str]) -> dict[str, str]:
    """Write ``dovecot-keywords`` for up to 26 keywords; ``{keyword: letter}``."""
    letters = {k: chr(ord("a") + i) for i, k in enumerate(keywords[:26])}
    if letters:
        (folder / KEYWORDS_FILE).write_text(
            "".join(f"{i} {k}\n" for i, k in enumerate(keywords[:26])), encoding="utf-8")
    return letters


def maildir_dir(folder: str) -> str:
    """The Maildir++ directory name of a folder (``""`` for INBOX)."""
    if folder.upper() == "INBOX":
        return ""
    levels = [utf7.encode(level.replace("%", "%25").replace(".", "%2E"))
              for level in folder.split("/")]
    return "." + ".".join(levels)


def maildir_folder(dirname: str) -> str:
    """The folder of a Maildir++ directory name (``maildir_dir`` reversed)."""
    if dirname in ("", "."):
        return "INBOX"
    out = []
    for level in dirname.lstrip(".").split("."):
        try:
            level = utf7.decode(level)
        except Exception:  # not modified UTF-7 (another tool's 8-bit name): as it is
            pass
        out.append(_unescape(level))
    return "/".join(out)


def maildir_folders(root: Path) -> Iterator[tuple[str, Path]]:
    """``(folder, directory)`` of every Maildir folder under ``root`` (INBOX first)."""
    if (root / "cur").is_dir() or (root / "new").is_dir():
        yield "INBOX", root
    for sub in sorted(root.iterdir()):
        if sub.name.startswith(".") and sub.name not in (".", "..") and sub.is_dir() and (
                (sub / "cur").is_dir() or (sub / "new").is_dir()):
            yield maildir_folder(sub.name), sub


def maildir_files(folder: Path) -> list[Path]:
    """The message files of a Maildir folder in arrival order (mtime, then name)."""
    files = [p for sub in ("new", "cur") if (folder / sub).is_dir()
             for p in (folder / sub).iterdir() if p.is_file() and not p.name.startswith(".")]
    files.sort(key=lambda p: (p.stat().st_mtime, p.name))
    return files
