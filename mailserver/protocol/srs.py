"""The Sender Rewriting Scheme (SRS): reverse-paths of forwarded mail.

A message forwarded to another domain keeps failing the sender's SPF if it
keeps its reverse-path (RFC 7208 §1.2.1, Appendix D), so the forwarder
rewrites it into an address of its own domain that encodes the original one,
and decodes bounces sent to that address back to the original sender.  This
is the scheme of Shevek's "Sender Rewriting Scheme" paper in the shape
libsrs2, postsrsd and Exim write (only the forwarder that made an address
holds the secret that verifies it; the shape lets the others recognise an
SRS address and chain onto it):

* ``SRS0=HHHH=TT=orig-domain=orig-local@our-domain`` for an ordinary
  reverse-path: ``TT`` the day (``floor(time / 86400) mod 1024`` as two
  base32 characters), ``HHHH`` the first characters of the base64
  HMAC-SHA1, under our secret, of the timestamp, domain and local-part
  (lower-cased: some MTAs change the case of addresses);
* ``SRS1=HHHH=first-hop==<SRS0 opaque part>@our-domain`` when the
  reverse-path is itself an SRS0 (or SRS1) address of a previous forwarder:
  the original stays with the first forwarder, which alone can check its
  hash, and bounces go back through it.

Why our own code: the one Python library (pysrs 1.0.3, 2018) no longer runs
on Python 3.9+ (it calls ``base64.encodestring``), and the scheme is a page
of string handling; sans-IO, the clock passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from mailserver.errors import MailserverError

#: The base32 alphabet of the timestamp (RFC 4648 §6).
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
#: Separators a decoder accepts after ``SRS0``/``SRS1`` (libsrs2 writes "=").
_SEPARATORS = "=+-"


class SrsError(MailserverError):
    """An address that is not a valid SRS address of ours: bad syntax, a hash
    that does not verify, or a timestamp older than the maximum age."""


def is_srs(local_part: str) -> bool:
    """Whether a local-part looks like an SRS address (``SRS0=``/``SRS1=``,
    any case, any of the separators)."""
    return len(local_part) > 5 and local_part[:4].upper() in ("SRS0", "SRS1") \
        and local_part[4] in _SEPARATORS


def _stamp(day: int) -> str:
    day %= 1024
    return _BASE32[day >> 5] + _BASE32[day & 31]


def _day_of(stamp: str) -> int:
    try:
        return (_BASE32.index(stamp[0].upper()) << 5) | _BASE32.index(stamp[1].upper())
    except (ValueError, IndexError):
        raise SrsError(f"bad SRS timestamp {stamp!r}") from None


@dataclass(frozen=True, slots=True)
class SrsCodec:
    """Rewrites reverse-paths for one secret.

    ``secret``: the HMAC key (bytes; keep it across restarts, or bounces to
    addresses made before are refused).  ``max_age_days``: how long an
    address decodes (21 days, libsrs2's default; bounces come within the
    queue's lifetime).  ``hash_length``: characters of hash kept (4: 24
    bits, as libsrs2).
    """

    secret: bytes
    max_age_days: int = 21
    hash_length: int = 4

    def _hash(self, *parts: str) -> str:
        mac = hmac.new(self.secret, "".join(parts).lower().encode("utf-8"), hashlib.sha1)
        return base64.b64encode(mac.digest()).decode("ascii")[:self.hash_length]

    def _check(self, given: str, *parts: str) -> None:
        # Case-insensitive, as libsrs2: a relay may have lower-cased the address.
        if not hmac.compare_digest(given.lower(), self._hash(*parts).lower()):
            raise SrsError("SRS hash does not verify")

    def forward(self, reverse_path: str, our_domain: str, now: float) -> str:
        """The reverse-path to send a forwarded copy with: ``reverse_path``
        (``local@domain``; "" is the null reverse-path and stays "")
        rewritten into an address at ``our_domain``.  ``now``: Unix seconds.
        Raises SrsError for a reverse-path without a domain."""
        if not reverse_path:
            return ""
        local, at, domain = reverse_path.rpartition("@")
        if not at or not local or not domain:
            raise SrsError(f"cannot rewrite {reverse_path!r}: no domain")
        if domain.lower() == our_domain.lower() and is_srs(local):
            return reverse_path  # ours already: a bounce of it comes back to us
        if is_srs(local) and local[:4].upper() == "SRS0":
            # A previous forwarder's SRS0: SRS1 naming it as the first hop.
            opaque = local[5:]
            return f"SRS1={self._hash(domain, opaque)}={domain}=={opaque}@{our_domain}"
        if is_srs(local):
            # An SRS1: keep its first hop and opaque part, hash them anew.
            try:
                _, first_hop, opaque = local[5:].split("=", 2)
            except ValueError:
                raise SrsError(f"bad SRS1 address {reverse_path!r}") from None
            opaque = opaque[1:] if opaque[:1] in _SEPARATORS else opaque
            return f"SRS1={self._hash(first_hop, opaque)}={first_hop}=={opaque}@{our_domain}"
        stamp = _stamp(int(now // 86400))
        return f"SRS0={self._hash(stamp, domain, local)}={stamp}={domain}={local}@{our_domain}"

    def reverse(self, address: str, now: float) -> str:
        """Where a message to the SRS ``address`` (``local@our-domain``) goes:
        the original reverse-path of an SRS0, or the previous forwarder's
        SRS0 address of an SRS1.  Raises SrsError when the address is not
        SRS, is malformed, its hash does not verify, or an SRS0 is older
        than ``max_age_days`` (or stamped more than a day ahead)."""
        local = address.rpartition("@")[0] if "@" in address else address
        if not is_srs(local):
            raise SrsError(f"not an SRS address: {address!r}")
        kind, rest = local[:4].upper(), local[5:]
        if kind == "SRS1":
            try:
                given, first_hop, opaque = rest.split("=", 2)
            except ValueError:
                raise SrsError(f"bad SRS1 address {address!r}") from None
            opaque = opaque[1:] if opaque[:1] in _SEPARATORS else opaque
            if not first_hop or not opaque:
                raise SrsError(f"bad SRS1 address {address!r}")
            self._check(given, first_hop, opaque)
            return f"SRS0={opaque}@{first_hop}"
        try:
            given, stamp, domain, orig_local = rest.split("=", 3)
        except ValueError:
            raise SrsError(f"bad SRS0 address {address!r}") from None
        if len(stamp) != 2 or not domain or not orig_local:
            raise SrsError(f"bad SRS0 address {address!r}")
        self._check(given, stamp, domain, orig_local)
        age = (int(now // 86400) - _day_of(stamp)) % 1024
        if age > self.max_age_days and age < 1023:  # 1023: stamped "tomorrow" (clock skew)
            raise SrsError(f"SRS address expired ({age} days old)")
        return f"{orig_local}@{domain}"
