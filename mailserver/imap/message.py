"""Lazy access to one stored message for FETCH and SEARCH.

A ``MessageRecord`` is cheap (flags, UID, size, dates); the message bytes and
the MIME facts are not.  ``MessageAccess`` loads each of them at most once and
only when first asked, so a FETCH of ``(FLAGS UID)`` or a SEARCH on flags never
reads a blob.  One instance serves one message for the length of one command:
it is not shared between commands (the record it holds may go stale).

The message as the client sees it is ``record.prefix + blob`` (RFC 3501 §2.3:
the per-delivery trace fields are part of the header).  The facts' offsets are
relative to the blob; ``prefix_len`` tells the MIME helpers the shift.

Store reads are memory-mapped LMDB reads: plain calls, safe on the event loop
for small messages; the server moves content-heavy work to a thread.  The
source of the reads is the ``Store`` or, for a command touching many
messages, one ``Snapshot`` (a single read transaction, ``Store.snapshot``).

The facts are read as bytes once (``raw_facts``); ENVELOPE, BODY,
BODYSTRUCTURE and the search values are sliced out of them without building
the part tree, which only sections and body search need (``facts``).
"""

from __future__ import annotations

import itertools
from typing import Protocol

from mailserver.protocol.imap.types import Section
from mailserver.protocol.mime import (
    MessageFacts,
    items_from_bytes,
    search_values_from_bytes,
    section_bytes,
)
from mailserver.store.model import MessageRecord

#: Search values by blob id.  A blob never changes (its id is its SHA-256), so
#: entries never go stale; repeated header SEARCHes of a mailbox then read no
#: facts at all.  ~50,000 entries of a few hundred octets each at most.
_SEARCH_CACHE: dict[bytes, tuple[tuple[str, ...], ...]] = {}
_SEARCH_CACHE_MAX = 50_000
#: FETCH ENVELOPE/BODY/BODYSTRUCTURE values by blob id, for the same reason:
#: a FETCH of a range the client has seen before (the usual case) then reads
#: no facts.  Entries are one to a few KiB; bounded like ``_SEARCH_CACHE``.
_ITEMS_CACHE: dict[bytes, tuple[bytes, bytes, bytes, int | None]] = {}
_ITEMS_CACHE_MAX = 20_000


def _remember(cache: dict, bound: int, key: bytes, value: object) -> None:
    """Put ``value`` in a per-process cache, first forgetting the oldest half
    when it is full (dicts keep insertion order): bounded memory, and no
    bookkeeping on the hit path.  Safe against a racing thread."""
    if len(cache) >= bound:
        for old in list(itertools.islice(cache, bound // 2)):
            cache.pop(old, None)
    cache[key] = value


def items_cached(blob_id: bytes) -> bool:
    """Whether FETCH ENVELOPE/BODY/BODYSTRUCTURE of this blob reads nothing."""
    return blob_id in _ITEMS_CACHE


def search_values_cached(blob_id: bytes) -> bool:
    """Whether the search values of this blob are known without a facts read."""
    return blob_id in _SEARCH_CACHE


class Source(Protocol):
    """Where message bytes come from: a ``Store`` or a ``store.reader.Snapshot``."""

    def get_blob(self, blob_id: bytes) -> bytes: ...
    def get_facts(self, blob_id: bytes) -> bytes | memoryview: ...

#: The whole top-level header, blank line included (RFC 3501 §6.4.5 ``HEADER``).
_HEADER = Section(text="HEADER")


class MessageAccess:
    """One message of a mailbox: its record, and its bytes and facts on demand.

    ``record`` is the ``MessageRecord`` as read when the command started.
    Attributes are computed on first use and cached:

    * ``data`` — ``bytes``: the full message, ``record.prefix + blob``
      (RFC822 / ``BODY[]``), exactly ``record.size`` octets.
    * ``facts`` — ``MessageFacts`` of the blob (ENVELOPE, BODYSTRUCTURE, part tree).
    * ``header`` — ``bytes``: the top-level header block including the prefix
      and the delimiting blank line when there is one (``BODY[HEADER]``).
    """

    __slots__ = ("store", "record", "_data", "_facts", "_raw_facts", "_items", "_header")

    def __init__(self, store: Source, record: MessageRecord) -> None:
        self.store = store
        self.record = record
        self._data: bytes | None = None
        self._facts: MessageFacts | None = None
        self._raw_facts: bytes | memoryview | None = None
        self._items: tuple[bytes, bytes, bytes, int | None] | None = None
        self._header: bytes | None = None

    @property
    def prefix_len(self) -> int:
        """Octets of per-delivery trace fields in front of the blob."""
        return len(self.record.prefix)

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self.record.prefix + self.store.get_blob(self.record.blob_id)
        return self._data

    @property
    def raw_facts(self) -> bytes | memoryview:
        """The serialized facts (``MessageFacts.to_bytes``), read once; from a
        ``Snapshot`` a view valid only while it is open, so an access never
        outlives the snapshot it reads from."""
        if self._raw_facts is None:
            self._raw_facts = self.store.get_facts(self.record.blob_id)
        return self._raw_facts

    @property
    def facts(self) -> MessageFacts:
        if self._facts is None:
            self._facts = MessageFacts.from_bytes(self.raw_facts)
        return self._facts

    def _fetch_items(self) -> tuple[bytes, bytes, bytes, int | None]:
        """Cached per blob for the process (``_ITEMS_CACHE``)."""
        if self._items is None:
            blob_id = self.record.blob_id
            got = _ITEMS_CACHE.get(blob_id)
            if got is None:
                got = items_from_bytes(self.raw_facts)
                _remember(_ITEMS_CACHE, _ITEMS_CACHE_MAX, blob_id, got)
            self._items = got
        return self._items

    @property
    def envelope(self) -> bytes:
        """FETCH ENVELOPE's value (RFC 3501 §7.4.2), ready to send."""
        return self._fetch_items()[0]

    @property
    def body(self) -> bytes:
        """FETCH BODY's value (non-extensible BODYSTRUCTURE)."""
        return self._fetch_items()[1]

    @property
    def bodystructure(self) -> bytes:
        """FETCH BODYSTRUCTURE's value."""
        return self._fetch_items()[2]

    @property
    def sent_date(self) -> int | None:
        """The Date: header as POSIX seconds, None when absent or unparsable."""
        return self._fetch_items()[3]

    def search_values(self) -> tuple[tuple[str, ...], ...]:
        """The facts' normalised values of ``SEARCH_FIELDS``; ``()`` when the
        facts predate them.  Cached per blob for the process (``_SEARCH_CACHE``)."""
        blob_id = self.record.blob_id
        got = _SEARCH_CACHE.get(blob_id)
        if got is None:
            got = search_values_from_bytes(self.raw_facts)
            _remember(_SEARCH_CACHE, _SEARCH_CACHE_MAX, blob_id, got)
        return got

    @property
    def header(self) -> bytes:
        if self._header is None:
            got = section_bytes(self.data, self.facts, _HEADER, self.prefix_len)
            # A message always has a (possibly empty) header; None would be a
            # facts bug, and an empty header is the safe reading of it.
            self._header = got if got is not None else b""
        return self._header

    def section(self, section: Section) -> bytes | None:
        """The octets of ``BODY[section]`` (RFC 3501 §6.4.5), ``None`` when the
        part does not exist.  Raw: no transfer decoding."""
        if not section.part and section.text is None:
            return self.data
        if not section.part and section.text == "HEADER":
            return self.header
        return section_bytes(self.data, self.facts, section, self.prefix_len)

    @property
    def loaded(self) -> bool:
        """True once the message bytes were read (tests check laziness with it)."""
        return self._data is not None
