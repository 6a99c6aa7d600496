"""Compare our IMAP answers with Dovecot's on the whole shared corpus (read-only on both).

    python bench/compare_dovecot.py [--only 1,7,83] [--keep] [--out FILE] [--timeout S]

Starts a throwaway Dovecot (bench/servers.py, plaintext LOGIN on loopback, Maildir in
a temp dir) and our daemon (port-0 listeners, temp data dir), APPENDs every corpus
message to both with the same INTERNALDATE (message N gets 2020-01-01 12:00 +0000
plus N days, so the date searches have something to cut), then per message fetches

* ``ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE INTERNALDATE`` (RFC 3501 §7.4.2),
* ``BODY.PEEK[]``, ``[HEADER]``, ``[TEXT]``, and for every part number *either*
  side's BODYSTRUCTURE implies (§6.4.5 part numbering): ``[n]``, ``[n.MIME]`` and,
  for message/rfc822 parts, ``[n.HEADER]`` / ``[n.TEXT]``,

and runs a fixed set of ``UID SEARCH`` queries (§6.4.4).  Differences are printed
per message and written to ``bench/results/compare-<date>.txt`` with a grouped
summary at the end (kind → messages).  The verdicts live in bench/COMPARE.md.

Only processes we started are stopped, by PID; all traffic is to 127.0.0.1; every
network await is bounded, and so is the whole run (``--timeout``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CORPUS, ROOT, wait_port  # noqa: E402
from bench.servers import (  # noqa: E402
    DOMAIN,
    VMAIL_UID,
    Dovecot,
    Ours,
    dovecot_version,
    free_port,
    version_ours,
)

USER = (f"cmp@{DOMAIN}", "cmp-secret")
SECTIONS_PER_FETCH = 40  # keeps command lines far below either server's line limit
_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
MISSING = "<not in the FETCH response>"


# -- a small IMAP client ---------------------------------------------------------------

class Imap:
    """One IMAP connection.  Commands are lists of ``bytes`` (sent as is) and
    ``Lit`` (sent as a LITERAL+ non-synchronising literal, RFC 7888 §3, which both
    servers advertise).  Returns (tagged status, untagged responses, tagged line)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float) -> None:
        self.reader, self.writer, self.timeout, self.n = reader, writer, timeout, 0

    @classmethod
    async def connect(cls, port: int, timeout: float = 120.0) -> Imap:
        async with asyncio.timeout(timeout):
            r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
            greeting = await r.readline()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(f"greeting {greeting[:100]!r}")
        return cls(r, w, timeout)

    async def _response(self) -> bytes:
        parts = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise RuntimeError("connection closed")
            parts.append(line)
            m = _LITERAL.search(line)
            if m is None:
                return b"".join(parts)
            parts.append(await self.reader.readexactly(int(m.group(1))))

    async def run(self, *pieces: bytes | Lit) -> tuple[str, list[bytes], bytes]:
        self.n += 1
        tag = b"c%d" % self.n
        out = [tag, b" "]
        for p in pieces:
            out.append(b"{%d+}\r\n%s" % (len(p.data), p.data) if isinstance(p, Lit) else p)
        out.append(b"\r\n")
        async with asyncio.timeout(self.timeout):
            self.writer.write(b"".join(out))
            untagged = []
            while True:
                resp = await self._response()
                if resp.startswith(tag + b" "):
                    return resp[len(tag) + 1:].split(b" ", 1)[0].decode(), untagged, resp
                untagged.append(resp)

    async def close(self) -> None:
        try:
            async with asyncio.timeout(5):
                self.writer.write(b"z LOGOUT\r\n")
                await self.writer.drain()
        except (OSError, TimeoutError):
            pass
        self.writer.close()


class Lit:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


# -- parsing responses into values -----------------------------------------------------
# Strings (quoted or literal) become bytes, atoms and numbers str, NIL None, lists list:
# so a quoted and a literal string with the same content compare equal (RFC 3501 §4.3).

class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.d, self.i = data, pos

    def value(self) -> Any:
        d = self.d
        while d[self.i:self.i + 1] == b" ":
            self.i += 1
        c = d[self.i:self.i + 1]
        if c == b"(":
            self.i += 1
            items = []
            while True:
                while d[self.i:self.i + 1] == b" ":
                    self.i += 1
                if d[self.i:self.i + 1] == b")":
                    self.i += 1
                    return items
                if self.i >= len(d):
                    raise ValueError("unterminated list")
                items.append(self.value())
        if c == b'"':
            j, buf = self.i + 1, bytearray()
            while d[j:j + 1] != b'"':
                if j >= len(d):
                    raise ValueError("unterminated quoted string")
                if d[j:j + 1] == b"\\":
                    j += 1
                buf += d[j:j + 1]
                j += 1
            self.i = j + 1
            return bytes(buf)
        if c == b"{":
            m = re.compile(rb"\{(\d+)\}\r\n").match(d, self.i)
            if m is None:
                raise ValueError(f"bad literal at {self.i}")
            n = int(m.group(1))
            self.i = m.end() + n
            return d[m.end():self.i]
        j, depth = self.i, 0
        while j < len(d):
            ch = d[j:j + 1]
            if ch == b"[":
                depth += 1
            elif ch == b"]":
                depth -= 1
            elif depth == 0 and ch in b" ()\"{\r\n":
                break
            j += 1
        atom = d[self.i:j].decode("latin-1")
        self.i = j
        if not atom:
            raise ValueError(f"empty atom at {self.i}: {d[self.i:self.i + 20]!r}")
        return None if atom.upper() == "NIL" else atom


def parse_fetch(resp: bytes) -> dict[str, Any]:
    """``* n FETCH (k v ...)`` → {KEY: value}; ``BODY[x]<0>`` keys kept with origin."""
    m = re.match(rb"\* \d+ FETCH ", resp)
    if m is None:
        return {}
    items = _Reader(resp, m.end()).value()
    return {str(items[k]).upper(): items[k + 1] for k in range(0, len(items) - 1, 2)}


def parse_search(untagged: list[bytes]) -> set[int]:
    out: set[int] = set()
    for line in untagged:
        if line.startswith(b"* SEARCH"):
            out.update(int(x) for x in line[8:].split())
    return out


def show(v: Any, limit: int = 400) -> str:
    """A value as IMAP-ish text for the report (strings quoted, escapes visible)."""
    if v is None:
        s = "NIL"
    elif isinstance(v, bytes):
        s = '"' + v.decode("latin-1").encode("unicode_escape").decode("ascii") + '"'
    elif isinstance(v, list):
        s = "(" + " ".join(show(x, limit) for x in v) + ")"
    else:
        s = str(v)
    return s if len(s) <= limit else s[:limit] + f"...[{len(s)} chars]"


# -- BODYSTRUCTURE walking (RFC 3501 §7.4.2, part numbers §6.4.5) ----------------------

def _is_multipart(b: Any) -> bool:
    return isinstance(b, list) and bool(b) and isinstance(b[0], list)


def _is_message(b: Any) -> bool:
    return (isinstance(b, list) and len(b) > 8 and isinstance(b[0], bytes)
            and b[0].lower() == b"message" and isinstance(b[1], bytes)
            and b[1].lower() in (b"rfc822", b"global"))


def parts(b: Any, prefix: str = "") -> list[tuple[str, bool]]:
    """[(part number, is message/rfc822)] for every numbered part of body ``b``."""
    out: list[tuple[str, bool]] = []
    if _is_multipart(b):
        for i, child in enumerate(_children(b)):
            num = f"{prefix}{i + 1}"
            out.append((num, _is_message(child)))
            out.extend(_inner(child, num))
    elif isinstance(b, list):
        num = prefix + "1"
        out.append((num, _is_message(b)))
        out.extend(_inner(b, num))
    return out


def _inner(b: Any, num: str) -> list[tuple[str, bool]]:
    if _is_multipart(b):
        return parts(b, num + ".")
    if _is_message(b):
        # The encapsulated message's parts are num.1...; a non-multipart body is num.1.
        return parts(b[8], num + ".")
    return []


def _children(b: list) -> list:
    """The bodies of a multipart: the leading lists, up to the subtype string."""
    out = []
    for x in b if _is_multipart(b) else ():
        if not isinstance(x, list):
            break
        out.append(x)
    return out


_SINGLE = ["type", "subtype", "params", "id", "description", "encoding", "size"]
_MULTI_EXT = ["subtype", "params", "disposition", "language", "location"]
_SINGLE_EXT = ["md5", "disposition", "language", "location"]
_ENVELOPE = ["date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc",
             "in-reply-to", "message-id"]


def field_name(body: Any, path: tuple[int, ...], part: str = "") -> str:
    """Names a leaf path inside a BODY/BODYSTRUCTURE: ``part 2.1 params``."""
    where = f"part {part or 'top'}"
    if not path:
        return f"{where} (whole)"
    i, rest = path[0], path[1:]
    if not isinstance(body, list):
        return f"{where} shape"
    if _is_multipart(body):
        kids = _children(body)
        if i < len(kids):
            return field_name(kids[i], rest, f"{part + '.' if part else ''}{i + 1}")
        k = i - len(kids)
        return f"{where} multipart {_MULTI_EXT[k] if k < len(_MULTI_EXT) else f'ext{k}'}"
    if i < len(_SINGLE):
        return f"{where} {_SINGLE[i]}"
    is_msg = _is_message(body)
    is_text = isinstance(body[0], bytes) and body[0].lower() == b"text"
    if is_msg:
        if i == 7:
            sub = _ENVELOPE[rest[0]] if rest and rest[0] < len(_ENVELOPE) else "?"
            return f"{where} envelope {sub}"
        if i == 8:
            inner = part + ".1" if part else "1"
            return field_name(body[8], rest, inner if not _is_multipart(body[8]) else
                              (part or "")) if rest else f"{where} body"
        if i == 9:
            return f"{where} lines"
        k = i - 10
    elif is_text:
        if i == 7:
            return f"{where} lines"
        k = i - 8
    else:
        k = i - 7
    return f"{where} {_SINGLE_EXT[k] if 0 <= k < len(_SINGLE_EXT) else f'ext{k}'}"


def leaf_diffs(a: Any, b: Any, path: tuple[int, ...] = ()) -> list[tuple[tuple[int, ...],
                                                                          Any, Any]]:
    """Paths where two parsed values differ (shape changes reported at the list)."""
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for k in range(max(len(a), len(b))):
            if k >= len(a) or k >= len(b):
                out.append((path + (k,), a[k] if k < len(a) else "<absent>",
                            b[k] if k < len(b) else "<absent>"))
            else:
                out.extend(leaf_diffs(a[k], b[k], path + (k,)))
        return out
    if a != b and not (isinstance(a, bytes) and isinstance(b, bytes) and _ci_eq(a, b)):
        return [(path, a, b)]
    if a != b:  # case only: worth a line, but a kind of its own
        return [(path + (-1,), a, b)]
    return []


def _ci_eq(a: bytes, b: bytes) -> bool:
    return a.lower() == b.lower()


# -- the comparison --------------------------------------------------------------------

def search_queries(first: dt.date) -> list[tuple[str, list[bytes | Lit]]]:
    """(label, command pieces after ``UID SEARCH``); UTF-8 ones with CHARSET (§6.4.4)."""
    d = lambda n: (first + dt.timedelta(days=n)).strftime("%d-%b-%Y").encode()  # noqa: E731
    q: list[tuple[str, list[bytes | Lit]]] = []
    simple = [
        'ALL', 'FROM "smith"', 'FROM "example"', 'FROM "@"', 'TO "example"', 'TO "undisclosed"',
        'CC "example"', 'BCC "example"', 'SUBJECT "test"', 'SUBJECT "re:"', 'SUBJECT "nil"',
        'SUBJECT "mime"', 'BODY "hello"', 'BODY "boundary"', 'BODY "the"', 'TEXT "boundary"',
        'TEXT "Content-Type"', 'BODY "begin 644"', 'BODY "=3D"', 'BODY "Bl\\"ah"',
        'HEADER "Content-Type" "multipart"', 'HEADER "Content-Type" "mixed"',
        'HEADER "X-Mailer" ""', 'HEADER "Message-ID" ""', 'HEADER "List-Id" ""',
        'HEADER "Received" "localhost"', 'HEADER "Subject" ""', 'HEADER "From" ""',
        'HEADER "Content-Transfer-Encoding" "base64"', 'HEADER "DKIM-Signature" "v=1"',
        'LARGER 10000', 'SMALLER 1000', 'LARGER 100000', 'SMALLER 300',
        'BEFORE ' + d(30).decode(), 'SINCE ' + d(100).decode(), 'ON ' + d(77).decode(),
        'SENTBEFORE 1-Jan-2000', 'SENTSINCE 1-Jan-2010', 'SENTON 21-Nov-1997',
        'SENTBEFORE 1-Jan-1990', 'NOT SENTSINCE 1-Jan-1970',
        'OR FROM "pete" TO "pete"', 'NOT BODY "a"', 'HEADER "X-Nonexistent" ""',
        'SUBJECT "=?"', 'FROM "=?"', 'TO "<"', 'FROM "\\\\"',
        'HEADER "Content-Type" "text/plain"', 'TEXT "Return-Path"',
    ]
    q += [(s, [s.encode()]) for s in simple]
    utf8 = [("SUBJECT", "ü"), ("SUBJECT", "日本"), ("SUBJECT", "Приве"), ("FROM", "ü"),
            ("BODY", "ü"), ("BODY", "日本語"), ("BODY", "Привет"), ("TEXT", "é"),
            ("SUBJECT", "€"), ("BODY", "ß"), ("SUBJECT", "Ä"), ("BODY", "\u00a0"),
            ("HEADER Subject", "é")]
    for key, text in utf8:
        q.append((f"CHARSET UTF-8 {key} {text!r}",
                  [b"CHARSET UTF-8 " + key.encode() + b" ", Lit(text.encode())]))
    return q


class Side:
    def __init__(self, name: str, client: Imap) -> None:
        self.name, self.c = name, client
        self.uid: dict[int, int] = {}  # message number -> UID
        self.append_fail: dict[int, str] = {}


async def append_all(side: Side, msgs: list[tuple[int, bytes]], first: dt.date) -> None:
    for n, data in msgs:
        when = (first + dt.timedelta(days=n)).strftime("%d-%b-%Y").encode()
        status, _, tagged = await side.c.run(b'APPEND INBOX () "' + when + b' 12:00:00 +0000" ',
                                             Lit(data))
        m = re.search(rb"\[APPENDUID \d+ (\d+)\]", tagged)
        if status == "OK" and m:
            side.uid[n] = int(m.group(1))
        else:
            side.append_fail[n] = tagged.decode("latin-1").strip()


async def fetch(side: Side, uid: int, items: list[str]) -> dict[str, Any]:
    status, untagged, tagged = await side.c.run(
        b"UID FETCH %d (%s)" % (uid, " ".join(items).encode()))
    out: dict[str, Any] = {}
    if status != "OK":
        out["__error__"] = tagged.decode("latin-1").strip()
    for line in untagged:
        try:
            out.update(parse_fetch(line))
        except (ValueError, IndexError) as e:
            out.setdefault("__parse_error__", f"{e}: {line[:200]!r}")
    return out


def _when(v: bytes) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(v.decode().strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.kinds: dict[str, set[int]] = defaultdict(set)
        #: family -> [answers compared, answers the same]: the agreement figure.
        self.tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def tally(self, family: str, same: bool) -> None:
        t = self.tallies[family]
        t[0] += 1
        t[1] += same

    def msg(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)

    def diff(self, n: int, kind: str, text: str) -> None:
        self.kinds[kind].add(n)
        self.msg(f"  [{kind}] {text}")


def _section_kind(a: Any, b: Any) -> tuple[str, str]:
    """Classifies a section difference; a = ours, b = Dovecot."""
    if not isinstance(a, bytes) or not isinstance(b, bytes):
        return "NIL/missing", f"ours {show(a, 120)} / dovecot {show(b, 120)}"
    crlf = lambda x: x.replace(b"\r\n", b"\n")  # noqa: E731
    if crlf(a) == crlf(b):
        ca, cb = a.count(b"\r\n"), b.count(b"\r\n")
        return "line endings only", f"ours {len(a)} B ({ca} CRLF) / dovecot {len(b)} B ({cb} CRLF)"
    i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    ctx = lambda x: show(x[max(0, i - 30):i + 50], 200)  # noqa: E731
    kind = "content"
    if crlf(a).rstrip(b"\n") == crlf(b).rstrip(b"\n"):
        kind = "trailing newline"
    elif crlf(a).strip() == crlf(b).strip():
        kind = "leading/trailing whitespace"
    return kind, f"ours {len(a)} B / dovecot {len(b)} B, first diff at {i}: " \
        f"ours {ctx(a)} / dovecot {ctx(b)}"


async def compare_message(rep: Report, n: int, name: str, raw: bytes, ours: Side,
                          dove: Side) -> None:
    rep.msg(f"\n== {name} ({len(raw)} B)")
    if n in ours.append_fail or n in dove.append_fail:
        rep.diff(n, "APPEND result", f"ours: {ours.append_fail.get(n, 'OK')} / "
                 f"dovecot: {dove.append_fail.get(n, 'OK')}")
        return
    base = ["ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.SIZE", "INTERNALDATE",
            "BODY.PEEK[]", "BODY.PEEK[HEADER]", "BODY.PEEK[TEXT]"]
    a, b = await asyncio.gather(fetch(ours, ours.uid[n], base), fetch(dove, dove.uid[n], base))
    for side, got in (("ours", a), ("dovecot", b)):
        for k in ("__error__", "__parse_error__"):
            if k in got:
                rep.diff(n, f"FETCH failed ({side})", got[k][:300])
    for key in ("ENVELOPE", "BODYSTRUCTURE", "BODY"):
        va, vb = a.get(key), b.get(key)
        rep.tally(f"FETCH {key}", va == vb)
        if va == vb:
            continue
        ds = leaf_diffs(va, vb)
        interesting = False
        if key != "ENVELOPE" and len(ds) > 12:  # a different tree: show both whole
            rep.diff(n, f"{key} tree shape", f"{len(ds)} leaf differences")
            rep.msg(f"    ours:    {show(va, 1500)}\n    dovecot: {show(vb, 1500)}")
            continue
        for path, x, y in ds:
            case_only = path and path[-1] == -1
            p = path[:-1] if case_only else path
            if key == "ENVELOPE":
                field = f"envelope {_ENVELOPE[p[0]]}" if p and p[0] < 10 else "envelope"
            else:
                field = re.sub(r"^part \S+ ", "", field_name(va if va is not None else vb, p))
                where = field_name(va if va is not None else vb, p)
                field = f"{key.lower()} {field}"
            label = f"{field} (case only)" if case_only else field
            detail = f"at {list(p)}: ours {show(x, 300)} / dovecot {show(y, 300)}"
            if key != "ENVELOPE":
                detail = f"{where}: ours {show(x, 300)} / dovecot {show(y, 300)}"
            rep.diff(n, label, detail)
            if not re.search(r" (size|lines)$", field):
                interesting = True
        if interesting:  # more than sizes: the two trees side by side
            rep.msg(f"    ours:    {show(va, 2000)}\n    dovecot: {show(vb, 2000)}")
    sa, sb = a.get("RFC822.SIZE"), b.get("RFC822.SIZE")
    rep.tally("FETCH RFC822.SIZE", sa == sb)
    if sa != sb:
        crlf = len(re.sub(rb"\r?\n", b"\r\n", raw))
        rep.diff(n, "RFC822.SIZE", f"ours {sa} / dovecot {sb} (file {len(raw)} B, "
                 f"with every line ending as CRLF {crlf} B)")
    ia, ib = a.get("INTERNALDATE"), b.get("INTERNALDATE")
    rep.tally("FETCH INTERNALDATE", ia == ib)
    if ia != ib:
        same = isinstance(ia, bytes) and isinstance(ib, bytes) and _when(ia) == _when(ib)
        rep.diff(n, "INTERNALDATE spelling (same instant)" if same else "INTERNALDATE", f"ours {show(a.get('INTERNALDATE'))} / "
                 f"dovecot {show(b.get('INTERNALDATE'))}")
    for sec in ("", "HEADER", "TEXT"):
        key = f"BODY[{sec}]"
        rep.tally("FETCH BODY[], [HEADER], [TEXT]", a.get(key, MISSING) == b.get(key, MISSING))
        if a.get(key, MISSING) != b.get(key, MISSING):
            kind, detail = _section_kind(a.get(key, MISSING), b.get(key, MISSING))
            rep.diff(n, f"BODY[{sec or ''}] {kind}", detail)
    for side, got in (("ours", a), ("dovecot", b)):
        whole = got.get("BODY[]")
        if isinstance(whole, bytes) and isinstance(got.get("RFC822.SIZE"), str) \
                and int(got["RFC822.SIZE"]) != len(whole):
            rep.diff(n, f"RFC822.SIZE != len(BODY[]) ({side})",
                     f"{got['RFC822.SIZE']} vs {len(whole)}")

    # Every part number either side reports (§6.4.5), with MIME, and HEADER/TEXT for
    # message/rfc822 parts.
    nums: dict[str, bool] = {}
    seen: dict[str, set[str]] = defaultdict(set)  # part number -> sides that report it
    for side, bs in (("ours", a.get("BODYSTRUCTURE")), ("dovecot", b.get("BODYSTRUCTURE"))):
        for num, is_msg in parts(bs):
            nums[num] = nums.get(num, False) or is_msg
            seen[num].add(side)
    items = []
    for num, is_msg in nums.items():
        items += [f"BODY.PEEK[{num}]", f"BODY.PEEK[{num}.MIME]"]
        if is_msg:
            items += [f"BODY.PEEK[{num}.HEADER]", f"BODY.PEEK[{num}.TEXT]"]
    shape_only = 0
    by_kind: dict[str, list[str]] = defaultdict(list)
    for k in range(0, len(items), SECTIONS_PER_FETCH):
        chunk = items[k:k + SECTIONS_PER_FETCH]
        fa, fb = await asyncio.gather(fetch(ours, ours.uid[n], chunk),
                                      fetch(dove, dove.uid[n], chunk))
        for side, got in (("ours", fa), ("dovecot", fb)):
            for e in ("__error__", "__parse_error__"):
                if e in got:
                    rep.diff(n, f"FETCH section failed ({side})", got[e][:300])
        for item in chunk:
            key = item.replace("BODY.PEEK[", "BODY[")
            rep.tally("FETCH BODY[part], [part.MIME] ...", fa.get(key, MISSING) == fb.get(key, MISSING))
            if fa.get(key, MISSING) != fb.get(key, MISSING):
                kind, detail = _section_kind(fa.get(key, MISSING), fb.get(key, MISSING))
                num = re.match(r"BODY\[([\d.]*\d)", key)
                if num and len(seen[num.group(1)]) == 1:
                    kind += f" (part only in {next(iter(seen[num.group(1)]))}'s BODYSTRUCTURE)"
                suffix = key[key.rfind(".") + 1:-1] if not key[-2].isdigit() else "n"
                by_kind[f"BODY[{suffix}] {kind}"].append(f"{key}: {detail}")
            else:
                shape_only += 1
    for kind, rows in by_kind.items():
        for row in rows[:4]:
            rep.diff(n, kind, row)
        if len(rows) > 4:
            rep.msg(f"  ... and {len(rows) - 4} more [{kind}] sections")
    rep.msg(f"  ({len(items)} part sections compared, {shape_only} identical)")


async def compare_searches(rep: Report, ours: Side, dove: Side, first: dt.date) -> None:
    rep.msg("\n== SEARCH (UID SEARCH; numbers below are corpus message numbers)")
    back_o = {u: n for n, u in ours.uid.items()}
    back_d = {u: n for n, u in dove.uid.items()}
    both = set(ours.uid) & set(dove.uid)
    for label, pieces in search_queries(first):
        (sa, ua, ta), (sb, ub, tb) = await asyncio.gather(
            ours.c.run(b"UID SEARCH ", *pieces), dove.c.run(b"UID SEARCH ", *pieces))
        if sa != "OK" or sb != "OK":
            rep.msg(f"  {label}: ours {ta.strip()[:120]!r} / dovecot {tb.strip()[:120]!r}")
            if sa != sb:
                rep.kinds[f"SEARCH status {label}"].add(0)
            continue
        na = {back_o[u] for u in parse_search(ua) if u in back_o} & both
        nb = {back_d[u] for u in parse_search(ub) if u in back_d} & both
        for n in both:  # one answer per message: in the result or not
            rep.tally("SEARCH (query x message)", (n in na) == (n in nb))
        if na == nb:
            rep.msg(f"  {label}: same ({len(na)} hits)")
            continue
        only_o, only_d = sorted(na - nb), sorted(nb - na)
        rep.msg(f"  {label}: ours {len(na)} / dovecot {len(nb)} hits; only ours {only_o}; "
                f"only dovecot {only_d}")
        for n in only_o:
            rep.kinds[f"SEARCH {label}: only ours"].add(n)
        for n in only_d:
            rep.kinds[f"SEARCH {label}: only dovecot"].add(n)


async def run(args: argparse.Namespace, work: Path, rep: Report) -> None:
    files = sorted((CORPUS).glob("*.eml"))
    if not files:
        raise FileNotFoundError(f"no corpus under {CORPUS}")
    only = {int(x) for x in args.only.split(",")} if args.only else None
    msgs = [(int(f.name[:3]), f) for f in files if only is None or int(f.name[:3]) in only]
    first = dt.date(2020, 1, 1)
    vmail = work / "vmail"
    (vmail / DOMAIN).mkdir(parents=True)
    os.chown(vmail, VMAIL_UID, VMAIL_UID)
    os.chown(vmail / DOMAIN, VMAIL_UID, VMAIL_UID)
    ours_srv = Ours(work / "ours")
    await ours_srv.add_users([USER])
    dv = Dovecot(work / "dovecot", vmail, free_port())
    dv.configure([USER])
    stops = []
    clients: list[Imap] = []
    try:
        ours_srv.start()
        stops.append(ours_srv.stop)
        dv.start()
        stops.append(dv.stop)
        await wait_port(dv.imap_port)
        sides = []
        for name, port in (("ours", ours_srv.port("imap")), ("dovecot", dv.imap_port)):
            c = await Imap.connect(port)
            clients.append(c)
            st, _, t = await c.run(b"LOGIN ", Lit(USER[0].encode()), b" ", Lit(USER[1].encode()))
            if st != "OK":
                raise RuntimeError(f"{name} LOGIN: {t!r}")
            sides.append(Side(name, c))
        ours, dove = sides
        data = [(n, f.read_bytes()) for n, f in msgs]
        await asyncio.gather(append_all(ours, data, first), append_all(dove, data, first))
        for side in sides:
            st, _, t = await side.c.run(b"SELECT INBOX")
            if st != "OK":
                raise RuntimeError(f"{side.name} SELECT: {t!r}")
        rep.msg(f"appended: ours {len(ours.uid)}, dovecot {len(dove.uid)} of {len(data)}")
        for (n, f), (_, raw) in zip(msgs, data, strict=True):
            await compare_message(rep, n, f.name, raw, ours, dove)
        await compare_searches(rep, ours, dove, first)
    finally:
        for c in clients:
            await c.close()
        for stop in reversed(stops):
            stop()


def summary(rep: Report) -> None:
    rep.msg("\n== AGREEMENT: answers compared, the same on both sides")
    total = [0, 0]
    for family, (n, same) in sorted(rep.tallies.items()):
        total[0] += n
        total[1] += same
        rep.msg(f"  {family:<40} {same:6d} / {n:6d}  {100 * same / max(n, 1):6.2f} %")
    rep.msg(f"  {'all':<40} {total[1]:6d} / {total[0]:6d}  "
            f"{100 * total[1] / max(total[0], 1):6.2f} %")
    rep.msg("\n== SUMMARY: kind of difference -> corpus messages")
    for kind, ns in sorted(rep.kinds.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        rep.msg(f"{len(ns):4d}  {kind}: {' '.join(f'{n:03d}' for n in sorted(ns))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated corpus message numbers")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--out", type=Path, help="report file (default bench/results/compare-<date>.txt)")
    ap.add_argument("--timeout", type=float, default=1200, help="whole run, seconds")
    args = ap.parse_args()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%S")
    out = args.out or ROOT / "bench" / "results" / f"compare-{stamp}.txt"
    rep = Report()
    rep.msg(f"# compare ours ({version_ours()}) with Dovecot {dovecot_version()}, {stamp} UTC")
    work = Path(tempfile.mkdtemp(prefix="mailserver-compare-"))
    os.chmod(work, 0o755)  # Dovecot's imap process runs as uid 65534

    async def bounded() -> None:
        async with asyncio.timeout(args.timeout):
            await run(args, work, rep)

    try:
        asyncio.run(bounded())
    finally:
        summary(rep)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(rep.lines) + "\n", encoding="utf-8")
        print(f"\nreport written to {out}")
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
