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
for small messages; the server moves content-heavy work to a thread.
"""

from __future__ import annotations

from mailserver.protocol.imap.types import Section
from mailserver.protocol.mime import MessageFacts, section_bytes
from mailserver.store.model import MessageRecord
from mailserver.store.store import Store

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

    __slots__ = ("store", "record", "_data", "_facts", "_header")

    def __init__(self, store: Store, record: MessageRecord) -> None:
        self.store = store
        self.record = record
        self._data: bytes | None = None
        self._facts: MessageFacts | None = None
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
    def facts(self) -> MessageFacts:
        if self._facts is None:
            self._facts = MessageFacts.from_bytes(self.store.get_facts(self.record.blob_id))
        return self._facts

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
