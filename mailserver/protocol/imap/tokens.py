"""Lexical level of IMAP commands (RFC 3501 §4, §9): a cursor over one framed
command that reads atoms, numbers, strings, literals and lists.

A framed command is what ``Receiver`` collected: ``parts`` are its lines
(line ends removed) and ``literals[i]`` is the literal announced at the end
of ``parts[i]``.  The cursor walks the text; when it stands on a literal
announcement that ends a part, reading a string yields the literal's octets
and moves to the next part.

Every failure raises ``ProtocolSyntaxError`` (the receiver adds the tag).
"""

from __future__ import annotations

import re

from mailserver.errors import ProtocolSyntaxError
from mailserver.protocol.imap import utf7
from mailserver.protocol.imap.types import InvalidMailboxName

# ATOM-CHAR = <any CHAR except atom-specials>
# atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
# list-wildcards = "%" / "*";  quoted-specials = DQUOTE / "\";  resp-specials = "]"
ATOM_CHARS = frozenset(c for c in range(0x21, 0x7F) if c not in b'(){%*"\\]')
# ASTRING-CHAR = ATOM-CHAR / resp-specials
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
# list-char = ATOM-CHAR / list-wildcards / resp-specials
LIST_CHARS = ASTRING_CHARS | {ord("%"), ord("*")}

# An atom-like parameter value: ASTRING-CHARs plus "*" (sequence sets) and
# "\\" (flags such as CREATE's (USE (\\Sent)), RFC 6154 §5.2).
_GENERIC_CHARS = ASTRING_CHARS | {ord("*"), ord("\\")}

_LITERAL_RE = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\Z")

MAX_NUMBER = 2**32 - 1  # number = 1*DIGIT ; Unsigned 32-bit integer (RFC 3501 §9)
MAX_NUMBER64 = 2**63 - 1  # mod-sequence-value (RFC 7162 §7)


#: Default bound on nesting (``limits.imap_max_nesting``): parsers recurse
#: once per level, so this also bounds recursion on hostile input.
DEFAULT_MAX_DEPTH = 64


class Cursor:
    """Reads the tokens of one framed command, left to right."""

    __slots__ = ("parts", "literals", "i", "pos", "utf8", "max_depth")

    def __init__(self, parts: list[bytes], literals: list[bytes], *, utf8: bool = False,
                 max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        if len(literals) != len(parts) - 1:
            raise ValueError("a framed command has one literal fewer than parts")
        self.parts = parts
        self.literals = literals
        self.i = 0
        self.pos = 0
        self.utf8 = utf8
        #: Deepest nesting of parenthesised lists (and of search keys: NOT, OR)
        #: a parser may recurse into; deeper input is a syntax error.
        self.max_depth = max_depth

    # ------------------------------------------------------------- primitives

    @staticmethod
    def error(text: str) -> ProtocolSyntaxError:
        """The syntax error (IMAP BAD) to raise, with ``text`` for the client."""
        return ProtocolSyntaxError(text)

    @property
    def _text(self) -> bytes:
        return self.parts[self.i]

    def peek(self) -> int | None:
        """The next octet of command text, or None at the end of the current part."""
        text = self.parts[self.i]
        return text[self.pos] if self.pos < len(text) else None

    def at_end(self) -> bool:
        """True at the end of the command (last part, nothing left of it)."""
        return self.i == len(self.parts) - 1 and self.pos == len(self.parts[self.i])

    def end(self) -> None:
        """Require the end of the command."""
        if not self.at_end():
            raise self.error("Unexpected extra arguments")

    def at_literal(self) -> bool:
        """True when a literal announcement ends the current part here."""
        return self.i < len(self.parts) - 1 and _LITERAL_RE.fullmatch(
            self.parts[self.i], self.pos
        ) is not None

    def take(self, s: bytes) -> bool:
        """Consume ``s`` (ASCII, compared case-insensitively) if it comes next."""
        text = self.parts[self.i]
        end = self.pos + len(s)
        if text[self.pos : end].upper() == s.upper():
            self.pos = end
            return True
        return False

    def expect(self, s: bytes, what: str | None = None) -> None:
        """Consume ``s`` (any case); ProtocolSyntaxError naming ``what`` if it is not next."""
        if not self.take(s):
            raise self.error(f"Expected {what or s.decode()}")

    def sp(self) -> None:
        """SP: exactly one space."""
        if self.peek() != 0x20:
            raise self.error("Expected space")
        self.pos += 1

    def take_sp(self) -> bool:
        """Consume one SP if it comes next; False (nothing consumed) otherwise."""
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def _run(self, chars: frozenset[int]) -> bytes:
        text = self.parts[self.i]
        start = self.pos
        n = len(text)
        p = start
        while p < n and text[p] in chars:
            p += 1
        self.pos = p
        return text[start:p]

    # ------------------------------------------------------------------ atoms

    def atom(self, what: str = "atom") -> str:
        """atom = 1*ATOM-CHAR (returned as written)."""
        raw = self._run(ATOM_CHARS)
        if not raw:
            raise self.error(f"Expected {what}")
        return raw.decode("ascii")

    def keyword(self) -> str:
        """An atom, upper-cased: command names, option names."""
        return self.atom().upper()

    def word(self, chars: frozenset[int], what: str) -> bytes:
        """One or more octets of ``chars`` (returned as bytes); ProtocolSyntaxError naming
        ``what`` when there is none.
        """
        raw = self._run(chars)
        if not raw:
            raise self.error(f"Expected {what}")
        return raw

    def number(self, limit: int = MAX_NUMBER, what: str = "number") -> int:
        """number = 1*DIGIT, at most ``limit`` (RFC 3501 §9: 32 bits)."""
        text = self.parts[self.i]
        start = self.pos
        p = start
        while p < len(text) and 0x30 <= text[p] <= 0x39:
            p += 1
        if p == start or p - start > 20:
            raise self.error(f"Expected {what}")
        value = int(text[start:p])
        if value > limit:
            raise self.error(f"{what.capitalize()} out of range")
        self.pos = p
        return value

    def nz_number(self, limit: int = MAX_NUMBER, what: str = "number") -> int:
        """nz-number = digit-nz *DIGIT"""
        if self.peek() == 0x30:
            raise self.error(f"Expected non-zero {what}")
        value = self.number(limit, what)
        if value == 0:
            raise self.error(f"Expected non-zero {what}")
        return value

    # ---------------------------------------------------------------- strings

    def quoted(self) -> bytes:
        """quoted = DQUOTE *QUOTED-CHAR DQUOTE
        QUOTED-CHAR = <any TEXT-CHAR except quoted-specials> / "\\" quoted-specials

        8-bit octets are accepted (RFC 9051 / RFC 6855 allow UTF-8 here);
        the caller decodes."""
        text = self.parts[self.i]
        if self.pos >= len(text) or text[self.pos] != 0x22:
            raise self.error("Expected quoted string")
        out = bytearray()
        p = self.pos + 1
        n = len(text)
        while p < n:
            c = text[p]
            if c == 0x22:
                self.pos = p + 1
                return bytes(out)
            if c == 0x5C:
                if p + 1 < n and text[p + 1] in (0x22, 0x5C):
                    out.append(text[p + 1])
                    p += 2
                    continue
                raise self.error("Invalid escape in quoted string")
            out.append(c)
            p += 1
        raise self.error("Unterminated quoted string")

    def literal(self, *, allow8: bool = False) -> bytes:
        """literal = "{" number ["+"] "}" CRLF *CHAR8 (framed by the receiver);
        ``allow8`` also accepts literal8 = "~{" number ["+"] "}" (RFC 3516)."""
        m = _LITERAL_RE.fullmatch(self.parts[self.i], self.pos) if self.i < len(
            self.parts
        ) - 1 else None
        if m is None:
            raise self.error("Expected literal")
        if m.group(1) and not allow8:
            raise self.error("literal8 not allowed here")
        data = self.literals[self.i]
        self.i += 1
        self.pos = 0
        return data

    def string(self) -> bytes:
        """string = quoted / literal"""
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            return self.literal()
        raise self.error("Expected string")

    def astring(self) -> bytes:
        """astring = 1*ASTRING-CHAR / string"""
        c = self.peek()
        if c == 0x22 or (c == 0x7B and self.at_literal()):
            return self.string()
        return self.word(ASTRING_CHARS, "string")

    def nstring(self) -> bytes | None:
        """nstring = string / nil"""
        if self.peek() in (0x4E, 0x6E) and self.take(b"NIL"):
            return None
        return self.string()

    def text(self, raw: bytes) -> str:
        """Decode a string argument: UTF-8 (a superset of the US-ASCII that
        RFC 3501 allows; RFC 9051 §4.3 allows UTF-8)."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("String is not valid UTF-8") from None

    def astr(self) -> str:
        """astring (RFC 3501 §9) decoded from UTF-8 to ``str``; ProtocolSyntaxError if invalid."""
        return self.text(self.astring())

    # -------------------------------------------------------------- mailboxes

    def decode_mailbox(self, raw: bytes, *, normalise_inbox: bool = True) -> str:
        """Bytes of a mailbox name to ``str``: modified UTF-7 (RFC 3501 §5.1.3),
        or UTF-8 once UTF8=ACCEPT is enabled (RFC 6855 §3).  "INBOX" in any
        case is "INBOX" (§5.1)."""
        if self.utf8:
            name = self.text(raw)
            # RFC 6855 §3: names are Net-Unicode (RFC 5198 §2), so no controls.
            if any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in name):
                raise self.error("Control character in mailbox name")
        else:
            try:
                ascii_name = raw.decode("ascii")
            except UnicodeDecodeError:
                raise self.error("8-bit mailbox name without UTF8=ACCEPT") from None
            try:
                name = utf7.decode(ascii_name)
            except ProtocolSyntaxError:
                if not all(" " <= ch <= "~" for ch in ascii_name):
                    raise  # control characters: no name at all (BAD)
                # Printable, but a shift that is not modified UTF-7 ("&'+,-"):
                # a name no mailbox has; the command says NO, not BAD.
                return InvalidMailboxName(ascii_name)
        if normalise_inbox and name.upper() == "INBOX":
            return "INBOX"
        return name

    def mailbox(self) -> str:
        """mailbox = "INBOX" / astring"""
        return self.decode_mailbox(self.astring())

    def list_mailbox(self) -> str:
        """list-mailbox = 1*list-char / string  (wildcards kept, no INBOX folding)"""
        c = self.peek()
        if c == 0x22 or (c == 0x7B and self.at_literal()):
            raw = self.string()
        else:
            raw = self.word(LIST_CHARS, "mailbox pattern")
        return self.decode_mailbox(raw, normalise_inbox=False)

    # ------------------------------------------------------------------ lists

    def open_paren(self) -> None:
        """Consume ``(``; ProtocolSyntaxError if it is not next."""
        self.expect(b"(", '"("')

    def close_paren(self) -> bool:
        """Consume ``)`` if it comes next; False (nothing consumed) otherwise."""
        return self.take(b")")

    def generic(self, depth: int = 0) -> object:
        """A generic value for extension parameters (RFC 4466 §2.1
        ``tagged-ext-val``): number -> int, atom -> str, string -> str,
        NIL -> None, parenthesised list -> tuple."""
        # Extension values nest little in practice (RFC 4466 §2.1): 8 levels.
        if depth > min(8, self.max_depth):
            raise self.error("Parameters nested too deeply")
        c = self.peek()
        if c == 0x28:
            self.pos += 1
            items: list[object] = []
            if self.close_paren():
                return ()
            while True:
                items.append(self.generic(depth + 1))
                if self.close_paren():
                    return tuple(items)
                self.sp()
        if c == 0x22 or (c == 0x7B and self.at_literal()):
            return self.text(self.string())
        raw = self.word(_GENERIC_CHARS, "parameter")
        if raw.isdigit() and len(raw) <= 20:
            return int(raw)
        if raw.upper() == b"NIL":
            return None
        return raw.decode("ascii")
