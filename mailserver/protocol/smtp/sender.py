"""The author addresses of a submitted message (pure: no stdlib ``email``).

RFC 6409 §6.1 lets an MSA check that the sender is who it says; we require
every mailbox of every ``From:`` field (RFC 5322 §3.6.2) to belong to the
authenticated user, as the MAIL FROM check does for the envelope.  Only the
header block is read; the bytes are never changed.

The field is read by the small parser below, not by ``email.headerregistry``
or ``email.utils.getaddresses``: their answers for malformed and ambiguous
fields change between patch releases (3.11.2 and 3.11.7 disagree on
``a@ours.example <b@theirs.example>``), and an ownership decision must not
depend on the interpreter.  The grammar is RFC 5322 §3.4 with the obsolete
forms of §4.4 that real mail still carries (``John Q. Public``, routes,
empty list elements, CFWS inside addresses); anything else makes the field
unparseable, and an unparseable field is never owned.

    address-list  = (address *("," address)) / obs-addr-list
    obs-addr-list = *([CFWS] ",") address *("," [address / CFWS])
    address       = mailbox / group
    group         = display-name ":" [group-list] ";" [CFWS]
    mailbox       = name-addr / addr-spec
    name-addr     = [display-name] angle-addr
    angle-addr    = [CFWS] "<" [obs-route] addr-spec ">" [CFWS]
    obs-route     = obs-domain-list ":"
    display-name  = phrase = word *(word / "." / CFWS)          ; with obs-phrase
    addr-spec     = local-part "@" domain
    local-part    = word *("." word)      ; dot-atom, quoted-string, obs-local-part
    domain        = atom *("." atom) / domain-literal           ; with obs-domain
    word          = atom / quoted-string

CFWS (whitespace and nestable comments) may stand between any two tokens and
separates nothing the grammar needs once the field is split into tokens, so
the parser works on a token list without it.
"""

from __future__ import annotations

import re

#: The end of the header block: the first empty line (CRLF, or a bare LF from
#: a sloppy client; both end the header section for any reader downstream).
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FROM_FIELD = re.compile(rb"^From[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)

#: RFC 5322 §3.2.3 atext (ASCII; any non-ASCII character is atext too, RFC 6532
#: §3.2, and is tested for apart).
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   "!#$%&'*+-/=?^_`{|}~")
_SPECIALS = frozenset('<>@,;:.')
#: dot-atom-text (§3.2.3, with RFC 6532): a local part written bare when it matches.
_DOT_ATOM = re.compile(r"[^\x00-\x20\x7f()<>\[\]:;@\\,.\"]+(?:\.[^\x00-\x20\x7f()<>\[\]:;@\\,.\"]+)*")
#: Deepest comment nesting read; deeper is refused (no real header needs it).
MAX_COMMENT_DEPTH = 32
#: Where the lenient reader of an unparseable field cuts it into candidates.
_CANDIDATE_SEP = re.compile(r"[\s<>(),;:\"\[\]]+")

# Token kinds: an atom, a quoted-string's content, a domain-literal, a special.
_ATOM, _QUOTED, _LITERAL, _SPECIAL = range(4)


class _Unparseable(Exception):
    """The field is not an RFC 5322 address list."""


def _allowed(ch: str) -> bool:
    """Printable ASCII, WSP, or non-ASCII (RFC 6532); never a control character."""
    return ch in " \t" or " " < ch < "\x7f" or ch > "\x7f"


def _tokens(value: str) -> list[tuple[int, str]]:
    """``value`` as (kind, text) tokens, CFWS dropped; raises _Unparseable."""
    out: list[tuple[int, str]] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if not _allowed(ch):
            raise _Unparseable
        if ch in " \t":
            i += 1
        elif ch == "(":  # comment (RFC 5322 §3.2.2): nests, quoted-pairs inside
            depth = 0
            while True:
                if i >= n:
                    raise _Unparseable
                c = value[i]
                if not _allowed(c):
                    raise _Unparseable
                if c == "\\":
                    i += 1
                    if i >= n or not _allowed(value[i]):
                        raise _Unparseable
                elif c == "(":
                    depth += 1
                    if depth > MAX_COMMENT_DEPTH:
                        raise _Unparseable
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        elif ch == '"':  # quoted-string (§3.2.4): the content, pairs unescaped
            i += 1
            text: list[str] = []
            while True:
                if i >= n:
                    raise _Unparseable
                c = value[i]
                if not _allowed(c):
                    raise _Unparseable
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    i += 1
                    if i >= n or not _allowed(value[i]):
                        raise _Unparseable
                    c = value[i]
                text.append(c)
                i += 1
            out.append((_QUOTED, "".join(text)))
        elif ch == "[":  # domain-literal (§3.4.1): dtext and FWS, no pairs
            end = value.find("]", i)
            if end < 0:
                raise _Unparseable
            inner = value[i + 1:end]
            if any(c in "[\\" or not _allowed(c) for c in inner):
                raise _Unparseable
            out.append((_LITERAL, "[" + "".join(inner.split()) + "]"))
            i = end + 1
        elif ch in _SPECIALS:
            out.append((_SPECIAL, ch))
            i += 1
        elif ch in _ATEXT or ch > "\x7f":
            start = i
            while i < n and (value[i] in _ATEXT or value[i] > "\x7f"):
                i += 1
            out.append((_ATOM, value[start:i]))
        else:  # ")", "]", "\\" out of place
            raise _Unparseable
    return out


class _Parser:
    """Recursive descent over the tokens of one field: the addr-specs in order."""

    __slots__ = ("toks", "pos")

    def __init__(self, toks: list[tuple[int, str]]) -> None:
        self.toks = toks
        self.pos = 0

    def _peek(self, offset: int = 0) -> tuple[int, str] | None:
        i = self.pos + offset
        return self.toks[i] if i < len(self.toks) else None

    def _special(self, ch: str) -> bool:
        """Consume the special ``ch`` if it is next."""
        tok = self._peek()
        if tok == (_SPECIAL, ch):
            self.pos += 1
            return True
        return False

    def _expect(self, ch: str) -> None:
        if not self._special(ch):
            raise _Unparseable

    def address_list(self) -> list[str]:
        out: list[str] = []
        while True:
            while self._special(","):  # obs-addr-list: empty elements
                pass
            if self._peek() is None:
                return out
            out += self._address()
            if self._peek() is not None:
                self._expect(",")

    def _address(self) -> list[str]:
        """One mailbox, or a group's mailboxes."""
        if self._peek() == (_SPECIAL, "<"):
            return [self._angle_addr()]
        start = self.pos
        words = self._phrase()
        tok = self._peek()
        if tok == (_SPECIAL, ":"):  # group: display-name ":" [group-list] ";"
            if not words:
                raise _Unparseable
            self.pos += 1
            members: list[str] = []
            while True:
                while self._special(","):
                    pass
                if self._special(";"):
                    return members
                if self._peek() is None:
                    raise _Unparseable
                members.append(self._mailbox())
                if not self._special(","):
                    self._expect(";")
                    return members
        self.pos = start
        return [self._mailbox()]

    def _mailbox(self) -> str:
        if self._peek() == (_SPECIAL, "<"):
            return self._angle_addr()
        start = self.pos
        words = self._phrase()
        if self._peek() == (_SPECIAL, "<"):
            if not words:
                raise _Unparseable
            return self._angle_addr()
        self.pos = start
        return self._addr_spec()

    def _phrase(self) -> int:
        """Skip a phrase (obs-phrase: words and dots, a word first); its word count."""
        count = 0
        while (tok := self._peek()) is not None:
            if tok[0] in (_ATOM, _QUOTED):
                count += 1
            elif not (tok == (_SPECIAL, ".") and count):
                break
            self.pos += 1
        return count

    def _angle_addr(self) -> str:
        self._expect("<")
        if self._peek() in ((_SPECIAL, "@"), (_SPECIAL, ",")):  # obs-route, dropped
            while self._special(","):
                pass
            while self._special("@"):
                self._domain()
                if not self._special(","):
                    break
                while self._special(","):
                    pass
            self._expect(":")
        addr = self._addr_spec()
        self._expect(">")
        return addr

    def _addr_spec(self) -> str:
        parts = [self._word()]
        while self._special("."):
            parts.append(self._word())
        self._expect("@")
        local = ".".join(parts)
        # The canonical form (RFC 5321 §4.1.2): unquoted when a dot-atom will
        # do, so "alice" and alice are one mailbox, as every reader sees them.
        if not _DOT_ATOM.fullmatch(local):
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self._domain()}"

    def _word(self) -> str:
        tok = self._peek()
        if tok is None or tok[0] not in (_ATOM, _QUOTED):
            raise _Unparseable
        self.pos += 1
        return tok[1]

    def _domain(self) -> str:
        tok = self._peek()
        if tok is not None and tok[0] == _LITERAL:
            self.pos += 1
            return tok[1]
        labels = [self._atom()]
        while self._special("."):
            labels.append(self._atom())
        return ".".join(labels)

    def _atom(self) -> str:
        tok = self._peek()
        if tok is None or tok[0] != _ATOM:
            raise _Unparseable
        self.pos += 1
        return tok[1]


def parse_address_list(value: str) -> list[str] | None:
    """The addr-specs of an RFC 5322 §3.4 address list (an unfolded field
    value), in order, groups flattened and routes dropped; local parts in
    canonical form (unquoted when a dot-atom, RFC 5321 §4.1.2).  None when
    ``value`` is not an address list: a syntax error, a control character, a
    comment nested deeper than MAX_COMMENT_DEPTH.  Never raises."""
    try:
        return _Parser(_tokens(value)).address_list()
    except _Unparseable:
        return None


def from_addresses(message: bytes) -> list[str]:
    """Every addr-spec in every ``From:`` field of ``message``, in order.

    Unfolds continuation lines (RFC 5322 §2.2.3); the field must be UTF-8
    (RFC 6532).  Returns [] when there is no From field.  An entry is "" when
    the caller must refuse: a field that does not parse, or that names no
    mailbox (an empty group), gives "" followed by what a lenient reader could
    take for its addresses (each comma-separated part's ``x@y`` runs, or ""
    for a part without one), so an ambiguous field such as
    ``a@ours.example <b@theirs.example>`` gives ``["", "a@ours.example",
    "b@theirs.example"]`` and is never owned.  The same answer on every
    Python: no stdlib ``email`` parser is involved.
    """
    m = _HEADER_END.search(message)
    head = message[: m.start() + 1] if m else message
    if head[:1] in (b"\r", b"\n"):  # an empty first line: no header section at all
        return []
    out: list[str] = []
    for field in _FROM_FIELD.finditer(head):
        raw = re.sub(rb"[\r\n]", b"", field.group(1))
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value, addrs = raw.decode("utf-8", "replace"), None
        else:
            addrs = parse_address_list(value)
        if addrs:
            out += addrs
            continue
        out.append("")
        out += _candidates(value)
    return out


def _candidates(value: str) -> list[str]:
    """What a lenient reader could take for the addresses of an unparseable
    field: per comma-separated part, its ``local@domain`` runs, or "" for a
    part with none.  Linear in ``len(value)`` (no backtracking regex)."""
    out: list[str] = []
    for part in value.split(","):
        found = []
        for run in _CANDIDATE_SEP.split(part):
            local, at, domain = run.rpartition("@")
            if at and local and domain:
                found.append(run)
        out += found if found else ([""] if part.strip() else [])
    return out
