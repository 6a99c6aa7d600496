"""The frames between the worker processes and the writer service (sans-IO).

No sockets here (after h11): ``FrameDecoder.feed(data)`` buffers and
``next_frame()`` returns a whole frame's body or ``None`` (need data); the
``encode_*`` functions turn a request or a reply into bytes, the ``decode_*``
functions a body back into a typed value.  ``remote_writer.py`` (worker side)
and ``writer_service.py`` (supervisor side) do the I/O around it.

Frame: ``u32`` big-endian length of the body, then the body.

* Request body: ``u64`` request id, ``u64`` weight (octets, as
  ``Writer.submit``), ``u32`` pickle length, ``u32`` count of out-of-band
  buffers and their lengths (``u32`` each), then ``pickle((fn, args))``
  (protocol 5), then the buffers.  ``fn`` is a module-level request function
  of ``mailserver.store`` and pickles by reference (module and qualified
  name); ``args`` are plain values and our frozen dataclasses.  A top-level
  ``bytes`` argument of ``OUT_OF_BAND`` octets or more (the message) travels
  as a buffer (PEP 574): it is written as is, never copied into the pickle,
  and unpickles as ``bytes`` again.
  Our frozen dataclasses of ``store.model`` pickle as ``(class, field
  values)`` (``_DISPATCH``): the default frozen-dataclass state goes through
  ``dataclasses``' Python ``__getstate__``/``__setstate__`` per object
  (measured on a STORE reply of 50 records: encode 106 -> 42 µs, decode
  132 -> 90 µs).
* Reply body: ``u64`` request id, ``u8`` ok, ``u32`` count of changed mailbox
  ids and the ids (``u64`` each), then ``pickle(result or exception)``.  The
  ids travel outside the pickle so that a value that does not unpickle still
  wakes the right waiters and fails the right request.

Trust: the peer is a process of the daemon's own user (the socket lives in a
0700 directory and the service checks ``SO_PEERCRED``), but unpickling is
restricted all the same (``_Unpickler``): classes defined in ``mailserver``
modules, exception classes and a few containers of ``builtins``, and
functions only of the request modules.  The verdict for each allowed
(module, name) is remembered (modules do not change under a running
daemon); a refusal is not, so a peer cannot grow the memo.  Anything else fails to decode:
a request then gets a ``TemporaryFailure`` reply, a reply value becomes a
``TemporaryFailure`` (``RemoteError`` for a frame that cannot be read at all).
"""

from __future__ import annotations

import builtins
import copyreg
import dataclasses
import io
import operator
import pickle
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mailserver.errors import MailserverError, TemporaryFailure
from mailserver.store import model

#: The service's socket in ``data_dir/run`` (not ``*.sock``: those are the
#: change feed's datagram sockets, ``feed.py``).
SERVICE_NAME = "writer.stream"
#: Largest frame body accepted (a request carries a whole message).
MAX_FRAME = 1 << 30

_LEN = struct.Struct(">I")
_REQUEST_HEAD = struct.Struct(">QQII")
_REPLY_HEAD = struct.Struct(">QBI")
_ID = struct.Struct(">Q")
_BUF_LEN = struct.Struct(">I")
#: A top-level ``bytes`` argument this long or longer travels out of band.
#: Below it the copies cost less than wrapping the argument (measured: at
#: 4 KB out of band was ~1 µs slower per request, bench/writer_wire.py).
OUT_OF_BAND = 64 * 1024

#: Modules whose module-level functions may be sent as request functions.
REQUEST_MODULES = frozenset({
    "mailserver.store.directory_writes",
    "mailserver.store.junk_writes",
    "mailserver.store.mailboxes",
    "mailserver.store.messages",
    "mailserver.store.queue",
})
_SAFE_BUILTINS = frozenset({"frozenset", "set", "bytearray", "complex", "range", "slice"})


class WireError(MailserverError):
    """A frame that cannot be read: the connection is no longer usable."""


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """A decoded request frame: run ``fn(ctx, *args)`` in a group commit."""

    rid: int
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    weight: int


@dataclass(frozen=True, slots=True)
class WriteReply:
    """A decoded reply frame: the outcome of request ``rid`` and the mailboxes it changed."""

    rid: int
    ok: bool
    value: Any  # the result, or the exception to raise
    changed: frozenset[int]


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED.get((module, name), _REFUSED)
        if obj is _REFUSED:
            obj = _allowed(module, name)
            _ALLOWED[(module, name)] = obj
        return obj


_REFUSED = object()
#: (module, name) -> the object find_class returned for it (allowed ones only).
_ALLOWED: dict[tuple[str, str], Any] = {}


def _allowed(module: str, name: str) -> Any:
    """The object ``module.name`` when the allow-list admits it, else ``UnpicklingError``."""
    if module == "builtins":
        obj = getattr(builtins, name, None)
        if name in _SAFE_BUILTINS or (isinstance(obj, type) and issubclass(obj, BaseException)):
            return obj
    elif (module == "mailserver" or module.startswith("mailserver.")) and "." not in name:
        obj = pickle.Unpickler.find_class(_NO_INPUT, module, name)
        # Only what the module defines itself, not what it imported (``os``).
        if getattr(obj, "__module__", None) == module and (
            isinstance(obj, type) or module in REQUEST_MODULES
        ):
            return obj
    raise pickle.UnpicklingError(f"{module}.{name} is not allowed on the writer socket")


#: The plain unpickler whose ``find_class`` imports and looks up for ``_allowed``.
_NO_INPUT = pickle.Unpickler(io.BytesIO(b""), fix_imports=False)


def _loads(data: bytes, buffers: list[bytes] | None = None) -> Any:
    # BytesIO shares a bytes object's memory; a memoryview it would copy.
    return _Unpickler(io.BytesIO(data), buffers=buffers).load()


def _field_reducer(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    """``obj -> (cls, field values)``: unpickles through ``cls(*values)``,
    which ``find_class`` admits (a ``mailserver`` class)."""
    names = [f.name for f in dataclasses.fields(cls)]
    if len(names) == 1:
        name = names[0]
        return lambda obj: (cls, (getattr(obj, name),))
    get = operator.attrgetter(*names)
    return lambda obj: (cls, get(obj))


def _model_dispatch() -> dict[type, Any]:
    table: dict[type, Any] = dict(copyreg.dispatch_table)
    for obj in vars(model).values():
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) \
                and obj.__module__ == model.__name__ \
                and all(f.init for f in dataclasses.fields(obj)):
            table[obj] = _field_reducer(obj)
    return table


_DISPATCH = _model_dispatch()


def _dumps(value: Any, protocol: int = pickle.HIGHEST_PROTOCOL, **kw: Any) -> bytes:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=protocol, **kw)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(value)
    return buf.getvalue()


def _frame_head(size: int) -> bytes:
    if size > MAX_FRAME:
        raise TemporaryFailure("write request too large for the writer service")
    return _LEN.pack(size)


def _frame(*parts: bytes) -> bytes:
    size = sum(len(p) for p in parts)
    return b"".join((_frame_head(size), *parts))


def encode_request(rid: int, fn: Callable[..., Any], args: tuple[Any, ...],
                   weight: int) -> list[bytes]:
    """The frame of one request, as parts to write in order (``writelines``):
    the message is one of them, not copied.  A value that does not pickle
    raises ``pickle.PicklingError`` / ``TypeError`` / ``AttributeError`` (our bug)."""
    buffers = [a for a in args if type(a) is bytes and len(a) >= OUT_OF_BAND]
    if not buffers:  # the common case: one part, no buffer bookkeeping
        # A private Pickler costs ~2 µs more than ``pickle.dumps``: only worth
        # it when a model object is among the arguments (append's NewMessage).
        if any(type(a) in _DISPATCH for a in args):
            body = _dumps((fn, args), protocol=5)
        else:
            body = pickle.dumps((fn, args), protocol=5)
        head = _REQUEST_HEAD.pack(rid, weight, len(body), 0)
        return [b"".join((_frame_head(len(head) + len(body)), head, body))]
    # pickle hands each PickleBuffer to the callback in argument order; a
    # falsy answer keeps it out of band, so ``buffers`` is the wire order.
    wrapped = tuple(pickle.PickleBuffer(a) if type(a) is bytes and len(a) >= OUT_OF_BAND else a
                    for a in args)
    body = _dumps((fn, wrapped), protocol=5, buffer_callback=_out_of_band)
    head = _REQUEST_HEAD.pack(rid, weight, len(body), len(buffers))
    lens = b"".join(_BUF_LEN.pack(len(b)) for b in buffers)
    size = len(head) + len(lens) + len(body) + sum(len(b) for b in buffers)
    return [b"".join((_frame_head(size), head, lens, body)), *buffers]


def _out_of_band(_: pickle.PickleBuffer) -> bool:
    return False


def decode_request(body: bytes | memoryview) -> WriteRequest:
    """A request frame's body.  ``WireError`` when even the id is unreadable;
    ``BadRequest`` (carrying the id) when the rest is."""
    if len(body) < _REQUEST_HEAD.size:
        raise WireError("short request frame")
    rid, weight, size, count = _REQUEST_HEAD.unpack_from(body)
    try:
        fn, args = _loads(*_request_parts(memoryview(body), size, count))
    except Exception as exc:
        raise BadRequest(rid, f"undecodable write request: {exc}") from None
    if getattr(fn, "__module__", None) not in REQUEST_MODULES or not callable(fn) \
            or not isinstance(args, tuple):
        raise BadRequest(rid, "not a write request function")
    return WriteRequest(rid, fn, args, weight)


def _request_parts(view: memoryview, size: int, count: int) -> tuple[bytes, list[bytes]]:
    """The pickle and the out-of-band buffers of a request body (``ValueError``
    when the lengths do not add up)."""
    at = _REQUEST_HEAD.size + count * _BUF_LEN.size
    lens = [_BUF_LEN.unpack_from(view, _REQUEST_HEAD.size + i * _BUF_LEN.size)[0]
            for i in range(count)]
    if at + size + sum(lens) != len(view):
        raise ValueError("request lengths do not match its frame")
    data = bytes(view[at:at + size])
    at += size
    buffers = []
    for n in lens:
        buffers.append(bytes(view[at:at + n]))
        at += n
    return data, buffers


class BadRequest(WireError):
    """A request whose id could be read but not the rest: answer it with a
    ``TemporaryFailure``, keep the connection."""

    def __init__(self, rid: int, text: str) -> None:
        super().__init__(text)
        self.rid = rid


def encode_reply(rid: int, ok: bool, value: Any, changed: Iterable[int] = ()) -> bytes:
    """The frame of one reply.  A value that does not pickle (an exception
    with odd attributes) is replaced by a ``TemporaryFailure`` naming it."""
    ids = sorted(changed)
    try:
        body = _dumps(value)
    except Exception:
        ok = False
        body = _dumps(_unpicklable(value))
    head = _REPLY_HEAD.pack(rid, 1 if ok else 0, len(ids))
    return _frame(head, struct.pack(f">{len(ids)}Q", *ids), body)


def decode_reply(body: bytes | memoryview) -> WriteReply:
    """A reply frame's body.  A value that does not unpickle becomes a
    ``TemporaryFailure`` (the request failed as far as the caller knows)."""
    if len(body) < _REPLY_HEAD.size:
        raise WireError("short reply frame")
    rid, ok, count = _REPLY_HEAD.unpack_from(body)
    start = _REPLY_HEAD.size + count * _ID.size
    if len(body) < start:
        raise WireError("short reply frame")
    changed = frozenset(struct.unpack_from(f">{count}Q", body, _REPLY_HEAD.size))
    try:
        value = _loads(bytes(memoryview(body)[start:]))
    except Exception as exc:
        return WriteReply(rid, False, TemporaryFailure(f"writer reply unreadable: {exc}"), changed)
    if not ok and not isinstance(value, BaseException):
        value = TemporaryFailure("writer reply malformed")
    return WriteReply(rid, bool(ok), value, changed)


def _unpicklable(value: Any) -> TemporaryFailure:
    return TemporaryFailure(f"write request failed: {type(value).__name__}: {value}")


class FrameDecoder:
    """Splits a byte stream into frame bodies; bounded by ``max_frame``."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> None:
        """Append bytes read from the socket; ``next_frame`` takes whole frames out."""
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next whole body, or ``None`` until more data comes.
        ``WireError`` for a length past the limit."""
        if len(self._buf) < _LEN.size:
            return None
        (size,) = _LEN.unpack_from(self._buf)
        if size > self._max:
            raise WireError(f"frame of {size} octets is over the limit")
        end = _LEN.size + size
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[_LEN.size:end])
        del self._buf[:end]
        return body
