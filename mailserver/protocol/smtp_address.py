"""Checks on SMTP paths (RFC 5321 §4.1.2) shared by ingress and the outbound queue.

Pure code: stdlib only, no I/O.

A path may not carry control characters anywhere, not even inside a quoted
local part: RFC 5321 §4.1.2 ``qtextSMTP`` is %d32-33 / %d35-91 / %d93-126 and
``quoted-pairSMTP`` is %d92 %d32-126, so no C0 control (NUL, CR, LF, TAB...) and
no DEL; RFC 6531 §3.3 adds only UTF-8 non-ASCII characters.  Letting one
through is a header injection: the reverse-path becomes our ``Return-Path:``
field (RFC 5321 §4.4) and a bare CR or LF in it starts a header field of the
sender's choosing.
"""

from __future__ import annotations

import re

#: C0 controls (U+0000-U+001F) and DEL (U+007F).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control_characters(path: str) -> bool:
    """Whether ``path`` (a reverse- or forward-path, brackets or not) contains a C0
    control character or DEL, which RFC 5321 §4.1.2 allows nowhere in a path."""
    return _CONTROL.search(path) is not None
