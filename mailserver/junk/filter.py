"""The junk filter as the server uses it (issue #16 §1): scoring each local
copy of mail that came in on an ``smtp`` listener, and training from what
users do in IMAP.

Scoring (``verdict``): the account's own model once it has
``min_own_samples`` trained messages, blended with the global model (every
account's feedback) with weight own / (own + min_own_samples); below that,
the global model alone (cold start).  The features are computed once per
message (in a thread past ``THREAD_OCTETS``), the counts read from the store.

Training: a message moved or copied into Junk trains as spam, moved out of
Junk into anything but Trash as ham, ``$Junk``/``$NotJunk`` set by STORE
likewise; training it the other way takes the first training back
(``store/junk_store.py``).  The IMAP command computes the features first
(``prepare``) and its write carries the training, so the move and what it
taught are one synced commit.  A bulk command (more than
``MAX_COMMIT_TRAINING`` messages, or a message that cannot be read) is
trained after its own commit instead (``train_soon``), so that moving a whole
mailbox does not wait for every message's features.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from mailserver.config import JunkSettings
from mailserver.junk.features import features
from mailserver.junk.model import Score, Totals, score
from mailserver.metrics import instruments
from mailserver.store.junk_writes import Training

log = structlog.get_logger("mailserver.junk")

#: Messages (or trainings) at least this big get their features computed in
#: a thread: bench/junk_latency.py measures features + score at ~1 ms for
#: 8 KB, the issue's bound for work on the event loop.
THREAD_OCTETS = 8 * 1024
#: Messages one IMAP command trains in its own commit; more are trained after.
MAX_COMMIT_TRAINING = 100


class JunkCounts(Protocol):
    """The store's junk reads and writes (``store/junk_store.py``)."""

    def junk_counts(self, account: str, features: Sequence[str]
                    ) -> tuple[dict[str, tuple[int, int]], tuple[int, int],
                               dict[str, tuple[int, int]], tuple[int, int]]:
        """Own and global counts and totals for ``features``."""
        ...

    async def junk_train(self, account: str, blob_id: bytes, features: Sequence[str],
                         spam: bool) -> str:
        """Train one message."""
        ...

    def junk_totals(self, account: str = "") -> tuple[int, int]:
        """Messages trained ``(spam, ham)`` (``""``: the global model)."""
        ...


@dataclass(frozen=True, slots=True)
class JunkVerdict:
    """One account's verdict on one message."""

    junk: bool
    score: Score
    threshold: float

    def fields(self) -> bytes:
        """``X-Spam-Status`` and ``X-Spam-Score`` (SpamAssassin's conventions,
        scores scaled to 0-10), CRLF-ended."""
        return (f"X-Spam-Status: {self.score.header(self.threshold)}\r\n"
                f"X-Spam-Score: {self.score.value * 10:.1f}\r\n").encode()


class JunkFilter:
    """Scoring and training over the store (see the module docstring)."""

    def __init__(self, store: JunkCounts, settings: JunkSettings) -> None:
        self.store = store
        self.settings = settings
        self._tasks: set[asyncio.Task[None]] = set()

    def trained(self) -> bool:
        """Whether the global model has learnt both kinds yet.  Until then no
        score would mean anything (every message would get 0.5), so mail is
        not scored at all: no features computed, no X-Spam fields."""
        spam, ham = self.store.junk_totals("")
        return spam > 0 and ham > 0

    async def features_of(self, blob: bytes) -> list[str]:
        """The message's features (``junk/features.py``), off the loop when big."""
        if len(blob) >= THREAD_OCTETS:
            return sorted(await asyncio.to_thread(features, blob))
        return sorted(features(blob))

    def verdict(self, account: str, feats: Sequence[str]) -> JunkVerdict:
        """``account``'s verdict on a message with ``feats`` (store reads only)."""
        own, own_totals, glob, glob_totals = self.store.junk_counts(account, feats)
        glob_score = score(feats, _lookup(glob), Totals(*glob_totals))
        n_own = sum(own_totals)
        k = self.settings.min_own_samples
        if n_own >= k and own_totals[0] and own_totals[1]:
            own_score = score(feats, _lookup(own), Totals(*own_totals))
            weight = n_own / (n_own + k)
            value = weight * own_score.value + (1 - weight) * glob_score.value
            result = Score(value, own_score.top)
        else:
            result = glob_score
        return JunkVerdict(result.value >= self.settings.threshold, result,
                           self.settings.threshold)

    async def prepare(self, account: str,
                      messages: Sequence[tuple[bytes, Callable[[], bytes]]],
                      spam: bool) -> Training | None:
        """The training of ``messages`` (``(blob id, a function giving its
        bytes)``) to hand to the IMAP command's write (``Store.transfer``,
        ``Store.store_flags``), features computed (off the loop past
        ``THREAD_OCTETS`` in all); None when the command should use
        ``train_soon`` instead (too many messages, or one cannot be read)."""
        if not messages or len(messages) > MAX_COMMIT_TRAINING:
            return None
        try:
            blobs = [(blob_id, load()) for blob_id, load in messages]
        except Exception:  # expunged meanwhile, a store fault: train after, as before
            return None
        if sum(len(b) for _, b in blobs) >= THREAD_OCTETS:
            feats = await asyncio.to_thread(lambda: [sorted(features(b)) for _, b in blobs])
        else:
            feats = [sorted(features(b)) for _, b in blobs]
        return (account, spam, [(blob_id, f) for (blob_id, _), f in zip(blobs, feats, strict=True)])

    def committed(self, training: Training) -> None:
        """Count and log a training that ``prepare`` made and a write committed."""
        account, spam, items = training
        self._corrected(spam, len(items))
        log.info("junk_trained", account=account, spam=spam, messages=len(items),
                 with_command=True)

    def _corrected(self, spam: bool, n: int) -> None:
        instruments().junk_corrections.labels(
            "false_negative" if spam else "false_positive").inc(n)

    def train_soon(self, account: str, messages: Sequence[tuple[bytes, Callable[[], bytes]]],
                   spam: bool) -> None:
        """Train ``messages`` (``(blob id, a function giving its bytes)``) in
        a task of their own, after the IMAP command's commit (bulk commands,
        see ``prepare``).  A failure is logged (the move itself is done)."""
        self._corrected(spam, len(messages))

        async def run() -> None:
            for blob_id, load in messages:
                try:
                    await self.train(account, blob_id, load(), spam)
                except Exception:  # a message expunged meanwhile, a store fault
                    log.warning("junk_training_failed", account=account, exc_info=True)
        task = asyncio.get_running_loop().create_task(run(), name="junk-training")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """Trainings started by ``train_soon`` and not finished yet."""
        return len(self._tasks)

    async def settle(self) -> None:
        """Wait for the trainings started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def train(self, account: str, blob_id: bytes, blob: bytes, spam: bool) -> str:
        """Train one message for ``account`` (and the global model); returns
        "trained", "retrained" or "unchanged".  Raises server faults."""
        feats = await self.features_of(blob)
        outcome = await self.store.junk_train(account, blob_id, feats, spam)
        log.info("junk_trained", account=account, spam=spam, outcome=outcome,
                 features=len(feats))
        return outcome


def _lookup(counts: dict[str, tuple[int, int]]) -> Callable[[str], tuple[int, int]]:
    return lambda f: counts.get(f, (0, 0))
