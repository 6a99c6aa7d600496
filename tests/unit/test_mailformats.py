"""mboxrd and Maildir on-disk formats (``admin/mailformats.py``): pure code."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from mailserver.admin import mailformats as fmt


def mbox_of(*messages: tuple[bytes, frozenset[str], int]) -> bytes:
    out = io.BytesIO()
    for data, flags, date in messages:
        fmt.write_mbox_message(out, data, flags, date, "a@example.test")
    return out.getvalue()


def test_mboxrd_quotes_and_unquotes_from_lines() -> None:
    body = b"Subject: x\n\nFrom here\n>From there\n>>From far\nFromage\n"
    raw = mbox_of((body, frozenset(), 0))
    assert b"\n>From here\n>>From there\n>>>From far\nFromage\n" in raw
    (msg,) = fmt.read_mbox(io.BytesIO(raw))
    assert msg.data == body and msg.date == 0


lines = st.lists(st.sampled_from([b"From x", b">From y", b">>From ", b"", b"text", b"\r",
                                  b"From", b" From z"]), max_size=8)


@given(st.lists(lines, min_size=1, max_size=4))
def test_mbox_round_trip(bodies: list[list[bytes]]) -> None:
    messages = [(b"Subject: s\n\n" + b"".join(line + b"\n" for line in body),
                 frozenset(), 86400 * i) for i, body in enumerate(bodies)]
    raw = mbox_of(*messages)
    read = list(fmt.read_mbox(io.BytesIO(raw)))
    assert [(m.data, m.date) for m in read] == [(d, t) for d, _, t in messages]
    assert mbox_of(*[(m.data, m.flags, m.date or 0) for m in read]) == raw


def test_mbox_fed_whole_and_in_pieces_agree() -> None:
    raw = mbox_of((b"A: 1\n\none\n", frozenset({"\\Seen"}), 10),
                  (b"B: 2\n\ntwo\n\n", frozenset({"$Work", "\\Flagged"}), 20))
    read = list(fmt.read_mbox(io.BytesIO(raw)))
    assert [m.flags for m in read] == [frozenset({"\\Seen"}), frozenset({"$Work", "\\Flagged"})]
    assert read[1].data == b"B: 2\n\ntwo\n\n"


def test_status_headers() -> None:
    data = b"Subject: s\nStatus: RO\nX-Status: AFTD\nX-Keywords: $a, b\n\nbody\n"
    stripped, flags = fmt.split_status(data)
    assert stripped == b"Subject: s\n\nbody\n"
    assert flags == {"\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "$a", "b"}
    assert fmt.add_status(stripped, flags) == \
        b"Subject: s\nStatus: RO\nX-Status: AFTD\nX-Keywords: $a b\n\nbody\n"
    assert fmt.split_status(b"Subject: s\n\nStatus: RO\n") == (b"Subject: s\n\nStatus: RO\n",
                                                               frozenset())


def test_from_line_dates() -> None:
    assert fmt.parse_from_line(b"From a@b Thu Jan  1 00:00:10 1970\n") == ("a@b", 10)
    assert fmt.parse_from_line(b"From a@b Thu Jan  1 00:00:10 1970 +0000\n")[1] == 10
    assert fmt.parse_from_line(b"From a@b yesterday\n") == ("a@b", None)
    assert fmt.from_line("", 10) == b"From MAILER-DAEMON Thu Jan  1 00:00:10 1970\n"


def test_not_an_mbox() -> None:
    try:
        list(fmt.read_mbox(io.BytesIO(b"Subject: x\n\nbody\n")))
    except ValueError:
        return
    raise AssertionError("accepted")


def test_maildir_flags() -> None:
    keywords = {"a": "$Label1", "b": "Work"}
    assert fmt.maildir_flags("123.M1.host,S=5:2,FRSab", keywords) == {
        "\\Flagged", "\\Answered", "\\Seen", "$Label1", "Work"}
    assert fmt.maildir_flags("123.M1.host:2,DPT", {}) == {"\\Draft", "$Forwarded", "\\Deleted"}
    assert fmt.maildir_flags("123.M1.host", keywords) == frozenset()
    letters = {"$Label1": "a", "Work": "b"}
    assert fmt.maildir_info({"\\Seen", "Work", "\\Draft", "$Forwarded", "Other"}, letters) \
        == ":2,DPSb"


@given(st.lists(st.text(alphabet="ab.%&é/ -", min_size=1, max_size=6).filter(
    lambda s: "/" not in s), min_size=1, max_size=3))
def test_folder_names_map_both_ways(levels: list[str]) -> None:
    name = "/".join(levels)
    if name.upper() == "INBOX":
        return
    assert fmt.maildir_folder(fmt.maildir_dir(name)) == name
    assert fmt.mbox_folder(fmt.mbox_path(name)) == name
    assert fmt.maildir_dir("INBOX") == "" and fmt.maildir_folder("") == "INBOX"


def test_dovecot_and_uw_bookkeeping_dropped() -> None:
    raw = (b"From MAILER-DAEMON Thu Jan  1 00:00:10 1970\n"
           b"Date: 01 Jan 1970\nSubject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
           b"X-IMAP: 1234 0000000002\n\nThis text is part of the internal format.\n\n"
           b"From a@b Thu Jan  1 00:00:20 1970\n"
           b"Subject: s\nX-IMAPbase: 1 2\nX-UID: 7\nStatus: RO\n\nbody\n\n")
    folder, msg = list(fmt.read_mbox(io.BytesIO(raw)))
    assert folder.data == b""
    assert msg.data == b"Subject: s\n\nbody\n" and msg.flags == {"\\Seen"} and msg.date == 20
