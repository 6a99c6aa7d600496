"""Forwarding: an alias's copies to addresses of other domains (issue #11 §2).

A forwarded copy leaves with

* an SRS reverse-path at the alias's domain (``protocol/srs.py``): the
  receiver's SPF check sees our domain, which is the sending one, instead of
  failing the original sender's (RFC 7208 Appendix D); the null
  reverse-path stays null (a bounce is never bounced);
* an ARC set of our own (RFC 8617 §5.1: ARC-Authentication-Results with our
  verdicts, ARC-Message-Signature, ARC-Seal), signed with the alias
  domain's RSA DKIM key, so the final receiver can trust the SPF/DKIM/DMARC
  results we saw before forwarding broke them.  Without such a key, or
  without our Authentication-Results in the message (checks off), the copy
  goes unsealed and the log says so;

and goes through the outbound queue as a message of its own (its own queue
id; DSNs go to the SRS address).  A bounce to an SRS address of a local
domain is decoded (``SrsDirectory``), checked (hash, age) and forwarded to
the original sender; an address that does not decode is an unknown user
(550 5.1.1), so a forged SRS address relays nothing.

The SRS secret is ``data_dir/srs/secret`` (32 random octets, mode 0600),
made at first use and kept in backups with the rest of the data directory;
with it lost, bounces to addresses made before are refused.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import dkim
import structlog

from mailserver.dkim.keys import DkimKey
from mailserver.fsutil import write_atomic
from mailserver.protocol.srs import SrsCodec, SrsError, is_srs
from mailserver.store.directory import RecipientStatus

log = structlog.get_logger("mailserver.delivery")

#: Octets of a new SRS secret.
SECRET_OCTETS = 32


def load_secret(data_dir: Path) -> bytes:
    """The SRS secret of ``data_dir`` (``srs/secret``), made when missing.
    Raises OSError."""
    path = Path(data_dir) / "srs" / "secret"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written whole under another name, then linked: a worker starting at the
    # same moment sees no secret or the whole one, and only one is ever made.
    draft = path.with_name(f"secret.{os.getpid()}.{secrets.token_hex(4)}")
    write_atomic(draft, secrets.token_bytes(SECRET_OCTETS), 0o600)
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_bytes()


class Enqueue(Protocol):
    """The outbound queue's ``enqueue``, as forwarding uses it."""

    async def __call__(self, reverse_path: str, recipients: Sequence[str],
                       message: bytes) -> str:
        """Queue ``message`` for ``recipients`` with ``reverse_path``; its queue id."""
        ...


class Directory(Protocol):
    """The directory reads ``SrsDirectory`` wraps (coroutines, as ``store.api.Directory``)."""

    async def recipient_status(self, address: str) -> RecipientStatus:
        """The directory's answer for one forward-path (``store.RecipientStatus``)."""
        ...

    async def recipient_account(self, address: str) -> str | None:
        """The account ``address`` delivers to, or None."""
        ...


class Forwarder:
    """Sends an alias's remote copies (see the module docstring).

    ``enqueue``: the queue's (None: no outbound queue, nothing can be
    forwarded); ``keys_for(domain)``: the DKIM keys a domain signs with;
    ``authserv_id``: ours (the hostname), whose Authentication-Results the
    ARC set carries; ``clock``: Unix seconds.
    """

    def __init__(self, codec: SrsCodec, enqueue: Enqueue | None,
                 keys_for: Callable[[str], Sequence[DkimKey]], authserv_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.codec = codec
        self.enqueue = enqueue
        self.keys_for = keys_for
        self.authserv_id = authserv_id
        self.clock = clock

    def reverse(self, address: str) -> str | None:
        """The original address an SRS ``address`` of ours stands for, None
        when it does not decode (forged, expired, not SRS)."""
        try:
            return self.codec.reverse(address, self.clock())
        except SrsError as exc:
            log.info("srs_refused", rcpt=address, reason=str(exc))
            return None

    async def forward(self, reverse_path: str, alias: str, targets: Sequence[str],
                      blob: bytes) -> str:
        """Queue one copy of ``blob`` for ``targets`` (remote addresses of
        the alias ``alias``), SRS-rewritten and ARC-sealed; returns its queue
        id.  Raises MailserverError (the queue's faults), RuntimeError
        without a queue."""
        if self.enqueue is None:
            raise RuntimeError("an alias forwards, but there is no outbound queue")
        domain = alias.rpartition("@")[2].lower()
        try:
            sender = self.codec.forward(reverse_path, domain, self.clock())
        except SrsError:  # a reverse-path without a domain: forward it as it is
            sender = reverse_path
        sealed = await self._seal(blob, domain)
        queue_id = await self.enqueue(sender, list(targets), sealed + blob)
        log.info("forwarded", alias=alias, targets=list(targets), srs=sender != reverse_path,
                 sealed=bool(sealed), forward_id=queue_id)
        return queue_id

    async def _seal(self, blob: bytes, domain: str) -> bytes:
        """Our ARC set (header lines, CRLF-ended) for ``blob``, or b""."""
        keys = [k for k in self.keys_for(domain) if k.algorithm == "rsa"]  # ARC: RSA only
        if not keys:
            return b""
        key = keys[0]
        try:
            lines = await asyncio.to_thread(
                dkim.arc_sign, blob, key.selector.encode(), domain.encode(), key.private_pem,
                self.authserv_id.encode())
        except Exception as exc:  # dkimpy's DKIMException, or a message it cannot parse
            log.warning("arc_seal_failed", domain=domain, error=str(exc))
            return b""
        return b"".join(lines)


class SrsDirectory:
    """A directory (``PostmasterDirectory``'s reads) that also
    knows the SRS addresses of our local domains: they forward to the
    original sender they decode to."""

    __slots__ = ("inner", "forwarder")

    def __init__(self, inner: Directory, forwarder: Forwarder) -> None:
        self.inner = inner
        self.forwarder = forwarder

    async def recipient_status(self, address: str) -> RecipientStatus:
        """The inner answer; for an unknown ``SRS0=``/``SRS1=`` address of a
        local domain that decodes, a forward to the original address."""
        status = await self.inner.recipient_status(address)
        if status.known or not status.local_domain or not is_srs(address.rpartition("@")[0]):
            return status
        original = self.forwarder.reverse(address)
        if original is None:
            return status
        return RecipientStatus(local_domain=True, account=None, forwards=(original,))

    async def recipient_account(self, address: str) -> str | None:
        """The inner answer (an SRS address is no account)."""
        return await self.inner.recipient_account(address)
