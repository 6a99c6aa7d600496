"""Exim as a real BDAT-sending peer (issue 12 §5: CHUNKING, RFC 3030, with a
real client). Exim's smtp transport uses CHUNKING when the server offers it
(``hosts_try_chunking``), so our listener receives the message as BDAT
chunks; the mainlog's ``K`` flag says CHUNKING was used for the delivery.
The throwaway Exim is ``support.exim`` (needs root, as ./scripts/test runs in
CI)."""

from __future__ import annotations

import re

from support.exim import exim_to
from support.server import ServerThread, inbox_of

ALICE = "alice@example.test"


def inbox(server: ServerThread) -> list[bytes]:
    return inbox_of(server, ALICE)


def test_exim_sends_bdat_to_us(server: ServerThread) -> None:
    body = b"".join(b"line %d of a message Exim sends in BDAT chunks\n" % i for i in range(3000))
    msg = (b"From: <sender@remote.test>\nTo: <alice@example.test>\nSubject: via exim\n"
           b"Message-ID: <ex1@remote.test>\n\n" + body)
    with exim_to(server.port("smtp")) as ex:
        ex.send("sender@remote.test", [ALICE], msg)
        lines = ex.deliveries()
        assert len(lines) == 1, ex.log()
        line = lines[0]
    # "K": the delivery used CHUNKING (Exim's log_selector, always logged).
    assert re.search(r"=> alice@example\.test .* K C=\"250 ", line), line
    (stored,) = inbox(server)
    assert b"Subject: via exim\r\n" in stored
    assert stored.endswith(body.replace(b"\n", b"\r\n"))
