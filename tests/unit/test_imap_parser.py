"""Command grammar: each command line -> the typed Command (RFC 3501 §6, §9).

Table-driven; every case goes through the Receiver fed whole, byte by byte and
with a trailing command (``parse_one`` / ``feed_all_ways``).
"""

from __future__ import annotations

import datetime as dt

import pytest
from support.imap_receiver import Err, feed_all_ways, parse_one

from mailserver.protocol.imap.types import (
    Append,
    Authenticate,
    Command,
    CopyArgs,
    Enable,
    ExpungeArgs,
    Fetch,
    FetchAtt,
    IdArgs,
    InvalidMailboxName,
    ListArgs,
    Login,
    MailboxArg,
    NoArgs,
    Rename,
    Search,
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchModseq,
    SearchNot,
    SearchOr,
    SearchSeq,
    SearchSize,
    SearchText,
    SearchUid,
    Section,
    SequenceSet,
    StatusArgs,
    StoreArgs,
)

S = SequenceSet
F = FetchAtt


def seq(*ranges: tuple[int | None, int | None]) -> SequenceSet:
    return SequenceSet(tuple(ranges))


ONE = seq((1, 1))
CEST = dt.timezone(dt.timedelta(hours=2))
PDT = dt.timezone(-dt.timedelta(hours=7))

# (wire bytes, name, args, uid)
GOOD: list[tuple[bytes, str, object, bool]] = [
    # ---- any state
    (b"a CAPABILITY", "CAPABILITY", NoArgs(), False),
    (b"a noop", "NOOP", NoArgs(), False),
    (b"a LOGOUT", "LOGOUT", NoArgs(), False),
    (b"a STARTTLS", "STARTTLS", NoArgs(), False),
    (b"a ID NIL", "ID", IdArgs(None), False),
    (b"a ID ()", "ID", IdArgs({}), False),
    (
        b'a ID ("name" "sodr" "version" NIL "os" {5+}\r\nLinux)',
        "ID",
        IdArgs({"name": "sodr", "version": None, "os": "Linux"}),
        False,
    ),
    # ---- not authenticated
    (b"a LOGIN alice secret", "LOGIN", Login("alice", "secret"), False),
    (b'a LOGIN "al ice" "p\\"w\\\\"', "LOGIN", Login("al ice", 'p"w\\'), False),
    (b"a LOGIN {5}\r\nalice {3}\r\np w", "LOGIN", Login("alice", "p w"), False),
    (b'a LOGIN alice "p\xc3\xa4ss"', "LOGIN", Login("alice", "päss"), False),
    (b"a LOGIN a]b c", "LOGIN", Login("a]b", "c"), False),
    (b"a AUTHENTICATE plain", "AUTHENTICATE", Authenticate("PLAIN"), False),
    (b"a AUTHENTICATE PLAIN =", "AUTHENTICATE", Authenticate("PLAIN", b""), False),
    (
        b"a AUTHENTICATE PLAIN AGJvYgBwdw==",
        "AUTHENTICATE",
        Authenticate("PLAIN", b"\x00bob\x00pw"),
        False,
    ),
    (b"a AUTHENTICATE XOAUTH2 dXNlcg==", "AUTHENTICATE", Authenticate("XOAUTH2", b"user"), False),
    # ---- authenticated
    (b"a ENABLE CONDSTORE", "ENABLE", Enable(("CONDSTORE",)), False),
    (b"a enable qresync utf8=accept", "ENABLE", Enable(("QRESYNC", "UTF8=ACCEPT")), False),
    (b"a NAMESPACE", "NAMESPACE", NoArgs(), False),
    (b"a SELECT inbox", "SELECT", MailboxArg("INBOX"), False),
    (b'a SELECT "InBoX"', "SELECT", MailboxArg("INBOX"), False),
    (b"a SELECT INBOX.sub", "SELECT", MailboxArg("INBOX.sub"), False),
    (b"a EXAMINE Archive", "EXAMINE", MailboxArg("Archive"), False),
    (b"a SELECT INBOX (CONDSTORE)", "SELECT", MailboxArg("INBOX", ("CONDSTORE",)), False),
    (
        b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        "SELECT",
        MailboxArg("INBOX", ("QRESYNC", (67890007, 20050715194045000, "41,43:211,214:541"))),
        False,
    ),
    (
        b"a SELECT INBOX (qresync (1 2 1:* (1,3 5:6)))",
        "SELECT",
        MailboxArg("INBOX", ("QRESYNC", (1, 2, "1:*", ("1,3", "5:6")))),
        False,
    ),
    (
        b"a SELECT ~peter/mail/&U,BTFw-/&ZeVnLIqe-",
        "SELECT",
        MailboxArg("~peter/mail/台北/日本語"),
        False,
    ),
    (b"a CREATE Drafts", "CREATE", MailboxArg("Drafts"), False),
    (
        b"a CREATE Sent (USE (\\Sent))",
        "CREATE",
        MailboxArg("Sent", ("USE", ("\\Sent",))),
        False,
    ),
    (b'a CREATE "A &- B"', "CREATE", MailboxArg("A & B"), False),
    (b"a DELETE {3+}\r\nfoo", "DELETE", MailboxArg("foo"), False),
    (b"a RENAME old new", "RENAME", Rename("old", "new"), False),
    (b"a RENAME inbox Old-Inbox", "RENAME", Rename("INBOX", "Old-Inbox"), False),
    (b"a SUBSCRIBE x", "SUBSCRIBE", MailboxArg("x"), False),
    (b"a UNSUBSCRIBE x", "UNSUBSCRIBE", MailboxArg("x"), False),
    (b'a LIST "" *', "LIST", ListArgs("", "*", patterns=("*",)), False),
    (b'a LIST "" %/%', "LIST", ListArgs("", "%/%", patterns=("%/%",)), False),
    (b"a LIST ~smith/Mail/ foo.*", "LIST", ListArgs("~smith/Mail/", "foo.*", patterns=("foo.*",)), False),
    (b'a LIST "" inbox', "LIST", ListArgs("", "inbox", patterns=("inbox",)), False),
    (b'a LIST "" "&ZeVnLIqe-*"', "LIST", ListArgs("", "日本語*", patterns=("日本語*",)), False),
    (
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" (INBOX "Sent%") RETURN (CHILDREN STATUS (MESSAGES unseen))',
        "LIST",
        ListArgs(
            "",
            "INBOX",
            ("SUBSCRIBED", "RECURSIVEMATCH"),
            ("CHILDREN", "STATUS"),
            ("INBOX", "Sent%"),
            ("MESSAGES", "UNSEEN"),
        ),
        False,
    ),
    (b'a LIST () "" ""', "LIST", ListArgs("", "", patterns=("",)), False),
    (
        b'a LIST "" * RETURN (SPECIAL-USE)',
        "LIST",
        ListArgs("", "*", return_opts=("SPECIAL-USE",), patterns=("*",)),
        False,
    ),
    (b'a LSUB "" *', "LSUB", ListArgs("", "*", patterns=("*",)), False),
    (
        b"a STATUS INBOX (MESSAGES UIDNEXT uidvalidity UNSEEN RECENT HIGHESTMODSEQ)",
        "STATUS",
        StatusArgs("INBOX", ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "RECENT", "HIGHESTMODSEQ")),
        False,
    ),
    (b"a APPEND INBOX {2}\r\nhi", "APPEND", Append("INBOX", b"hi"), False),
    (
        b"a APPEND Drafts (\\SEEN \\draft $Forwarded) {2+}\r\nhi",
        "APPEND",
        Append("Drafts", b"hi", frozenset({"\\Seen", "\\Draft", "$Forwarded"})),
        False,
    ),
    (b"a APPEND x () {0}\r\n", "APPEND", Append("x", b""), False),
    (
        b'a APPEND x "17-Jul-1996 02:44:25 -0700" {1}\r\n.',
        "APPEND",
        Append("x", b".", date=dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=PDT)),
        False,
    ),
    (
        b'a APPEND x (\\Seen) " 7-Feb-2024 10:00:00 +0200" {1}\r\n.',
        "APPEND",
        Append("x", b".", frozenset({"\\Seen"}), dt.datetime(2024, 2, 7, 10, 0, tzinfo=CEST)),
        False,
    ),
    (
        b'a APPEND x "7-feb-2024 10:00:00 +0200" {1}\r\n.',
        "APPEND",
        Append("x", b".", date=dt.datetime(2024, 2, 7, 10, 0, tzinfo=CEST)),
        False,
    ),
    # MULTIAPPEND (RFC 3502 §6.3.11): several messages, each with its own flags and date.
    (
        b'a APPEND x {1}\r\n1 (\\Seen) {1}\r\n2 "7-feb-2024 10:00:00 +0200" ~{1}\r\n3',
        "APPEND",
        Append("x", b"1", more=(
            Append("x", b"2", frozenset({"\\Seen"})),
            Append("x", b"3", date=dt.datetime(2024, 2, 7, 10, 0, tzinfo=CEST), binary=True))),
        False,
    ),
    # CATENATE (RFC 4469 §5): TEXT literals and URLs, joined by the server.
    (
        b'a APPEND x CATENATE (TEXT {2}\r\nhi URL "/INBOX/;UID=1")',
        "APPEND",
        Append("x", b"", catenate=(("TEXT", b"hi"), ("URL", "/INBOX/;UID=1"))),
        False,
    ),
    # ---- selected
    (b"a CHECK", "CHECK", NoArgs(), False),
    (b"a CLOSE", "CLOSE", NoArgs(), False),
    (b"a UNSELECT", "UNSELECT", NoArgs(), False),
    (b"a IDLE", "IDLE", NoArgs(), False),
    (b"a EXPUNGE", "EXPUNGE", ExpungeArgs(), False),
    (b"a UID EXPUNGE 3:5,9", "EXPUNGE", ExpungeArgs(seq((3, 5), (9, 9))), True),
    (b"a COPY 1:* Trash", "COPY", CopyArgs(seq((1, None)), "Trash"), False),
    (b"a UID COPY 5:1,* inbox", "COPY", CopyArgs(seq((5, 1), (None, None)), "INBOX"), True),
    (b"a MOVE 4294967295 x", "MOVE", CopyArgs(seq((4294967295, 4294967295)), "x"), False),
    (b"a uid move 1 x", "MOVE", CopyArgs(ONE, "x"), True),
    (
        b"a STORE 1 FLAGS (\\Seen)",
        "STORE",
        StoreArgs(ONE, "set", False, frozenset({"\\Seen"})),
        False,
    ),
    (
        b"a STORE 1:2 +FLAGS.SILENT \\deleted $Junk",
        "STORE",
        StoreArgs(seq((1, 2)), "add", True, frozenset({"\\Deleted", "$Junk"})),
        False,
    ),
    (b"a STORE 1 -flags ()", "STORE", StoreArgs(ONE, "remove", False, frozenset()), False),
    (
        b"a UID STORE 7 (UNCHANGEDSINCE 12345) +FLAGS (\\Answered)",
        "STORE",
        StoreArgs(seq((7, 7)), "add", False, frozenset({"\\Answered"}), 12345),
        True,
    ),
    (
        b"a STORE * (unchangedsince 0) FLAGS.SILENT (\\Flagged)",
        "STORE",
        StoreArgs(seq((None, None)), "set", True, frozenset({"\\Flagged"}), 0),
        False,
    ),
    # ---- FETCH
    (b"a FETCH 1 FLAGS", "FETCH", Fetch(ONE, (F("FLAGS"),)), False),
    (
        b"a FETCH 1 FAST",
        "FETCH",
        Fetch(ONE, (F("FLAGS"), F("INTERNALDATE"), F("RFC822.SIZE"))),
        False,
    ),
    (
        b"a FETCH 1 all",
        "FETCH",
        Fetch(ONE, (F("FLAGS"), F("INTERNALDATE"), F("RFC822.SIZE"), F("ENVELOPE"))),
        False,
    ),
    (
        b"a FETCH 1 FULL",
        "FETCH",
        Fetch(ONE, (F("FLAGS"), F("INTERNALDATE"), F("RFC822.SIZE"), F("ENVELOPE"), F("BODY"))),
        False,
    ),
    (
        b"a FETCH 2:4 (UID RFC822.SIZE RFC822 RFC822.HEADER RFC822.TEXT ENVELOPE BODYSTRUCTURE BODY INTERNALDATE MODSEQ)",
        "FETCH",
        Fetch(
            seq((2, 4)),
            tuple(
                F(n)
                for n in (
                    "UID RFC822.SIZE RFC822 RFC822.HEADER RFC822.TEXT ENVELOPE "
                    "BODYSTRUCTURE BODY INTERNALDATE MODSEQ"
                ).split()
            ),
        ),
        False,
    ),
    (b"a FETCH 1 BODY[]", "FETCH", Fetch(ONE, (F("BODY", Section()),)), False),
    (
        b"a FETCH 1 body.peek[]<0.1024>",
        "FETCH",
        Fetch(ONE, (F("BODY", Section(), True, (0, 1024)),)),
        False,
    ),
    (
        b"a FETCH 1 (BODY[HEADER] BODY[TEXT] BODY[1] BODY[1.2.3] BODY[2.MIME] BODY[3.TEXT] BODY[3.HEADER])",
        "FETCH",
        Fetch(
            ONE,
            (
                F("BODY", Section((), "HEADER")),
                F("BODY", Section((), "TEXT")),
                F("BODY", Section((1,))),
                F("BODY", Section((1, 2, 3))),
                F("BODY", Section((2,), "MIME")),
                F("BODY", Section((3,), "TEXT")),
                F("BODY", Section((3,), "HEADER")),
            ),
        ),
        False,
    ),
    (
        b'a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From "To" {2}\r\ncc)] BODY[1.HEADER.FIELDS.NOT (X-Spam)]<5.10>)',
        "FETCH",
        Fetch(
            ONE,
            (
                F("BODY", Section((), "HEADER.FIELDS", ("FROM", "TO", "CC")), True),
                F("BODY", Section((1,), "HEADER.FIELDS.NOT", ("X-SPAM",)), False, (5, 10)),
            ),
        ),
        False,
    ),
    (
        b"a FETCH 1 (BINARY[] BINARY.PEEK[1.2]<0.10> BINARY.SIZE[3])",
        "FETCH",
        Fetch(
            ONE,
            (
                F("BINARY", Section()),
                F("BINARY", Section((1, 2)), True, (0, 10)),
                F("BINARY.SIZE", Section((3,))),
            ),
        ),
        False,
    ),
    (
        b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
        "FETCH",
        Fetch(seq((1, None)), (F("FLAGS"),), 12345),
        False,
    ),
    (
        b"a UID FETCH 1:* FLAGS (CHANGEDSINCE 9 VANISHED)",
        "FETCH",
        Fetch(seq((1, None)), (F("FLAGS"),), 9, True),
        True,
    ),
    # ---- SEARCH
    (b"a SEARCH ALL", "SEARCH", Search(SearchAll()), False),
    (b"a UID SEARCH 1:*", "SEARCH", Search(SearchSeq(seq((1, None)))), True),
    (
        b"a SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
        "SEARCH",
        Search(
            SearchAnd(
                (
                    SearchFlag("\\Flagged"),
                    SearchDate("SINCE", dt.date(1994, 2, 1)),
                    SearchNot(SearchHeader("FROM", "Smith")),
                )
            )
        ),
        False,
    ),
    (
        b"a SEARCH OR (SEEN UNSEEN) NEW",
        "SEARCH",
        Search(
            SearchOr(
                SearchAnd((SearchFlag("\\Seen"), SearchFlag("\\Seen", False))),
                SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False))),
            )
        ),
        False,
    ),
    (
        b"a SEARCH ANSWERED UNANSWERED DELETED UNDELETED DRAFT UNDRAFT RECENT OLD",
        "SEARCH",
        Search(
            SearchAnd(
                (
                    SearchFlag("\\Answered"),
                    SearchFlag("\\Answered", False),
                    SearchFlag("\\Deleted"),
                    SearchFlag("\\Deleted", False),
                    SearchFlag("\\Draft"),
                    SearchFlag("\\Draft", False),
                    SearchFlag("\\Recent"),
                    SearchFlag("\\Recent", False),
                )
            )
        ),
        False,
    ),
    (
        b"a SEARCH KEYWORD $Junk UNKEYWORD foo",
        "SEARCH",
        Search(SearchAnd((SearchFlag("$Junk"), SearchFlag("foo", False)))),
        False,
    ),
    (
        b'a SEARCH TO a CC "" BCC b SUBJECT {3}\r\nx y HEADER message-id <x@y> BODY b TEXT t',
        "SEARCH",
        Search(
            SearchAnd(
                (
                    SearchHeader("TO", "a"),
                    SearchHeader("CC", ""),
                    SearchHeader("BCC", "b"),
                    SearchHeader("SUBJECT", "x y"),
                    SearchHeader("MESSAGE-ID", "<x@y>"),
                    SearchText("b"),
                    SearchText("t", header=True),
                )
            )
        ),
        False,
    ),
    (
        b'a SEARCH BEFORE "1-Jan-2000" ON 31-dec-1999 SENTBEFORE 1-Jan-2000 SENTON 02-Mar-2001 SENTSINCE 3-Apr-2002',
        "SEARCH",
        Search(
            SearchAnd(
                (
                    SearchDate("BEFORE", dt.date(2000, 1, 1)),
                    SearchDate("ON", dt.date(1999, 12, 31)),
                    SearchDate("BEFORE", dt.date(2000, 1, 1), True),
                    SearchDate("ON", dt.date(2001, 3, 2), True),
                    SearchDate("SINCE", dt.date(2002, 4, 3), True),
                )
            )
        ),
        False,
    ),
    (
        b"a SEARCH LARGER 100 SMALLER 0 UID 2,4:* 1,3",
        "SEARCH",
        Search(
            SearchAnd(
                (
                    SearchSize(100, True),
                    SearchSize(0, False),
                    SearchUid(seq((2, 2), (4, None))),
                    SearchSeq(seq((1, 1), (3, 3))),
                )
            )
        ),
        False,
    ),
    (b"a SEARCH MODSEQ 620162338", "SEARCH", Search(SearchModseq(620162338)), False),
    (
        b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338',
        "SEARCH",
        Search(SearchModseq(620162338)),
        False,
    ),
    (
        b"a SEARCH CHARSET UTF-8 SUBJECT {4}\r\n\xc3\xa4\xc3\xb6",
        "SEARCH",
        Search(SearchHeader("SUBJECT", "äö"), "UTF-8"),
        False,
    ),
    (
        b"a SEARCH CHARSET iso-8859-1 BODY {1}\r\n\xe4",
        "SEARCH",
        Search(SearchText("ä"), "ISO-8859-1"),
        False,
    ),
    (
        b"a SEARCH CHARSET X-NO-SUCH TEXT {1}\r\n\xe4",
        "SEARCH",
        Search(SearchText("ä", header=True), "X-NO-SUCH", bad_charset=True),
        False,
    ),
    (
        b"a SEARCH CHARSET BASE64 ALL",
        "SEARCH",
        Search(SearchAll(), "BASE64", bad_charset=True),
        False,
    ),
    (b"a SEARCH RETURN () ALL", "SEARCH", Search(SearchAll(), None, ()), False),
    (
        b"a UID SEARCH RETURN (MIN max COUNT ALL SAVE) CHARSET US-ASCII UNSEEN",
        "SEARCH",
        Search(SearchFlag("\\Seen", False), "US-ASCII", ("MIN", "MAX", "COUNT", "ALL", "SAVE")),
        True,
    ),
    (
        b"a SEARCH NOT NOT OR OR 1 2 3 (4 5)",
        "SEARCH",
        Search(
            SearchAnd(
                (
                    SearchNot(
                        SearchNot(
                            SearchOr(
                                SearchOr(SearchSeq(ONE), SearchSeq(seq((2, 2)))),
                                SearchSeq(seq((3, 3))),
                            )
                        )
                    ),
                    SearchAnd((SearchSeq(seq((4, 4))), SearchSeq(seq((5, 5))))),
                )
            )
        ),
        False,
    ),
]


@pytest.mark.parametrize(
    ("wire", "name", "args", "uid"), GOOD, ids=[g[0][:60].decode("latin-1") for g in GOOD]
)
def test_parse(wire: bytes, name: str, args: object, uid: bool) -> None:
    assert parse_one(wire + b"\r\n") == Command("a", name, args, uid)


BAD = [
    b"a",
    b"a FROB",
    b"a UID NOOP",
    b"a UID",
    b"a NOOP x",
    b"a LOGIN alice",
    b"a LOGIN alice ",
    b"a LOGIN (alice) x",
    b'a LOGIN "alice x',
    b'a LOGIN "al\\ice" x',
    b'a LOGIN "\xff" x',
    b"a AUTHENTICATE",
    b"a AUTHENTICATE PLAIN AGJvYg=",
    b"a AUTHENTICATE PLAIN ****",
    b"a ENABLE",
    b"a ID",
    b'a ID ("a")',
    b"a ID (a b)",
    b"a SELECT",
    b"a SELECT a (",
    b"a SELECT a ()",
    b'a SELECT "\xc3\xa4"',
    b"a RENAME a",
    b"a LIST",
    b'a LIST ""',
    b'a LIST "" * RETURN (BOGUS)',
    b'a LIST (BOGUS) "" *',
    b'a LIST "" ()',
    b"a STATUS x ()",
    b"a STATUS x (BOGUS)",
    b"a STATUS x MESSAGES",
    b"a APPEND x",
    b"a APPEND x hello",
    b"a APPEND x (\\Recent) {1+}\r\n.",
    b"a APPEND x (\\Bogus) {1+}\r\n.",
    b'a APPEND x "30-Feb-2024 10:00:00 +0000" {1+}\r\n.',
    b'a APPEND x "1-Foo-2024 10:00:00 +0000" {1+}\r\n.',
    b'a APPEND x "1-Jan-2024 10:00:00 +0060" {1+}\r\n.',
    b'a APPEND x "1-Jan-2024 25:00:00 +0000" {1+}\r\n.',
    b'a APPEND x "1-Jan-2024 10:00:00" {1+}\r\n.',
    b"a APPEND x {1+}\r\n. extra",
    b"a LOGIN ~{1+}\r\n. x",
    b"a FETCH",
    b"a FETCH 1",
    b"a FETCH 0 FLAGS",
    b"a FETCH 01 FLAGS",
    b"a FETCH 4294967296 FLAGS",
    b"a FETCH 1: FLAGS",
    b"a FETCH 1,,2 FLAGS",
    b"a FETCH 1,$ FLAGS",  # SEARCHRES "$" only as the whole set, as Dovecot does
    b"a FETCH 1 BOGUS",
    b"a FETCH 1 (FLAGS",
    b"a FETCH 1 ()",
    b"a FETCH 1 (ALL)",
    b"a FETCH 1 BODY[",
    b"a FETCH 1 BODY[0]",
    b"a FETCH 1 BODY[MIME]",
    b"a FETCH 1 BODY[1.BOGUS]",
    b"a FETCH 1 BODY[HEADER.FIELDS]",
    b"a FETCH 1 BODY[HEADER.FIELDS ()]",
    b"a FETCH 1 BODY[HEADER.FIELDS (a:b)]",
    b"a FETCH 1 BODY[]<0>",
    b"a FETCH 1 BODY[]<0.0>",
    b"a FETCH 1 FLAGS[]",
    b"a FETCH 1 BINARY[TEXT]",
    b"a FETCH 1 BINARY.SIZE[]<0.1>",
    b"a FETCH 1 FLAGS (CHANGEDSINCE 0)",
    b"a FETCH 1 FLAGS (CHANGEDSINCE 9 VANISHED)",
    b"a UID FETCH 1 FLAGS (VANISHED)",
    b"a FETCH 1 FLAGS (BOGUS)",
    b"a STORE 1 FLAGS",
    b"a STORE 1 FLAGS (\\Recent)",
    b"a STORE 1 FLAGS (\\Bogus)",
    b"a STORE 1 XFLAGS (\\Seen)",
    b"a STORE 1 *FLAGS (\\Seen)",
    b"a STORE 1 (UNCHANGEDSINCE) FLAGS ()",
    b"a COPY 1",
    b"a COPY x y",
    b"a UID EXPUNGE",
    b"a EXPUNGE 1",
    b"a SEARCH",
    b"a SEARCH BOGUS",
    b"a SEARCH FROM",
    b"a SEARCH OR 1",
    b"a SEARCH NOT",
    b"a SEARCH (",
    b"a SEARCH ()",
    b"a SEARCH SINCE 1-Feb-94",
    b"a SEARCH SINCE 32-Jan-1994",
    b"a SEARCH KEYWORD \\Seen",
    b"a SEARCH LARGER x",
    b"a SEARCH LARGER 4294967296",
    b"a SEARCH RETURN (BOGUS) ALL",
    b"a SEARCH CHARSET",
    b"a SEARCH CHARSET UTF-8 SUBJECT {1}\r\n\xff",
    b"a SEARCH " + b"(" * 100 + b"ALL" + b")" * 100,
    b"a SEARCH " + b"NOT " * 100 + b"ALL",
    b"a SEARCH MODSEQ \"/bogus\" all 1",
]


@pytest.mark.parametrize("name", [b"&AGE-", b"&U,BTFw-&ZeVnLIqe-", b"&Jjo",
                                  b"!#$&'+,-.0123456789:;<=>?@^_`|[}"])
def test_name_not_modified_utf7_parses_as_invalid_name(name: bytes) -> None:
    """A valid astring that is not modified UTF-7 (RFC 3501 §5.1.3) is no
    syntax error: the command gets it as ``InvalidMailboxName`` (then NO)."""
    cmd = parse_one(b"a SELECT " + name + b"\r\n")
    assert isinstance(cmd, Command) and isinstance(cmd.args, MailboxArg)
    assert isinstance(cmd.args.mailbox, InvalidMailboxName)
    assert cmd.args.mailbox == name.decode()
    listed = parse_one(b'a LIST "" ' + name + b"%*\r\n")
    assert isinstance(listed, Command) and isinstance(listed.args, ListArgs)
    assert isinstance(listed.args.pattern, InvalidMailboxName)


@pytest.mark.parametrize("wire", BAD, ids=[b[:60].decode("latin-1") for b in BAD])
def test_bad_syntax_is_tagged(wire: bytes) -> None:
    events = [e for e in feed_all_ways(wire + b"\r\n") if isinstance(e, Err)]
    assert events == [Err("a")]


def test_response_name_round_trips_sections() -> None:
    cmd = parse_one(
        b"a FETCH 1 (BODY.PEEK[1.2.HEADER.FIELDS (From To)]<10.20> BODY[] BINARY[3] RFC822)\r\n"
    )
    assert [a.response_name() for a in cmd.args.atts] == [
        b"BODY[1.2.HEADER.FIELDS (FROM TO)]<10>",
        b"BODY[]",
        b"BINARY[3]",
        b"RFC822",
    ]


# ------------------------------------------------ CONTEXT (RFC 5267 §4)


def test_context_return_options_and_cancelupdate() -> None:
    from mailserver.protocol.imap.types import CancelUpdate, SortArgs

    cmd = parse_one(b"B01 UID SEARCH RETURN (UPDATE CONTEXT COUNT) UNSEEN\r\n")
    assert isinstance(cmd.args, Search) and cmd.args.return_opts == ("UPDATE", "CONTEXT", "COUNT")
    cmd = parse_one(b"S1 SORT RETURN (UPDATE PARTIAL 1:10) (SUBJECT) UTF-8 ALL\r\n")
    assert isinstance(cmd.args, SortArgs) and cmd.args.return_opts == ("UPDATE", "PARTIAL")
    cmd = parse_one(b'x CANCELUPDATE "B01" "S1"\r\n')
    assert cmd.name == "CANCELUPDATE" and cmd.args == CancelUpdate(("B01", "S1"))
    for bad in (b"x CANCELUPDATE\r\n", b"x CANCELUPDATE B01\r\n", b'x CANCELUPDATE "B01" \r\n',
                b"x UID CANCELUPDATE \"a\"\r\n"):
        assert feed_all_ways(bad) == [Err("x")], bad
