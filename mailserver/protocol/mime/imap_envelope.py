"""The IMAP ENVELOPE (RFC 3501 §7.4.2) and the RFC 5322 address parser behind it.

Where RFC 3501 is silent we follow Dovecot: the first occurrence of a field
wins; Date, Subject, In-Reply-To and Message-ID are sent as their raw
unfolded values (encoded-words and 8-bit bytes untouched); an address with
no display name takes its last comment as the name (``a@b (Ann)``); a
missing local part or domain becomes ``MISSING_MAILBOX`` / ``MISSING_DOMAIN``
because a NIL host would read as group syntax.
"""

from __future__ import annotations

import re

from .headers import HeaderFields, unfold
from .imapstr import nstring

#: One address: (name, adl, mailbox, host); all None is the end of a group, and
#: (None, None, name, None) its start (RFC 3501 §7.4.2).
Address = tuple[str | None, str | None, str | None, str | None]

_SPECIALS = set('()<>[]:;@\\,"')
_WSP = " \t\r\n"
_WORDS = ("atom", "qs", "dlit")

# The shapes nearly all mail has, ``a@b`` and ``[Name Words] <a@b>`` with
# atoms only (no quotes, comments, groups, routes or lists), parsed without
# the tokenizer; the result is the one ``parse_addresses`` gives them.
_ATOM = r'[^()<>\[\]:;@\\,"\x20\t\r\n]+'
_ATOM_RE = re.compile(_ATOM)
_BARE = re.compile(rf"[ \t]*({_ATOM})@({_ATOM})[ \t]*")
# each name atom ends at white space or at "<", so a name splits one way only
# (no backtracking blow-up on a long value that then fails to match)
_ANGLE = re.compile(rf"[ \t]*((?:{_ATOM}(?:[ \t]+|(?=<)))*)<({_ATOM})@({_ATOM})>[ \t]*")


def _tokenize(s: str) -> list[tuple[str, str]]:
    """Lex an address list (RFC 5322 §3.2, §3.4) into (kind, text) pairs.

    Kinds: "atom" (dots included, so obs-phrase and dot-atoms stay whole),
    "qs" (quoted-string content, unescaped), "comment" (content),
    "dlit" (domain literal with brackets), or the special character itself.
    """
    out: list[tuple[str, str]] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in _WSP:
            i += 1
        elif c == '"':
            i += 1
            buf: list[str] = []
            while i < n and s[i] != '"':
                if s[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(s[i])
                i += 1
            i += 1
            out.append(("qs", "".join(buf)))
        elif c == "(":
            depth, start = 0, i
            while i < n:
                ch = s[i]
                if ch == "\\":
                    i += 1
                elif ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            out.append(("comment", s[start + 1 : i].replace("\\", "").strip()))
            i += 1
        elif c == "[":
            j = s.find("]", i)
            j = n if j == -1 else j + 1
            out.append(("dlit", s[i:j]))
            i = j
        elif c in _SPECIALS:
            out.append((c, c))
            i += 1
        else:
            start = i
            while i < n and s[i] not in _SPECIALS and s[i] not in _WSP:
                i += 1
            out.append(("atom", s[start:i]))
    return out


def _addr_spec(toks: list[tuple[str, str]]) -> tuple[str, str]:
    """local-part "@" domain from word tokens (comments removed); missing halves
    are filled in as Dovecot does."""
    words = [(k, t) for k, t in toks if k in _WORDS or k == "@"]
    at = next((i for i, (k, _) in enumerate(words) if k == "@"), len(words))
    local = "".join(t for _, t in words[:at])
    domain = "".join(t for k, t in words[at + 1 :] if k != "@")
    return local or "MISSING_MAILBOX", domain or "MISSING_DOMAIN"


def _phrase(toks: list[tuple[str, str]]) -> str | None:
    words = [t for k, t in toks if k in ("atom", "qs", "dlit", "@")]
    if words:
        return " ".join(words)
    comments = [t for k, t in toks if k == "comment"]
    return comments[-1] if comments else None


def parse_addresses(value: str) -> list[Address]:
    """Parse an address-list (RFC 5322 §3.4, with the obsolete forms of §4.4:
    source routes, empty list elements).  Never raises; junk gives fewer
    addresses, not an error."""
    m = _BARE.fullmatch(value)
    if m is not None:
        return [(None, None, m.group(1), m.group(2))]
    m = _ANGLE.fullmatch(value)
    if m is not None:
        name = " ".join(_ATOM_RE.findall(m.group(1))) or None
        return [(name, None, m.group(2), m.group(3))]
    return _parse_list(value)


def _parse_list(value: str) -> list[Address]:
    """``parse_addresses`` by the general tokenizer (any shape)."""
    toks = _tokenize(value)
    out: list[Address] = []
    phrase: list[tuple[str, str]] = []
    in_group = False
    i, n = 0, len(toks)

    def flush() -> None:
        words = [t for k, t in phrase if k in _WORDS]
        if len(words) > 1 and not any(k == "@" for k, _ in phrase):
            # "Mary Smith" with no address at all: a name, not a mailbox
            out.append((" ".join(words), None, "MISSING_MAILBOX", "MISSING_DOMAIN"))
        elif words or any(k == "@" for k, _ in phrase):
            mailbox, host = _addr_spec(phrase)
            comments = [t for k, t in phrase if k == "comment"]
            out.append((comments[-1] if comments else None, None, mailbox, host))
        phrase.clear()

    while i < n:
        kind, text = toks[i]
        if kind == "<":
            j = i + 1
            while j < n and toks[j][0] != ">":
                j += 1
            inner = toks[i + 1 : j]
            adl = None
            if inner and inner[0][0] == "@":
                colon = next((x for x, (k, _) in enumerate(inner) if k == ":"), -1)
                if colon != -1:
                    adl = "".join(t for k, t in inner[:colon] if k != "comment")
                    inner = inner[colon + 1 :]
            if any(k != "comment" for k, _ in inner):
                mailbox, host = _addr_spec(inner)
            else:
                mailbox, host = "", ""
            name = _phrase(phrase)
            i = j + 1
            while i < n and toks[i][0] == "comment":
                if name is None:
                    name = toks[i][1]
                i += 1
            out.append((name, adl, mailbox, host))
            phrase.clear()
            continue
        if kind == ":" and not in_group:
            out.append((None, None, _phrase(phrase) or "", None))
            phrase.clear()
            in_group = True
        elif kind == ";":
            flush()
            if in_group:
                out.append((None, None, None, None))
                in_group = False
        elif kind == ",":
            flush()
        else:
            phrase.append((kind, text))
        i += 1
    flush()
    if in_group:
        out.append((None, None, None, None))
    return out


def address_list(value: bytes | None) -> bytes:
    """An envelope address list: ``"(" 1*address ")"`` or NIL (RFC 3501 §9)."""
    if value is None:
        return b"NIL"
    addrs = parse_addresses(unfold(value).decode("latin-1"))
    if not addrs:
        return b"NIL"
    parts = [b"("]
    for name, adl, mailbox, host in addrs:
        parts.append(
            b"(%s %s %s %s)" % (nstring(name), nstring(adl), nstring(mailbox), nstring(host))
        )
    parts.append(b")")
    return b"".join(parts)


def _raw(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    return nstring(unfold(value).strip(b" \t"))


def imap_envelope(fields: HeaderFields) -> bytes:
    """The ENVELOPE of a header (RFC 3501 §7.4.2), ready to send.

    Sender and Reply-To default to From when absent or empty.
    """
    first = fields.first
    from_ = address_list(first(b"from"))
    sender = address_list(first(b"sender"))
    reply_to = address_list(first(b"reply-to"))
    items = [
        _raw(first(b"date")),
        _raw(first(b"subject")),
        from_,
        from_ if sender == b"NIL" else sender,
        from_ if reply_to == b"NIL" else reply_to,
        address_list(first(b"to")),
        address_list(first(b"cc")),
        address_list(first(b"bcc")),
        _raw(first(b"in-reply-to")),
        _raw(first(b"message-id")),
    ]
    return b"(" + b" ".join(items) + b")"


#: The ENVELOPE of a message we could not look into (all NIL).
EMPTY_IMAP_ENVELOPE = b"(" + b" ".join([b"NIL"] * 10) + b")"
