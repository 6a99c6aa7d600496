"""The writer service's frames (``store/writer_wire.py``): codec, exceptions, trust."""

from __future__ import annotations

import ast
import inspect
import os
import pickle
import struct
import sys

import pytest

from mailserver import errors
from mailserver.errors import (
    AccountNotFound,
    AlreadyExists,
    Cannot,
    DomainNotFound,
    InvalidName,
    MailboxNotFound,
    NotFound,
    ProtocolSyntaxError,
    QuotaExceeded,
    TemporaryFailure,
    TooBig,
)
from mailserver.store import directory_writes, messages, store
from mailserver.store import writer_wire as wire
from mailserver.store.headroom import StoreFull
from mailserver.store.model import MessageRecord, NewMessage, RecentClaim, WriteSpan


def bodies(stream: bytes, step: int | None) -> list[bytes]:
    """Every frame body in ``stream``, fed whole (``None``) or ``step`` octets at a time."""
    dec = wire.FrameDecoder()
    out = []
    chunks = [stream] if step is None else [stream[i:i + step] for i in range(0, len(stream), step)]
    for chunk in chunks:
        dec.feed(chunk)
        while (body := dec.next_frame()) is not None:
            out.append(body)
    return out


def request(rid: int, fn: object, args: tuple[object, ...], weight: int = 0) -> bytes:
    """``encode_request``'s parts, as the stream carries them."""
    return b"".join(wire.encode_request(rid, fn, args, weight))  # type: ignore[arg-type]


REQUEST_ARGS = (
    [NewMessage("alice@example.test", "INBOX", b"Return-Path: <b@x>\r\n", frozenset({"\\Seen"}))],
    b"Subject: hi\r\n\r\nbody\r\n", b"\x01" * 32, b"facts", 1_700_000_000, -120,
)


@pytest.mark.parametrize("step", [None, 1, 7])
def test_request_round_trips_whole_byte_by_byte_and_with_trailing_data(step: int | None) -> None:
    frame = request(42, messages.deliver, REQUEST_ARGS, 123)
    trailing = request(43, directory_writes.add_domain, ("example.test",))
    got = [wire.decode_request(b) for b in bodies(frame + trailing + b"\x00\x00", step)]
    assert [(r.rid, r.fn, r.args, r.weight) for r in got] == [
        (42, messages.deliver, REQUEST_ARGS, 123),
        (43, directory_writes.add_domain, ("example.test",), 0),
    ]


@pytest.mark.parametrize("step", [None, 1, 5])
def test_reply_round_trips_with_changed_ids(step: int | None) -> None:
    rec = MessageRecord(7, 3, frozenset({"\\Seen", "kw"}), 1, 60, 99, 12, b"\x02" * 32, b"")
    value = ([rec], [4], WriteSpan(7, 11, 12), RecentClaim(7, 2, 3))
    frame = wire.encode_reply(9, True, value, {7, 1 << 63})
    (body,) = bodies(frame, step)
    assert wire.decode_reply(body) == wire.WriteReply(9, True, value, frozenset({7, 1 << 63}))


EXCEPTIONS = [
    MailboxNotFound(),
    MailboxNotFound("no mailbox Foo"),
    AccountNotFound("no such account x@y"),
    DomainNotFound(),
    NotFound("message content no longer exists"),
    AlreadyExists("mailbox exists", imap_code="ALREADYEXISTS"),
    InvalidName("bad name", imap_code="CANNOT"),
    QuotaExceeded(),
    TooBig("too big for you"),
    Cannot("INBOX cannot be deleted"),
    TemporaryFailure("mail store error: MDB_BAD_TXN"),
    StoreFull("Mail store is nearly full: no new mail accepted until space is freed"),
    ProtocolSyntaxError("bad", tag="a1", fatal=True),
    ValueError("mode must be set, add or remove"),
    KeyError("x"),
]


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_our_exceptions_round_trip_with_their_attributes_and_replies(exc: Exception) -> None:
    (body,) = bodies(wire.encode_reply(5, False, exc, ()), None)
    reply = wire.decode_reply(body)
    got = reply.value
    assert (reply.rid, reply.ok, type(got), got.args) == (5, False, type(exc), exc.args)
    assert vars(got) == vars(exc)
    # The same answer on the wire as the original would give.
    assert errors.imap_status(got) == errors.imap_status(exc)
    assert errors.smtp_reply(got) == errors.smtp_reply(exc)


class _Odd(Exception):
    """Defined in a test module: the reply decoder must not load it."""


class _Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("has a lambda")
        self.fn = lambda: None


def test_an_exception_that_does_not_unpickle_becomes_temporary_failure() -> None:
    (body,) = bodies(wire.encode_reply(1, False, _Odd("nope"), {3}), None)
    reply = wire.decode_reply(body)
    assert isinstance(reply.value, TemporaryFailure) and not reply.ok
    assert reply.changed == frozenset({3})  # the waiters still hear the change
    assert errors.smtp_reply(reply.value).code == 451
    assert errors.imap_status(reply.value)[:2] == ("NO", "UNAVAILABLE")


def test_a_value_that_does_not_pickle_is_sent_as_temporary_failure() -> None:
    (body,) = bodies(wire.encode_reply(1, False, _Unpicklable(), ()), None)
    value = wire.decode_reply(body).value
    assert isinstance(value, TemporaryFailure) and "_Unpicklable" in str(value)


@pytest.mark.parametrize("fn", [os.system, store.Store.open, inspect.getsource, _Odd])
def test_only_request_functions_are_accepted(fn: object) -> None:
    try:
        frame = request(77, fn, ("true",))
    except (pickle.PicklingError, AttributeError, TypeError):
        pytest.skip("does not even pickle")
    (body,) = bodies(frame, None)
    with pytest.raises(wire.BadRequest) as info:
        wire.decode_request(body)
    assert info.value.rid == 77


def test_a_hand_made_pickle_reaching_an_import_is_refused() -> None:
    # ``mailserver.process.worker.os`` is ``os``: imported, not defined there.
    payload = b"\x80\x04cmailserver.process.worker\nos\n."
    body = struct.pack(">QQII", 8, 0, len(payload), 0) + payload
    with pytest.raises(wire.BadRequest):
        wire.decode_request(body)


@pytest.mark.parametrize("step", [None, 4096])
def test_a_message_travels_out_of_band_and_comes_back_as_bytes(step: int | None) -> None:
    blob = bytes(range(256)) * (wire.OUT_OF_BAND // 256)
    args = ([NewMessage("a@b.test", "INBOX")], blob, b"\x01" * 32, b"f", 1, 0)
    parts = wire.encode_request(5, messages.deliver, args, 7)
    assert any(p is blob for p in parts)  # written as is, not copied into the pickle
    (body,) = bodies(b"".join(parts), step)
    got = wire.decode_request(body)
    assert got.args == args and type(got.args[1]) is bytes


def test_buffer_lengths_that_do_not_add_up_are_a_bad_request() -> None:
    blob = b"x" * wire.OUT_OF_BAND
    body = b"".join(wire.encode_request(6, messages.deliver, ([], blob), 0))[4:]
    with pytest.raises(wire.BadRequest):
        wire.decode_request(body[:-1])
    with pytest.raises(wire.BadRequest):
        wire.decode_request(body + b"x")


def test_a_refused_name_stays_refused_and_is_not_remembered() -> None:
    payload = b"\x80\x04cmailserver.process.worker\nos\n."
    body = struct.pack(">QQII", 8, 0, len(payload), 0) + payload
    for _ in range(2):
        with pytest.raises(wire.BadRequest):
            wire.decode_request(body)
    assert ("mailserver.process.worker", "os") not in wire._ALLOWED


def test_a_frame_over_the_limit_is_a_wire_error() -> None:
    dec = wire.FrameDecoder(max_frame=100)
    dec.feed(struct.pack(">I", 101))
    with pytest.raises(wire.WireError):
        dec.next_frame()


def test_short_frames_are_wire_errors() -> None:
    with pytest.raises(wire.WireError):
        wire.decode_request(b"\x00" * 23)
    with pytest.raises(wire.WireError):
        wire.decode_reply(struct.pack(">QBI", 1, 1, 3) + b"\x00" * 8)


def _submitted_functions() -> set[str]:
    """``module.name`` of every function ``Store`` hands to ``self._writer.submit``
    (in ``store.py`` and the modules ``Store`` is assembled from)."""
    out = set()
    for part in {sys.modules[cls.__module__] for cls in store.Store.__mro__[:-1]}:
        tree = ast.parse(inspect.getsource(part))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "submit"):
                fn = node.args[0]
                assert isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name)
                module = getattr(part, fn.value.id)
                out.add(f"{module.__name__}.{fn.attr}")
    return out


def test_every_store_request_function_is_sendable() -> None:
    names = _submitted_functions()
    assert len(names) > 15
    for name in names:
        module, _, attr = name.rpartition(".")
        assert module in wire.REQUEST_MODULES, name
        fn = getattr(__import__(module, fromlist=[attr]), attr)
        (body,) = bodies(request(1, fn, ()), None)
        assert wire.decode_request(body).fn is fn


def test_model_dataclasses_travel_as_class_and_field_values() -> None:
    """Our frozen dataclasses pickle as ``(class, values)`` (no per-object
    ``__getstate__``), unpickle equal, and a reply of STORE-sized lists of
    records stays compact."""
    import dataclasses
    import pickletools

    from mailserver.store import model

    rec = MessageRecord(7, 3, frozenset({"\\Seen"}), 1, 60, 99, 12, b"\x02" * 32, b"P: x\r\n")
    values = [rec, WriteSpan(7, 1, 2), RecentClaim(7, 1, 3)]
    for cls in vars(model).values():
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) \
                and cls.__module__ == model.__name__:
            assert cls in wire._DISPATCH, cls.__name__
    reply = wire.decode_reply(wire.encode_reply(5, True, (values, [rec] * 50))[4:])
    assert reply.value == (values, [rec] * 50)
    # Built by calling the class (REDUCE), not from a state set afterwards (BUILD).
    ops = {op.name for op, _, _ in pickletools.genops(wire._dumps(rec))}
    assert "REDUCE" in ops and "BUILD" not in ops
