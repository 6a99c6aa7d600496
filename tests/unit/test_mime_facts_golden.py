"""``analyze`` output is pinned byte for byte over the shared corpus.

``data/mime_facts_digests.json`` holds the sha256 of ``analyze(blob).to_bytes()``
for every corpus message, whole and cut in half (a truncated message is the
broken input real delivery sees), as the code computed them before the
analysis was made cheaper.  Facts are stored at delivery and never recomputed,
so a change here changes what FETCH and SEARCH answer for new mail only: that
must be deliberate, with the digests regenerated and the reason recorded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mailserver.protocol.mime import MessageFacts, analyze
from mailserver.protocol.mime.facts import compute_facts

CORPUS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus").resolve()
MESSAGES = sorted((CORPUS / "messages").glob("*.eml"))
assert MESSAGES, f"shared corpus missing at {CORPUS}"

DIGESTS: dict[str, str] = json.loads(
    (Path(__file__).parent / "data" / "mime_facts_digests.json").read_text("utf-8")
)


def _digest(blob: bytes) -> str:
    facts = compute_facts(blob)  # no safety net: a bug of ours must fail here
    raw = facts.to_bytes()
    assert analyze(blob).to_bytes() == raw
    assert MessageFacts.from_bytes(raw) == facts
    return hashlib.sha256(raw).hexdigest()


def test_every_corpus_message_has_a_digest() -> None:
    names = {p.name for p in MESSAGES}
    assert {k.split("#")[0] for k in DIGESTS} == names


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.name[:3])
def test_facts_unchanged(path: Path) -> None:
    blob = path.read_bytes()
    assert _digest(blob) == DIGESTS[path.name]
    assert _digest(blob[: len(blob) // 2]) == DIGESTS[path.name + "#half"]
