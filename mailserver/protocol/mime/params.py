"""MIME header values: Content-Type, Content-Disposition, Content-Transfer-Encoding,
Content-Language (RFC 2045 §5.1, §6.1; RFC 2183 §2; RFC 3282 §2; RFC 2231 §3).

Values are handled as Latin-1 ``str`` so that every byte, 8-bit or not,
survives the round trip to the IMAP string we finally send.  Parsing is
lenient in the ways real mail needs (a missing ``;``, an empty parameter,
spaces around ``=``, illegal characters in unquoted values) and never raises.
"""

from __future__ import annotations

_TSPECIALS = set('()<>@,;:\\"/[]?=')
_WSP = " \t\r\n"


class _Scanner:
    __slots__ = ("s", "i")

    def __init__(self, s: str) -> None:
        self.s = s
        self.i = 0

    def skip_cfws(self) -> None:
        """Skip whitespace and (nested) comments, RFC 5322 §3.2.2."""
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c in _WSP:
                self.i += 1
            elif c == "(":
                depth = 0
                while self.i < n:
                    c = s[self.i]
                    if c == "\\":
                        self.i += 1
                    elif c == "(":
                        depth += 1
                    elif c == ")":
                        depth -= 1
                        if depth == 0:
                            self.i += 1
                            break
                    self.i += 1
            else:
                break

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def token(self) -> str:
        """RFC 2045 token: anything but tspecials, space and CTLs."""
        s, n, start = self.s, len(self.s), self.i
        while self.i < n:
            c = s[self.i]
            if c in _TSPECIALS or c <= " " or c == "\x7f":
                break
            self.i += 1
        return s[start : self.i]

    def quoted(self) -> str:
        """A quoted-string starting at the current ``"``; unterminated runs to the end."""
        s, n = self.s, len(self.s)
        self.i += 1
        out: list[str] = []
        while self.i < n:
            c = s[self.i]
            if c == '"':
                self.i += 1
                break
            if c == "\\" and self.i + 1 < n:
                self.i += 1
                c = s[self.i]
            out.append(c)
            self.i += 1
        return "".join(out)

    def loose_value(self) -> str:
        """An unquoted parameter value, read up to ``;`` or whitespace: real mail
        puts ``=``, ``/`` and worse in unquoted boundaries (RFC 2045 forbids it)."""
        s, n, start = self.s, len(self.s), self.i
        while self.i < n and s[self.i] not in ";" + _WSP:
            self.i += 1
        return s[start : self.i]


def parse_params(sc: _Scanner) -> list[tuple[str, str]]:
    """``*(";" parameter)`` (RFC 2045 §5.1), then RFC 2231 continuations merged."""
    params: list[tuple[str, str]] = []
    while True:
        sc.skip_cfws()
        c = sc.peek()
        if not c:
            break
        if c == ";":
            sc.i += 1
            continue
        name = sc.token()
        if not name:
            sc.i += 1  # a stray special: skip it rather than loop
            continue
        sc.skip_cfws()
        if sc.peek() != "=":
            continue
        sc.i += 1
        sc.skip_cfws()
        value = sc.quoted() if sc.peek() == '"' else sc.loose_value()
        params.append((name, value))
    return merge_rfc2231(params)


def merge_rfc2231(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Join RFC 2231 §3 continuations ``name*0``, ``name*1*``... into one parameter.

    Like Dovecot the value is not decoded: when any section is extended the
    result is called ``name*`` and holds the concatenated extended value
    (``charset'lang'%xx...``), so a client can decode it per RFC 2231 §4.
    """
    if not any("*" in n for n, _ in params):
        return params
    out: list[tuple[str, str]] = []
    groups: dict[str, list[tuple[int, bool, str]]] = {}
    order: list[str] = []
    for name, value in params:
        base, star, rest = name.partition("*")
        if star and rest not in ("", "*"):
            num = rest.rstrip("*")
            if num.isdigit() and num.isascii():  # "²".isdigit() (bench/fuzz.py)
                key = base.lower()
                if key not in groups:
                    groups[key] = []
                    order.append(base)
                    out.append(("\0" + key, ""))
                groups[key].append((int(num), rest.endswith("*"), value))
                continue
        out.append((name, value))
    merged: dict[str, tuple[str, str]] = {}
    for base in order:
        segs = sorted(groups[base.lower()], key=lambda t: t[0])
        extended = any(e for _, e, _ in segs)
        merged[base.lower()] = (base + ("*" if extended else ""), "".join(v for _, _, v in segs))
    return [merged[n[1:]] if n.startswith("\0") else (n, v) for n, v in out]


def parse_content_type(value: str | None) -> tuple[str, str, list[tuple[str, str]]] | None:
    """``type "/" subtype *(";" parameter)`` (RFC 2045 §5.1), case as written.

    Returns None when the value is absent or has no valid type/subtype (the
    caller then applies the default of RFC 2045 §5.2).
    """
    if value is None:
        return None
    sc = _Scanner(value)
    sc.skip_cfws()
    mtype = sc.token()
    sc.skip_cfws()
    if not mtype or sc.peek() != "/":
        return None
    sc.i += 1
    sc.skip_cfws()
    subtype = sc.token()
    if not subtype:
        return None
    return mtype, subtype, parse_params(sc)


def parse_disposition(value: str | None) -> tuple[str, list[tuple[str, str]]] | None:
    """``disposition-type *(";" parameter)`` (RFC 2183 §2); None when absent or empty."""
    if value is None:
        return None
    sc = _Scanner(value)
    sc.skip_cfws()
    dtype = sc.token()
    if not dtype:
        return None
    return dtype, parse_params(sc)


def parse_token(value: str | None) -> str | None:
    """The first token of a value (Content-Transfer-Encoding, RFC 2045 §6.1), or None."""
    if value is None:
        return None
    sc = _Scanner(value)
    sc.skip_cfws()
    return sc.token() or None


def parse_languages(value: str | None) -> list[str]:
    """Content-Language: comma-separated language tags (RFC 3282 §2)."""
    if value is None:
        return []
    sc = _Scanner(value)
    out: list[str] = []
    while True:
        sc.skip_cfws()
        c = sc.peek()
        if not c:
            return out
        if c == ",":
            sc.i += 1
            continue
        tok = sc.token()
        if tok:
            out.append(tok)
        else:
            sc.i += 1


def param(params: list[tuple[str, str]], name: str) -> str | None:
    """The value of parameter ``name`` (case-insensitive), first occurrence."""
    for n, v in params:
        if n.lower() == name:
            return v
    return None
