"""MIME facts for IMAP: ENVELOPE, BODY/BODYSTRUCTURE, sections and search text.

Pure code (stdlib only, no I/O).  ``analyze`` runs once per delivered blob;
its ``MessageFacts`` are stored beside the blob (``to_bytes``/``from_bytes``)
and used by FETCH (``section_bytes``) and SEARCH (``header_values``,
``search_text``, ``sent_date``).

Design notes:

* Offsets come from our own scanner (``structure``) because the ``email``
  package does not report them; header values are decoded by our small RFC
  2047 decoder, which never raises.
* Everything is computed on the bytes as stored: the server stores exactly
  what it received and serves it unchanged, so sizes and line counts must
  match those bytes.
* Garbage in gives best-effort facts, never an exception (as Dovecot does).
"""

from .facts import (
    SEARCH_FIELDS,
    MessageFacts,
    Part,
    analyze,
    field_search_values,
    items_from_bytes,
    parse_sent_date,
    search_norm,
    search_values_from_bytes,
)
from .headers import HeaderFields, header_values
from .sections import resolve, section_bytes
from .structure import LEAF, MESSAGE, MULTIPART
from .text import search_text

__all__ = [
    "HeaderFields",
    "LEAF",
    "MESSAGE",
    "MULTIPART",
    "MessageFacts",
    "SEARCH_FIELDS",
    "Part",
    "analyze",
    "field_search_values",
    "header_values",
    "items_from_bytes",
    "parse_sent_date",
    "resolve",
    "search_norm",
    "search_text",
    "search_values_from_bytes",
    "section_bytes",
]
