"""Pure helpers that keep CPU out of the SMTP ingress path: where MIME analysis runs,
the JSON log lines (same fields and spellings as structlog's own processors) and
the trace fields' date (same as ``email.utils``)."""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import json
import re

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver import log as logsetup
from mailserver.config import LogSettings
from mailserver.delivery.local import INLINE_HEADER_MAX, INLINE_MAX, cheap_to_analyze
from mailserver.protocol.smtp.trace import rfc5322_date

HEADER = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\n"


@pytest.mark.parametrize(
    ("blob", "inline"),
    [
        (HEADER + b"body\r\n", True),
        (HEADER.replace(b"\r\n", b"\n") + b"bare LF\n", True),
        (HEADER + b"x" * (INLINE_MAX - len(HEADER)), True),
        (HEADER + b"x" * (INLINE_MAX + 1 - len(HEADER)), False),  # big: a thread
        (b"X-Long: " + b"a, " * INLINE_HEADER_MAX + b"\r\n\r\nbody\r\n", False),  # long header
        (b"Content-Type: Multipart/Mixed; boundary=b\r\n\r\n--b--\r\n", False),
        (b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nx\r\n", False),
        (b"no header end at all", False),
    ],
)
def test_cheap_to_analyze(blob: bytes, inline: bool) -> None:
    assert cheap_to_analyze(blob) is inline


@pytest.fixture
def json_stream():
    stream = io.StringIO()
    logsetup.configure(LogSettings(format="json", level="info"), stream)
    yield stream
    logsetup.configure(LogSettings(format="console", level="warning"))  # as tests/conftest.py


def test_json_line_fields_and_order(json_stream: io.StringIO) -> None:
    before = dt.datetime.now(dt.UTC)
    structlog.get_logger("mailserver.smtp").bind(conn_id="1.a").info(
        "smtp_connect", peer="127.0.0.1", note="\u00e9", obj=object
    )
    structlog.get_logger("mailserver.smtp").debug("filtered_out")
    after = dt.datetime.now(dt.UTC)
    lines = json_stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith('{"timestamp": "')
    assert "\\u00e9" in lines[0]  # json.dumps' ASCII output, as before
    event = json.loads(lines[0])
    assert list(event)[:4] == ["timestamp", "level", "logger", "event"]
    assert event["level"] == "info" and event["logger"] == "mailserver.smtp"
    assert event["event"] == "smtp_connect" and event["conn_id"] == "1.a"
    assert event["obj"] == str(object)
    stamp = event["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
    when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before - dt.timedelta(seconds=1) <= when <= after + dt.timedelta(seconds=1)


def test_exception_lines_carry_the_traceback(json_stream: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("x").exception("failed")
    event = json.loads(json_stream.getvalue())
    assert event["level"] == "error" and "ValueError: boom" in event["exception"]


def test_cached_logger_follows_reconfiguration() -> None:
    first = io.StringIO()
    logsetup.configure(LogSettings(format="json", level="info"), first)
    try:
        logger = logsetup.get_logger("mailserver.smtp")
        assert logsetup.get_logger("mailserver.smtp") is logger  # resolved once
        logger.info("one")
        second = io.StringIO()
        logsetup.configure(LogSettings(format="json", level="info"), second)
        logsetup.get_logger("mailserver.smtp").info("two")
        with structlog.testing.capture_logs() as captured:
            logsetup.get_logger("mailserver.smtp").info("three")
    finally:
        logsetup.configure(LogSettings(format="console", level="warning"))
    assert json.loads(first.getvalue())["event"] == "one"
    assert json.loads(second.getvalue())["event"] == "two"
    assert [c["event"] for c in captured] == ["three"]


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_rfc5322_date_is_what_email_utils_writes(when: dt.datetime, offset: int) -> None:
    aware = when.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset)))
    assert rfc5322_date(aware) == email.utils.format_datetime(aware)


def test_rfc5322_date_naive_and_odd_offsets_fall_back() -> None:
    naive = dt.datetime(2024, 1, 2, 3, 4, 5)
    assert rfc5322_date(naive) == email.utils.format_datetime(naive)  # "-0000"
    odd = naive.replace(tzinfo=dt.timezone(dt.timedelta(seconds=30)))
    assert rfc5322_date(odd) == email.utils.format_datetime(odd)
