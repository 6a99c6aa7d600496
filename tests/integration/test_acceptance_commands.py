"""Acceptance (issue #2 §5, §7): every IMAP command and FETCH item of the issue,
driven through the stdlib's ``imaplib`` (and ``imapclient`` for IDLE), against
the real server.

The other IMAP suites speak raw bytes or imapclient; this one proves that the
most conservative real client gets what RFC 3501 §6 and §7 promise.  FETCH
responses are decoded with a small parser of the §9 grammar (``parse_fetch``)
so literal and quoted values are compared byte for byte.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import re
import smtplib
import threading

import pytest
from imapclient import IMAPClient
from support.server import USERS
from support.wire import client_tls_context

ALICE = "alice@example.test"
PASSWORD = USERS[ALICE]

# A message with every kind of part: text, nested multipart, message/rfc822.
# Appended (not delivered) so that its bytes in the store are exactly these.
HEADER = (
    b"From: Ann Example <ann@remote.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Cc: carl@remote.test\r\n"
    b"Subject: parts and pieces\r\n"
    b"Date: Mon, 15 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <parts@remote.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
)
PART1_MIME = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
PART2_MIME = b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
PART21_MIME = b"Content-Type: text/plain\r\n\r\n"
PART22_MIME = b"Content-Type: text/html\r\n\r\n"
PART3_MIME = b"Content-Type: message/rfc822\r\n\r\n"
INNER_HEADER = b"From: x@y.test\r\nSubject: inner message\r\n\r\n"
PART2_BODY = (
    b"--inner\r\n" + PART21_MIME + b"Alternative text.\r\n"
    b"--inner\r\n" + PART22_MIME + b"<p>Alternative html.</p>\r\n"
    b"--inner--\r\n"
)
TEXT = (
    b"This is the preamble.\r\n"
    b"--outer\r\n" + PART1_MIME + b"Part one, plain.\r\n"
    b"--outer\r\n" + PART2_MIME + PART2_BODY
    + b"--outer\r\n" + PART3_MIME + INNER_HEADER + b"Inner body.\r\n"
    b"--outer--\r\n"
)
MULTIPART = HEADER + TEXT


def simple(subject: str, body: str = "Hello.", *, sender: str = "bob@remote.test",
           date: str = "Tue, 02 Jan 2024 08:00:00 +0000") -> bytes:
    return (f"From: {sender}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\n\r\n{body}\r\n").encode()


# -- a reader for imaplib's FETCH data (RFC 3501 §9 msg-att) -------------------------


def _value(buf: bytes, i: int) -> tuple[object, int]:
    while buf[i : i + 1] == b" ":
        i += 1
    c = buf[i : i + 1]
    if c == b"(":
        items: list[object] = []
        i += 1
        while True:
            while buf[i : i + 1] == b" ":
                i += 1
            if buf[i : i + 1] == b")":
                return items, i + 1
            v, i = _value(buf, i)
            items.append(v)
    if c == b'"':
        out = bytearray()
        i += 1
        while buf[i : i + 1] != b'"':
            if buf[i : i + 1] == b"\\":
                i += 1
            out += buf[i : i + 1]
            i += 1
        return bytes(out), i + 1
    if c == b"{":
        end = buf.index(b"}", i)
        n = int(buf[i + 1 : end].rstrip(b"+"))
        # imaplib strips the CRLF after "{n}" and inlines the literal.
        return buf[end + 1 : end + 1 + n], end + 1 + n
    start, depth = i, 0
    while i < len(buf):
        ch = buf[i : i + 1]
        if ch == b"[":
            depth += 1
        elif ch == b"]":
            depth -= 1
        elif depth == 0 and ch in (b" ", b")"):
            break
        i += 1
    atom = buf[start:i]
    return (None if atom.upper() == b"NIL" else atom), i


def parse_fetch(data: list) -> dict[int, dict[str, object]]:
    """imaplib FETCH data -> {seq: {ITEM-NAME: value}} (items of repeated
    responses for one message merged; names upper-cased, values bytes/lists)."""
    responses: list[bytes] = []
    current = b""
    for element in data:
        if element is None:
            continue
        if isinstance(element, tuple):
            current += element[0] + element[1]
        else:
            responses.append(current + element)
            current = b""
    out: dict[int, dict[str, object]] = {}
    for resp in responses:
        m = re.match(rb"(\d+) ", resp)
        assert m is not None, resp
        items, _ = _value(resp, m.end())
        assert isinstance(items, list) and len(items) % 2 == 0, resp
        entry = out.setdefault(int(m.group(1)), {})
        for name, value in zip(items[::2], items[1::2], strict=True):
            assert isinstance(name, bytes)
            entry[name.decode().upper()] = value
    return out


def flags(item: dict[str, object], default: set[bytes] | None = None) -> set[bytes]:
    """The FLAGS of a parsed FETCH item, without the session flag \\Recent
    (RFC 3501 §2.3.2: which session sees it depends on who looked first)."""
    if "FLAGS" not in item and default is not None:
        return default
    value = item["FLAGS"]
    assert isinstance(value, list), item
    return set(value) - {b"\\Recent"}


def ok(result: tuple[str, list]) -> list:
    typ, data = result
    assert typ == "OK", data
    return data


def no(result: tuple[str, list], code: str | None = None) -> None:
    """Assert a tagged NO (with the RFC 5530 response code, when given)."""
    typ, data = result
    assert typ == "NO", data
    if code is not None:
        assert data[0].startswith(f"[{code}".encode()), data


def connect(server, *, login: bool = True) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30)
    if login:
        ok(imap.login(ALICE, PASSWORD))
    return imap


def append(imap: imaplib.IMAP4, msg: bytes, *, mailbox: str = "INBOX", flags: str = "",
           when: dt.datetime | None = None) -> int:
    """APPEND and return the new UID (RFC 4315 APPENDUID)."""
    date = imaplib.Time2Internaldate(when) if when else None
    data = ok(imap.append(mailbox, flags or None, date, msg))
    m = re.search(rb"APPENDUID \d+ (\d+)", data[0])
    assert m is not None, data
    return int(m.group(1))


# -- any state and not authenticated (RFC 3501 §6.1, §6.2) ---------------------------


def test_capability_noop_logout(server):
    imap = connect(server, login=False)
    caps = set(imap.capabilities)
    assert {"IMAP4REV1", "STARTTLS", "AUTH=PLAIN", "IDLE", "UNSELECT", "LITERAL+"} <= caps
    data = ok(imap.capability())
    assert data[0].upper().startswith(b"IMAP4REV1") or b"IMAP4rev1" in data[0]
    ok(imap.noop())
    typ, data = imap.logout()
    assert typ == "BYE", data


def test_starttls_then_login(server):
    imap = connect(server, login=False)
    ok(imap.starttls(ssl_context=client_tls_context()))
    # §6.2.1: the capabilities change after TLS; STARTTLS is no longer offered.
    assert "STARTTLS" not in imap.capabilities
    assert "AUTH=PLAIN" in imap.capabilities
    ok(imap.login(ALICE, PASSWORD))
    ok(imap.select("INBOX"))
    imap.logout()


def test_implicit_tls_port(server):
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=client_tls_context(),
                             timeout=30)
    assert "STARTTLS" not in imap.capabilities
    ok(imap.login(ALICE, PASSWORD))
    imap.logout()


def test_login_failures_and_authenticate_plain(server):
    imap = connect(server, login=False)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login(ALICE, "wrong")
    # RFC 4616: authzid NUL authcid NUL password; imaplib does the base64.
    ok(imap.authenticate("PLAIN", lambda _challenge: f"\0{ALICE}\0{PASSWORD}".encode()))
    assert imap.state == "AUTH"
    ok(imap.select("INBOX"))
    imap.logout()

    imap = connect(server, login=False)
    with pytest.raises(imaplib.IMAP4.error):
        imap.authenticate("PLAIN", lambda _c: f"\0{ALICE}\0nope".encode())
    ok(imap.noop())
    imap.logout()


# -- authenticated state (RFC 3501 §6.3) ---------------------------------------------


def list_names(data: list) -> dict[str, bytes]:
    """LIST/LSUB data -> {name: attributes}."""
    out = {}
    for line in data:
        if line is None:
            continue
        m = re.match(rb'\((?P<attrs>[^)]*)\) (?:"(?P<d>.)"|NIL) (?P<name>.+)$', line)
        assert m is not None, line
        name = m["name"]
        if name.startswith(b'"'):
            name = name[1:-1]
        out[name.decode()] = m["attrs"]
    return out


def test_mailbox_commands(server):
    imap = connect(server)
    names = list_names(ok(imap.list()))
    assert {"INBOX", "Sent", "Drafts", "Trash", "Junk"} <= set(names)
    assert b"\\Sent" in names["Sent"] and b"\\Trash" in names["Trash"]
    assert b"\\Junk" in names["Junk"] and b"\\Drafts" in names["Drafts"]

    ok(imap.create("Projects/2024"))
    names = list_names(ok(imap.list('""', "Projects/*")))
    assert set(names) == {"Projects/2024"}
    names = list_names(ok(imap.list('""', "%")))
    assert "Projects" in names and "Projects/2024" not in names
    no(imap.create("Projects/2024"), "ALREADYEXISTS")

    ok(imap.subscribe("Projects/2024"))
    assert "Projects/2024" in list_names(ok(imap.lsub()))
    ok(imap.unsubscribe("Projects/2024"))
    assert "Projects/2024" not in list_names(ok(imap.lsub()))

    ok(imap.rename("Projects", "Archive"))
    names = list_names(ok(imap.list()))
    assert "Archive/2024" in names and "Projects/2024" not in names and "Projects" not in names

    uid = append(imap, simple("status me"), mailbox="Archive/2024", flags="(\\Seen)")
    assert uid == 1
    append(imap, simple("unseen one"), mailbox="Archive/2024")
    data = ok(imap.status("Archive/2024", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)"))
    m = re.search(rb"\((.*)\)", data[0])
    assert m is not None
    fields = dict(zip(m.group(1).split()[::2], m.group(1).split()[1::2], strict=True))
    assert fields[b"MESSAGES"] == b"2" and fields[b"UNSEEN"] == b"1"
    assert fields[b"UIDNEXT"] == b"3" and int(fields[b"UIDVALIDITY"]) > 0

    ok(imap.delete("Archive/2024"))
    ok(imap.delete("Archive"))
    names = list_names(ok(imap.list()))
    assert not any(n.startswith("Archive") for n in names)
    no(imap.delete("INBOX"))
    no(imap.status("Nowhere", "(MESSAGES)"))
    imap.logout()


def test_select_examine_close_unselect_expunge(server):
    imap = connect(server)
    for i in range(4):
        append(imap, simple(f"m{i}"))

    count = ok(imap.select("INBOX"))
    assert count == [b"4"]
    assert imap.untagged_responses.get("FLAGS"), "SELECT must send FLAGS"
    assert int(imap.response("UIDVALIDITY")[1][0]) > 0
    assert imap.response("UIDNEXT")[1][0] == b"5"
    ok(imap.store("1", "+FLAGS", "(\\Deleted)"))
    # UNSELECT (RFC 3691) leaves \Deleted messages in place.
    ok(imap.unselect())
    assert ok(imap.select("INBOX")) == [b"4"]
    # CLOSE expunges silently (§6.4.2).
    ok(imap.close())
    assert ok(imap.select("INBOX")) == [b"3"]
    ok(imap.store("1,3", "+FLAGS", "(\\Deleted)"))
    expunged = ok(imap.expunge())
    # §7.4.1: each EXPUNGE is the sequence number at the moment it is sent.
    assert expunged in ([b"3", b"1"], [b"1", b"2"])
    assert ok(imap.select("INBOX")) == [b"1"]

    # EXAMINE is read-only: STORE fails, CLOSE does not expunge.
    ok(imap.store("1", "+FLAGS", "(\\Deleted)"))
    assert ok(imap.select("INBOX", readonly=True)) == [b"1"]
    assert imap.untagged_responses.get("READ-ONLY") or imap.is_readonly
    typ, data = imap.store("1", "+FLAGS", "(\\Flagged)")
    assert typ == "NO", data
    ok(imap.close())
    assert ok(imap.select("INBOX")) == [b"1"]
    imap.logout()


def test_append_copy_and_uid_copy(server):
    imap = connect(server)
    when = dt.datetime(2023, 3, 4, 5, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    uid1 = append(imap, simple("one"), flags="(\\Flagged $Work)", when=when)
    uid2 = append(imap, simple("two"))
    assert (uid1, uid2) == (1, 2)
    ok(imap.create("Keep"))
    ok(imap.select("INBOX"))
    data = ok(imap.copy("1:2", "Keep"))
    assert re.search(rb"COPYUID \d+ 1:2 1:2", data[0]), data
    typ, data = imap.uid("COPY", "2", "Keep")  # imaplib drops the tagged COPYUID code
    assert typ == "OK", data
    no(imap.copy("1", "Missing"))

    ok(imap.select("Keep", readonly=True))
    got = parse_fetch(ok(imap.fetch("1:3", "(UID FLAGS INTERNALDATE RFC822.SIZE)")))
    assert sorted(got) == [1, 2, 3]
    assert [got[n]["UID"] for n in (1, 2, 3)] == [b"1", b"2", b"3"]
    assert flags(got[1]) == {b"\\Flagged", b"$Work"}
    # COPY keeps the internal date (§6.4.7) and the size.
    assert got[1]["INTERNALDATE"] == b"04-Mar-2023 05:06:07 +0200"  # date-day-fixed, 2DIGIT (§9)
    assert got[1]["RFC822.SIZE"] == str(len(simple("one"))).encode()
    imap.logout()


# -- FETCH (RFC 3501 §6.4.5, §7.4.2) -------------------------------------------------


def test_fetch_every_item(server):
    imap = connect(server)
    when = dt.datetime(2024, 1, 15, 11, 0, 0, tzinfo=dt.UTC)
    assert append(imap, MULTIPART, when=when) == 1
    ok(imap.select("INBOX"))

    f = parse_fetch(ok(imap.fetch("1", "(UID FLAGS INTERNALDATE RFC822.SIZE)")))[1]
    assert f["UID"] == b"1" and flags(f) == set()
    assert f["INTERNALDATE"] == b"15-Jan-2024 11:00:00 +0000"
    assert f["RFC822.SIZE"] == str(len(MULTIPART)).encode()

    peeks = {
        "BODY[]": MULTIPART,
        "BODY[HEADER]": HEADER,
        "BODY[TEXT]": TEXT,
        "BODY[1]": b"Part one, plain.",
        "BODY[1.MIME]": PART1_MIME,
        "BODY[2]": PART2_BODY,
        "BODY[2.MIME]": PART2_MIME,
        "BODY[2.1]": b"Alternative text.",
        "BODY[2.1.MIME]": PART21_MIME,
        "BODY[2.2]": b"<p>Alternative html.</p>",
        "BODY[2.2.MIME]": PART22_MIME,
        "BODY[3]": INNER_HEADER + b"Inner body.",
        "BODY[3.MIME]": PART3_MIME,
        "BODY[3.HEADER]": INNER_HEADER,
        "BODY[3.TEXT]": b"Inner body.",
        "BODY[3.1]": b"Inner body.",
    }
    for name, expected in peeks.items():
        section = name[4:]
        f = parse_fetch(ok(imap.fetch("1", f"(BODY.PEEK{section})")))[1]
        assert f[name] == expected, (name, f)
    # PEEK never sets \Seen.
    assert flags(parse_fetch(ok(imap.fetch("1", "FLAGS")))[1]) == set()

    # HEADER.FIELDS / .NOT: the named fields, a blank line ends them (§6.4.5).
    f = parse_fetch(ok(imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (Subject FROM)])")))[1]
    [(key, value)] = [(k, v) for k, v in f.items() if k.startswith("BODY[HEADER.FIELDS")]
    assert value == b"From: Ann Example <ann@remote.test>\r\nSubject: parts and pieces\r\n\r\n"
    f = parse_fetch(ok(imap.fetch(
        "1", "(BODY.PEEK[HEADER.FIELDS.NOT (Subject From Date Message-ID Content-Type)])")))[1]
    [value] = [v for k, v in f.items() if k.startswith("BODY[HEADER.FIELDS.NOT")]
    assert value == (b"To: alice@example.test\r\nCc: carl@remote.test\r\n"
                     b"MIME-Version: 1.0\r\n\r\n")
    f = parse_fetch(ok(imap.fetch("1", "(BODY.PEEK[3.HEADER.FIELDS (SUBJECT)])")))[1]
    [value] = [v for k, v in f.items() if k.startswith("BODY[3.HEADER.FIELDS")]
    assert value == b"Subject: inner message\r\n\r\n"

    # Partial fetches: the response names the origin only (§7.4.2).
    f = parse_fetch(ok(imap.fetch("1", "(BODY.PEEK[]<0.10> BODY.PEEK[1]<5.3>)")))[1]
    assert f["BODY[]<0>"] == MULTIPART[:10]
    assert f["BODY[1]<5>"] == b"one"
    f = parse_fetch(ok(imap.fetch("1", "(BODY.PEEK[TEXT]<100000.10>)")))[1]
    assert f["BODY[TEXT]<100000>"] == b""
    # A part number that does not exist is empty, not an error (Dovecot does the same).
    f = parse_fetch(ok(imap.fetch("1", "(BODY.PEEK[9])")))[1]
    assert f["BODY[9]"] in (b"", None)

    # ENVELOPE (§7.4.2): date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to, id.
    env = parse_fetch(ok(imap.fetch("1", "ENVELOPE")))[1]["ENVELOPE"]
    assert isinstance(env, list) and len(env) == 10
    assert env[0] == b"Mon, 15 Jan 2024 10:00:00 +0000"
    assert env[1] == b"parts and pieces"
    assert env[2] == [[b"Ann Example", None, b"ann", b"remote.test"]]
    assert env[3] == env[2] and env[4] == env[2]  # sender and reply-to default to from
    assert env[5] == [[None, None, b"alice", b"example.test"]]
    assert env[6] == [[None, None, b"carl", b"remote.test"]]
    assert env[7] is None and env[8] is None
    assert env[9] == b"<parts@remote.test>"

    # BODYSTRUCTURE (extensible) and BODY (non-extensible) (§7.4.2).
    bs = parse_fetch(ok(imap.fetch("1", "BODYSTRUCTURE")))[1]["BODYSTRUCTURE"]
    assert isinstance(bs, list)
    part1, part2, part3 = bs[0], bs[1], bs[2]
    assert bs[3].upper() == b"MIXED"
    assert [p.upper() for p in part1[:2]] == [b"TEXT", b"PLAIN"]
    assert part1[2] == [b"charset", b"us-ascii"] or part1[2] == [b"CHARSET", b"us-ascii"]
    assert part1[6] == str(len(b"Part one, plain.")).encode()  # body-fld-octets
    # body-fld-lines: line breaks; the part's one line ends at the boundary's CRLF
    assert part1[7] == b"0"
    assert isinstance(part2[0], list) and part2[2].upper() == b"ALTERNATIVE"
    assert [p.upper() for p in part3[:2]] == [b"MESSAGE", b"RFC822"]
    assert isinstance(part3[7], list) and part3[7][1] == b"inner message"  # its ENVELOPE
    body = parse_fetch(ok(imap.fetch("1", "BODY")))[1]["BODY"]
    assert isinstance(body, list) and body[3].upper() == b"MIXED"
    assert len(body) == 4  # no extension data in BODY
    assert flags(parse_fetch(ok(imap.fetch("1", "FLAGS")))[1]) == set()

    # RFC822.HEADER does not set \Seen; RFC822.TEXT and BODY[] do (§6.4.5).
    f = parse_fetch(ok(imap.fetch("1", "RFC822.HEADER")))[1]
    assert f["RFC822.HEADER"] == HEADER
    assert flags(parse_fetch(ok(imap.fetch("1", "FLAGS")))[1]) == set()
    f = parse_fetch(ok(imap.fetch("1", "RFC822.TEXT")))[1]
    assert f["RFC822.TEXT"] == TEXT
    assert flags(f, {b"\\Seen"}) == {b"\\Seen"}
    assert flags(parse_fetch(ok(imap.fetch("1", "FLAGS")))[1]) == {b"\\Seen"}
    imap.logout()


def test_fetch_body_sets_seen_and_rfc822(server):
    imap = connect(server)
    append(imap, simple("a"))
    append(imap, simple("b"))
    ok(imap.select("INBOX"))
    f = parse_fetch(ok(imap.fetch("1", "(BODY[])")))[1]
    assert f["BODY[]"] == simple("a")
    # §6.4.5: the \Seen flag is set, and reported with the fetch (or right after).
    assert flags(f, {b"\\Seen"}) == {b"\\Seen"}
    f = parse_fetch(ok(imap.fetch("2", "RFC822")))[2]
    assert f["RFC822"] == simple("b")
    got = parse_fetch(ok(imap.fetch("1:2", "FLAGS")))
    assert flags(got[1]) == {b"\\Seen"} and flags(got[2]) == {b"\\Seen"}
    # UID FETCH always includes UID (§6.4.8).
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK"
    got = parse_fetch(data)
    assert got[1]["UID"] == b"1" and got[2]["UID"] == b"2"
    # A sequence number past the end is BAD/NO, a UID range past the end just empty.
    typ, data = imap.uid("FETCH", "99:100", "(FLAGS)")
    assert typ == "OK" and parse_fetch(data) == {}
    imap.logout()


# -- STORE and SEARCH (RFC 3501 §6.4.6, §6.4.4) --------------------------------------


def test_store_forms(server):
    imap = connect(server)
    for i in range(3):
        append(imap, simple(f"s{i}"))
    ok(imap.select("INBOX"))
    got = parse_fetch(ok(imap.store("1:2", "+FLAGS", "(\\Flagged $Label1)")))
    assert flags(got[1]) == {b"\\Flagged", b"$Label1"}
    assert flags(got[2]) == {b"\\Flagged", b"$Label1"}
    got = parse_fetch(ok(imap.store("1", "-FLAGS", "($Label1)")))
    assert flags(got[1]) == {b"\\Flagged"}
    got = parse_fetch(ok(imap.store("2", "FLAGS", "(\\Answered)")))
    assert flags(got[2]) == {b"\\Answered"}
    # .SILENT: no FETCH back to this session (§6.4.6).
    assert parse_fetch(ok(imap.store("3", "+FLAGS.SILENT", "(\\Draft)"))) == {}
    typ, data = imap.uid("STORE", "3", "-FLAGS", "(\\Draft)")
    assert typ == "OK"
    assert flags(parse_fetch(data)[3]) == set()
    got = parse_fetch(ok(imap.fetch("1:3", "FLAGS")))
    assert [flags(got[n]) for n in (1, 2, 3)] == [{b"\\Flagged"}, {b"\\Answered"}, set()]
    # \Recent cannot be stored (§2.3.2): NO or BAD, either way not stored.
    try:
        typ, _ = imap.store("1", "+FLAGS", "(\\Recent)")
        assert typ == "NO"
    except imaplib.IMAP4.error as exc:
        assert "BAD" in str(exc)
    imap.logout()


def search(imap: imaplib.IMAP4, *criteria: str) -> list[int]:
    data = ok(imap.search(None, *criteria))
    return [int(n) for n in data[0].split()]


def test_search_keys(server):
    imap = connect(server)
    utc = dt.UTC
    append(imap, simple("Apples", "red fruit", sender="ann@remote.test",
                        date="Mon, 01 Jan 2024 09:00:00 +0000"),
           flags="(\\Seen)", when=dt.datetime(2024, 1, 1, 12, tzinfo=utc))
    append(imap, simple("Bananas", "yellow fruit " + "x" * 2000, sender="bob@remote.test",
                        date="Wed, 10 Jan 2024 09:00:00 +0000"),
           flags="(\\Flagged)", when=dt.datetime(2024, 1, 10, 12, tzinfo=utc))
    append(imap, MULTIPART, flags="($Work)", when=dt.datetime(2024, 1, 15, 12, tzinfo=utc))
    ok(imap.select("INBOX"))

    assert search(imap, "ALL") == [1, 2, 3]
    assert search(imap, "2:*") == [2, 3]
    assert search(imap, "UID", "1,3") == [1, 3]
    assert search(imap, "SEEN") == [1] and search(imap, "UNSEEN") == [2, 3]
    assert search(imap, "FLAGGED") == [2] and search(imap, "UNFLAGGED") == [1, 3]
    assert search(imap, "KEYWORD", "$Work") == [3] and search(imap, "UNKEYWORD", "$Work") == [1, 2]
    assert search(imap, "DELETED") == [] and search(imap, "UNDELETED") == [1, 2, 3]
    assert search(imap, "ANSWERED") == [] and search(imap, "DRAFT") == []
    assert search(imap, "FROM", "ann@") == [1, 3]  # "Ann Example <ann@...>" in 3 too
    assert search(imap, "FROM", '"bob"') == [2]
    assert search(imap, "TO", "alice") == [1, 2, 3]
    assert search(imap, "CC", "carl") == [3] and search(imap, "BCC", "carl") == []
    assert search(imap, "SUBJECT", "bananas") == [2]  # case-insensitive substring
    assert search(imap, "HEADER", "Message-ID", "parts@remote") == [3]
    assert search(imap, "HEADER", "MIME-Version", '""') == [3]  # "" matches any such field
    assert search(imap, "BODY", "fruit") == [1, 2]
    assert search(imap, "BODY", '"Alternative html"') == [3]
    assert search(imap, "TEXT", "apples") == [1]  # TEXT covers the header too
    assert search(imap, "BEFORE", "10-Jan-2024") == [1]
    assert search(imap, "ON", "10-Jan-2024") == [2]
    assert search(imap, "SINCE", "10-Jan-2024") == [2, 3]
    assert search(imap, "SENTBEFORE", "10-Jan-2024") == [1]
    assert search(imap, "SENTON", "15-Jan-2024") == [3]
    assert search(imap, "SENTSINCE", "2-Jan-2024") == [2, 3]
    assert search(imap, "LARGER", "1500") == [2] and search(imap, "SMALLER", "300") == [1]
    assert search(imap, "NOT", "SEEN") == [2, 3]
    assert search(imap, "OR", "SEEN", "FLAGGED") == [1, 2]
    assert search(imap, "(OR SEEN FLAGGED)", "NOT", "UID", "1") == [2]
    assert search(imap, "NEW") == search(imap, "RECENT", "UNSEEN")
    assert search(imap, "OLD") == search(imap, "NOT", "RECENT")

    typ, data = imap.uid("SEARCH", "FLAGGED")
    assert typ == "OK" and data == [b"2"]
    typ, data = imap.uid("SEARCH", "UID", "2:*", "NOT", "FLAGGED")
    assert typ == "OK" and data == [b"3"]
    typ, data = imap.search("UTF-8", "SUBJECT", "apples")
    assert typ == "OK" and data == [b"1"]
    with pytest.raises(imaplib.IMAP4.error):
        imap.search(None, "NOSUCHKEY")
    no(imap.search("X-UNKNOWN-CHARSET", "ALL"), "BADCHARSET")  # §6.4.4
    imap.logout()


# -- IDLE (RFC 2177) with imapclient, woken by an SMTP delivery ----------------------


def test_idle_woken_by_smtp_delivery(server):
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=30) as client:
        client.login(ALICE, PASSWORD)
        client.select_folder("INBOX")
        client.idle()
        sent = threading.Event()

        def deliver() -> None:
            with smtplib.SMTP("127.0.0.1", server.port("smtp")) as smtp:
                smtp.sendmail("x@remote.test", [ALICE], simple("wake up"))
            sent.set()

        # The delivery runs while this session idles; idle_check returns as soon as
        # the untagged EXISTS arrives (the 30 s cap is a failure bound, not a wait).
        thread = threading.Thread(target=deliver)
        thread.start()
        responses: list = []
        while not any(r[1:2] == (b"EXISTS",) for r in responses):
            got = client.idle_check(timeout=30)
            assert got, "IDLE was not woken by the delivery"
            responses += got
        thread.join(30)
        assert sent.is_set()
        assert (1, b"EXISTS") in responses
        client.idle_done()
        fetched = client.fetch([1], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        assert fetched[1][b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: wake up\r\n\r\n"
