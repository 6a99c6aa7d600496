"""The Public Suffix List (the ``publicsuffixlist`` package, which ships it):
organizational domains for DMARC (RFC 7489 §3.2) and the junk features'
registered domains.  One parsed list per process.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

_list: PublicSuffixList | None = None
_lock = threading.Lock()


def suffix_list() -> PublicSuffixList:
    """The list, parsed once per process (~30 ms of CPU).  Under a lock: the
    checks' threads all reach it with a server's first messages, and an
    unguarded first use (``lru_cache``, as it was) parsed it again in every
    thread that came before the first parse ended: a third of the checks'
    cost in bench part 11 (issue #11 §4)."""
    global _list
    if _list is None:
        with _lock:
            if _list is None:
                _list = PublicSuffixList()
    return _list


@lru_cache(maxsize=4096)  # asked 3-4 times per message, mostly of the same few domains
def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label (the domain itself when the
    list knows no suffix for it, or when it is a public suffix); lower case,
    without a final dot."""
    domain = domain.lower().rstrip(".")
    return suffix_list().privatesuffix(domain) or domain
