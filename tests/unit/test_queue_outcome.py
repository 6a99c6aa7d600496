"""The outcome decision after a delivery attempt (``queue.outcome.decide``), as tables.

Each row: the recipient's DSN request (RFC 3461 NOTIFY), the attempt's
result, whether the message is past its maximum age (no retry time), and
what must follow: the recipient's new status, the action, and the report
(RFC 3464 action) it appears in.
"""

from __future__ import annotations

import pytest

from mailserver.protocol.dsn_params import MailDsn, RcptDsn
from mailserver.queue.model import QueuedMessage, RcptStatus, Recipient
from mailserver.queue.outcome import Action, Outcome, RcptResult, decide

CREATED = 1_800_000_000.0
NOW = CREATED + 600.0
RETRY = NOW + 300.0
A = "a@dest.test"
B = "b@dest.test"

DEFAULT = None  # NOTIFY not given: FAILURE,DELAY (RFC 3461 §4.1)
NEVER = RcptDsn(notify=frozenset())
SUCCESS_ONLY = RcptDsn(notify=frozenset({"SUCCESS"}))
ALL = RcptDsn(notify=frozenset({"SUCCESS", "FAILURE", "DELAY"}))

OK = RcptResult(A, Outcome.DELIVERED, "250 2.0.0 OK", "mx.dest.test")
OK_DSN_HOP = RcptResult(A, Outcome.DELIVERED, "250 2.0.0 OK", "mx.dest.test", next_hop_dsn=True)
LATER = RcptResult(A, Outcome.TEMPORARY, "451 4.3.0 try later", "mx.dest.test")
NO_HOST = RcptResult(A, Outcome.TEMPORARY, "451 4.4.1 no host could be reached")
REFUSED = RcptResult(A, Outcome.PERMANENT, "550 5.1.1 no such user", "mx.dest.test")


def record(*rcpts: Recipient, sender: str = "s@example.test", attempts: int = 0,
           warned: bool = False) -> QueuedMessage:
    return QueuedMessage(
        id="2Q46DF45901097000", reverse_path=sender, created=CREATED, blob_id=b"\0" * 32,
        size=10, recipients=rcpts, next_attempt=NOW, attempts=attempts, warned=warned,
        dsn=MailDsn() if any(r.dsn for r in rcpts) else None,
    )


@pytest.mark.parametrize(
    ("notify", "result", "expired", "status", "action", "report"),
    [
        # 2xx: delivered; "relayed" only for SUCCESS to a next hop without DSN (§5.2.2).
        (DEFAULT, OK, False, RcptStatus.DELIVERED, Action.DELIVERED, None),
        (SUCCESS_ONLY, OK, False, RcptStatus.DELIVERED, Action.DELIVERED, "relayed"),
        (ALL, OK, True, RcptStatus.DELIVERED, Action.DELIVERED, "relayed"),
        (SUCCESS_ONLY, OK_DSN_HOP, False, RcptStatus.DELIVERED, Action.DELIVERED, None),
        (NEVER, OK, False, RcptStatus.DELIVERED, Action.DELIVERED, None),
        # 5xx: failed at once, reported when FAILURE is asked (the default).
        (DEFAULT, REFUSED, False, RcptStatus.FAILED, Action.BOUNCE, "failed"),
        (ALL, REFUSED, True, RcptStatus.FAILED, Action.BOUNCE, "failed"),
        (SUCCESS_ONLY, REFUSED, False, RcptStatus.FAILED, Action.BOUNCE, None),
        (NEVER, REFUSED, False, RcptStatus.FAILED, Action.BOUNCE, None),
        # 4xx or unreachable: retried until the maximum age, then failed (§4.5.4.1).
        (DEFAULT, LATER, False, RcptStatus.DEFERRED, Action.RETRY, None),
        (DEFAULT, NO_HOST, False, RcptStatus.DEFERRED, Action.RETRY, None),
        (DEFAULT, LATER, True, RcptStatus.FAILED, Action.EXPIRE, "failed"),
        (DEFAULT, NO_HOST, True, RcptStatus.FAILED, Action.EXPIRE, "failed"),
        (NEVER, LATER, True, RcptStatus.FAILED, Action.EXPIRE, None),
    ],
)
def test_one_recipient(notify: RcptDsn | None, result: RcptResult, expired: bool,
                       status: RcptStatus, action: Action, report: str | None) -> None:
    rec = record(Recipient(A, dsn=notify), attempts=2)
    d = decide(rec, {A: result}, now=NOW, retry_at=None if expired else RETRY,
               delay_warning=None)
    (r,) = d.record.recipients
    assert (r.status, r.attempts, r.remote_mta) == (status, 1, result.remote_mta)
    assert [(x.address, x.action) for x in d.rcpts] == [(A, action)]
    assert d.done is (status is not RcptStatus.DEFERRED)
    assert d.record.attempts == 3
    assert d.record.next_attempt == (NOW if expired else RETRY)
    reports = {"failed": d.failed, "relayed": d.relayed}
    assert {k for k, v in reports.items() if v} == ({report} if report else set())
    if report:
        assert reports[report] == (r,)
    if action is Action.EXPIRE:
        assert r.last_error == f"{result.reply} (gave up after 3 attempts)"
    else:
        assert r.last_error == result.reply
    assert d.delayed == ()


@pytest.mark.parametrize(
    ("waited", "warned", "notify", "sender", "delayed", "now_warned"),
    [
        (600.0, False, DEFAULT, "s@example.test", True, True),  # due: warn once
        (600.0, True, DEFAULT, "s@example.test", False, True),  # warned before
        (599.0, False, DEFAULT, "s@example.test", False, False),  # not yet
        (600.0, False, NEVER, "s@example.test", False, True),  # not asked: marked anyway
        (600.0, False, SUCCESS_ONLY, "s@example.test", False, True),
        (600.0, False, DEFAULT, "", False, False),  # a DSN gets no DSN (RFC 5321 §4.5.5)
    ],
)
def test_delay_warning(waited: float, warned: bool, notify: RcptDsn | None, sender: str,
                       delayed: bool, now_warned: bool) -> None:
    rec = record(Recipient(A, dsn=notify), sender=sender, warned=warned)
    d = decide(rec, {A: LATER}, now=CREATED + waited, retry_at=RETRY, delay_warning=600.0)
    assert not d.done and d.record.warned is now_warned
    assert [r.address for r in d.delayed] == ([A] if delayed else [])


def test_no_delay_warning_when_the_message_is_done_or_warnings_are_off() -> None:
    rec = record(Recipient(A))
    assert decide(rec, {A: OK}, now=NOW, retry_at=RETRY, delay_warning=1.0).delayed == ()
    d = decide(rec, {A: LATER}, now=NOW, retry_at=RETRY, delay_warning=None)
    assert d.delayed == () and not d.record.warned


def test_null_reverse_path_never_gets_reports() -> None:
    rec = record(Recipient(A, dsn=ALL), Recipient(B, dsn=ALL), sender="")
    d = decide(rec, {A: OK, B: REFUSED}, now=NOW, retry_at=RETRY, delay_warning=0.0)
    assert d.done and d.failed == () and d.relayed == ()


def test_mixed_results_and_untried_recipients() -> None:
    done_before = Recipient(B, status=RcptStatus.DELIVERED, attempts=1, last_error="250 ok")
    rec = record(Recipient(A), done_before, Recipient("c@other.test"), attempts=1)
    d = decide(rec, {A: REFUSED, "c@other.test": LATER}, now=NOW, retry_at=RETRY,
               delay_warning=None)
    a, b, c = d.record.recipients
    assert a.status is RcptStatus.FAILED and c.status is RcptStatus.DEFERRED
    assert b == done_before  # not tried: unchanged
    assert [x.address for x in d.rcpts] == [A, "c@other.test"]
    assert d.failed == (a,) and not d.done and d.record.next_attempt == RETRY
    # The next attempt delivers the last one: done, and only it is reported about.
    d2 = decide(d.record, {"c@other.test": OK}, now=RETRY, retry_at=RETRY + 60,
                delay_warning=None)
    assert d2.done and d2.failed == () and d2.record.attempts == 3


def test_an_active_recipient_without_a_result_past_the_maximum_age_is_an_error() -> None:
    rec = record(Recipient(A), Recipient(B))
    with pytest.raises(ValueError):
        decide(rec, {A: LATER}, now=NOW, retry_at=None, delay_warning=None)


def test_pure() -> None:
    rec = record(Recipient(A))
    first = decide(rec, {A: LATER}, now=NOW, retry_at=RETRY, delay_warning=None)
    assert decide(rec, {A: LATER}, now=NOW, retry_at=RETRY, delay_warning=None) == first
    assert rec.recipients[0].status is RcptStatus.PENDING  # the input is not changed
