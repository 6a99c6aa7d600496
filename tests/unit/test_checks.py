"""``mailserver.checks``: the stage pipeline and the rules we ship as stages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.stores import open_store

from mailserver.checks import rules
from mailserver.checks.stage import (
    ACCEPT,
    Pipeline,
    RecipientFacts,
    Verdict,
    quarantine,
    refuse,
)
from mailserver.errors import SmtpReply
from mailserver.protocol.smtp import replies
from mailserver.store.api import LmdbDirectory


@dataclass
class Ctx:
    """A value with the ``CheckContext`` fields (what the connection exposes)."""

    listener: str = "mx"
    submission: bool = False
    peer_ip: str = "192.0.2.1"
    tls: bool = False
    helo: str | None = "client.example"
    auth_user: str | None = None
    mail_from: str | None = "a@remote.example"
    mail_size: int | None = None
    rcpt_count: int = 0
    resolver: Any = None


NOPE = SmtpReply(550, "5.7.1", "no")


class Tag:
    name = "tag"

    def check_data(self, ctx: Ctx, content: bytes) -> Verdict:
        return Verdict(headers=(("X-Tag", "1"),), reason="tagged")


class Quarantine:
    name = "junk"

    async def check_data(self, ctx: Ctx, content: bytes) -> Verdict:
        await asyncio.sleep(0)  # an I/O stage
        return quarantine("looks like junk", (("X-Junk", "yes"),))


class Refuse:
    name = "refuse"

    def check_data(self, ctx: Ctx, content: bytes) -> Verdict:
        return refuse(NOPE, "because")


class Boom:
    def check_data(self, ctx: Ctx, content: bytes) -> Verdict:
        raise AssertionError("not reached: an earlier stage refused")


def _run(pipeline: Pipeline, phase: str, *args: object) -> Any:
    return asyncio.run(pipeline.run(getattr(pipeline, phase), Ctx(), *args))


def test_phases_hold_only_stages_with_that_check() -> None:
    pipeline = Pipeline([rules.PathSyntax(), Tag(), rules.RecipientLimit(2)])
    assert [s.name for s in pipeline.mail] == ["path_syntax"]
    assert [s.name for s in pipeline.rcpt] == ["path_syntax", "recipient_limit"]
    assert [s.name for s in pipeline.data] == ["tag"]
    assert pipeline.connect == pipeline.helo == ()
    assert pipeline.names == ["path_syntax", "tag", "recipient_limit"]


def test_all_accept_is_the_shared_outcome() -> None:
    pipeline = Pipeline([rules.PathSyntax()])
    first, second = _run(pipeline, "mail"), _run(pipeline, "mail")
    assert first is second and first.verdict is ACCEPT and not first.quarantine


def test_headers_and_quarantine_accumulate_until_a_reply() -> None:
    got = _run(Pipeline([Tag(), Quarantine()]), "data", b"")
    assert got.verdict is ACCEPT and got.quarantine
    assert got.headers == (("X-Tag", "1"), ("X-Junk", "yes"))
    got = _run(Pipeline([Tag(), Refuse(), Boom()]), "data", b"")
    assert got.verdict.reply == NOPE and got.stage == "refuse" and got.verdict.reason == "because"
    assert got.headers == (("X-Tag", "1"),)


def _facts(address: str, *, local: bool, account: str | None = None, full: bool = False
           ) -> RecipientFacts:
    domain = address.rpartition("@")[2] if "@" in address else ""
    return RecipientFacts(address, domain, local, account, full)


OURS = _facts("bob@ours.example", local=True, account="bob@ours.example")
UNKNOWN = _facts("nobody@ours.example", local=True)
FULL = _facts("bob@ours.example", local=True, account="bob@ours.example", full=True)
REMOTE = _facts("c@theirs.example", local=False)
LITERAL = _facts("c@[192.0.2.9]", local=False)
MALFORMED = RecipientFacts("nodomain", "", False, None)


def _rcpt_stages(outbound: bool = True) -> list[object]:
    return [rules.PathSyntax(), rules.RecipientLimit(2), rules.Relay(outbound=outbound),
            rules.KnownRecipient()]


@pytest.mark.parametrize(
    ("ctx", "facts", "outbound", "expected"),
    [
        (Ctx(), OURS, True, None),
        (Ctx(), UNKNOWN, True, replies.RCPT_UNKNOWN),
        (Ctx(), MALFORMED, True, replies.RCPT_UNKNOWN),
        (Ctx(), FULL, True, rules.MAILBOX_FULL),
        (Ctx(), REMOTE, True, replies.RELAY_DENIED),
        (Ctx(submission=True), REMOTE, True, replies.RELAY_DENIED),  # not authenticated
        (Ctx(submission=True, auth_user="bob@ours.example"), REMOTE, True, None),
        (Ctx(submission=True, auth_user="bob@ours.example"), REMOTE, False, replies.NO_OUTBOUND),
        (Ctx(submission=True, auth_user="bob@ours.example"), LITERAL, True, rules.LITERAL_REFUSED),
        (Ctx(rcpt_count=2), OURS, True, replies.TOO_MANY_RCPTS),
        (Ctx(rcpt_count=2), _facts("x\x01@ours.example", local=True), True,
         replies.BAD_RCPT_SYNTAX),  # syntax comes first
    ],
)
def test_recipient_rules(ctx: Ctx, facts: RecipientFacts, outbound: bool,
                         expected: SmtpReply | None) -> None:
    pipeline = Pipeline(_rcpt_stages(outbound))
    got = asyncio.run(pipeline.run(pipeline.rcpt, ctx, facts))
    assert got.verdict.reply == expected


@pytest.fixture
async def owners(tmp_path: Path) -> AsyncIterator[LmdbDirectory]:
    """A real store's directory: account bob@ours.example and its alias alias@ours.example."""
    async with open_store(tmp_path, "bob@ours.example", domain="ours.example") as store:
        await store.add_alias("alias@ours.example", "bob@ours.example")
        yield LmdbDirectory(store)


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (Ctx(), None),  # MX listener: no ownership rule
        (Ctx(submission=True), replies.AUTH_REQUIRED),
        (Ctx(submission=True, auth_user="bob@ours.example", mail_from="alias@OURS.example"), None),
        (Ctx(submission=True, auth_user="bob@ours.example", mail_from="eve@ours.example"),
         replies.SENDER_NOT_OWNED),
        (Ctx(submission=True, auth_user="bob@ours.example", mail_from="<>"),
         replies.SENDER_NOT_OWNED),
        (Ctx(mail_from="a\x00@b.example"), replies.BAD_SENDER_SYNTAX),
        (Ctx(mail_size=2000), rules.TOO_BIG),
    ],
)
async def test_sender_rules(ctx: Ctx, expected: SmtpReply | None,
                            owners: LmdbDirectory) -> None:
    pipeline = Pipeline([rules.PathSyntax(), rules.SubmissionAuth(),
                         rules.SenderOwnership(owners), rules.MessageSize(1024)])
    assert (await pipeline.run(pipeline.mail, ctx)).verdict.reply == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"From: bob@ours.example\r\n\r\nhi\r\n", None),
        (b"From: Bob <alias@ours.example>\r\n\r\nhi\r\n", None),
        (b"Subject: no author\r\n\r\nhi\r\n", None),
        (b"From: eve@ours.example\r\n\r\nhi\r\n", rules.FROM_NOT_OWNED),
        (b"From: bob@ours.example, eve@ours.example\r\n\r\nhi\r\n", rules.FROM_NOT_OWNED),
        (b"From: bob@ours.example\r\n\r\n" + b"x" * 2000, rules.TOO_BIG),
    ],
)
async def test_data_rules(content: bytes, expected: SmtpReply | None,
                            owners: LmdbDirectory) -> None:
    pipeline = Pipeline([rules.SubmissionAuth(), rules.SenderOwnership(owners),
                         rules.MessageSize(1024)])
    ctx = Ctx(submission=True, auth_user="bob@ours.example", mail_from="bob@ours.example")
    assert (await pipeline.run(pipeline.data, ctx, content)).verdict.reply == expected


@pytest.mark.parametrize(
    "field",
    [("X-Tag", "a\r\nBcc: victim@example.org"), ("X-Tag", "a\nb"), ("X-Tag", "a\rb"),
     ("Bad Name", "v"), ("X:Tag", "v"), ("", "v"), ("X-Tägg", "v")],
)
def test_a_stage_cannot_start_a_header_field_of_its_own(field: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        Verdict(headers=(field,))


def test_header_fields_in_rfc5322_form_are_accepted() -> None:
    assert Verdict(headers=(("Authentication-Results", "mx.example; spf=pass"),)).headers
