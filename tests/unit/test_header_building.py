"""Header fields we write ourselves (CVE-2026-1299 and its class).

CVE-2026-1299: ``email.generator.BytesGenerator`` wrote header values with
unquoted newlines (header injection) on CPython before 3.10.20 / 3.11.15 /
3.12.13 and the matching 3.13/3.14 releases.  The server never serializes a
message with the stdlib generator: it stores and relays the client's bytes
unchanged and builds the few fields it adds (``Received:``, the DSN report,
submission's ``Message-ID:``/``Date:``) as bytes itself.  These tests pin
both halves: no generator in ``mailserver/``, and the builders cannot be made
to start a field of the peer's choosing, whatever the interpreter.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.protocol.smtp.trace import received_field
from mailserver.queue.dsn import DsnRecipient, build_dsn

PACKAGE = Path(__file__).resolve().parents[2] / "mailserver"
#: The stdlib's serializers: what CVE-2026-1299 (and CVE-2024-6923) live in.
_SERIALIZERS = {"BytesGenerator", "Generator", "DecodedGenerator", "as_bytes", "as_string"}


def test_no_stdlib_generator_serializes_our_messages() -> None:
    uses = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("email"):
                names = {a.name for a in node.names}
                if node.module == "email.generator" or names & _SERIALIZERS:
                    uses.append(f"{path.name}:{node.lineno}")
            elif isinstance(node, ast.Import):
                if any(a.name == "email.generator" for a in node.names):
                    uses.append(f"{path.name}:{node.lineno}")
            elif isinstance(node, ast.Attribute) and node.attr in _SERIALIZERS:
                uses.append(f"{path.name}:{node.lineno}")
    assert uses == [], "serialize with our own builders, not email.generator (README)"


# A single line break, anywhere but at the end of a CRLF-terminated line.
_BARE_BREAK = re.compile(rb"\r(?!\n)|(?<!\r)\n")
WHEN = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@settings(max_examples=300, deadline=None)
@given(helo=st.text(max_size=40),
       rcpt=st.text(st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=30))
def test_received_field_is_one_folded_field(helo: str, rcpt: str) -> None:
    # HELO is the peer's free text; a recipient reached it through RCPT, which
    # refuses control characters (RFC 5321 §4.1.2; tests/unit/test_smtp_address.py).
    field = received_field(helo=helo, peer_ip="192.0.2.1", hostname="mx.example.test",
                           protocol="ESMTP", queue_id="9JM2T0000012",
                           recipients=[f"{rcpt}@example.test"], when=WHEN)
    assert field.startswith(b"Received: from ") and field.endswith(b"\r\n")
    assert not _BARE_BREAK.search(field)
    for line in field[:-2].split(b"\r\n")[1:]:
        assert line[:1] == b"\t"  # every continuation folds: no new field starts


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.sampled_from("ab \r\n\t:X-"), max_size=40))
def test_dsn_fields_from_peer_text_stay_one_line(text: str) -> None:
    report = build_dsn(
        reporting_mta="mail.example.test", reverse_path="alice@example.test",
        recipients=[DsnRecipient("bob@remote.test", "failed", "5.0.0", "550 " + text)],
        original=b"Subject: x\r\n\r\nbody\r\n", arrival_date=0.0, now=0.0, envid=text or None)
    status = report.split(b"Content-Type: message/delivery-status\r\n\r\n", 1)[1]
    fields = status.split(b"\r\n--", 1)[0]
    names = [line.split(b":", 1)[0] for line in fields.split(b"\r\n")
             if line and line[:1] not in b" \t"]
    assert b"X-" not in b" ".join(names)  # the peer's text started no field
    assert not _BARE_BREAK.search(report.split(b"text/rfc822-headers", 1)[0])
