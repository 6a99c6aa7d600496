"""The junk filter as the server uses it (issue #16 §1): scoring each local
copy of mail that came in on an ``smtp`` listener, and training from what
users do in IMAP.

Scoring (``verdict``): the account's own model once it has
``min_own_samples`` trained messages, blended with the global model (every
account's feedback) with weight own / (own + min_own_samples); below that,
the global model alone (cold start).  The features are computed once per
message and every recipient's counts read and scored, in a thread from
``INLINE_OCTETS`` (``verdicts``).

Training: a message moved or copied into Junk trains as spam, moved out of
Junk into anything but Trash as ham, ``$Junk``/``$NotJunk`` set by STORE
likewise; training it the other way takes the first training back
(``store/junk_store.py``).  The IMAP command's own write carries one
journal entry per message (``prepare``), so the user's verdict is durable
with the move in one synced commit; ``apply`` then adds the messages'
features to the counts, in batches, right after (and at start, for what a
crash left): ``store/junk_writes.py`` says why not in the move's commit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from mailserver.config import JunkSettings
from mailserver.junk.features import features
from mailserver.junk.model import Score, Totals, score
from mailserver.metrics import instruments
from mailserver.store.junk_writes import DAY_FIELDS, Applied, JournalEntry, Training

log = structlog.get_logger("mailserver.junk")

#: Messages at least this big get their features computed in a thread
#: (``features_of``: the admin's ``junk test`` and training).
THREAD_OCTETS = 8 * 1024
#: Messages at least this big are scored (features and every recipient's
#: verdict) in a thread: bench/junk_latency.py puts features + one score at
#: 0.65 ms for 4 KB and ~1 ms for 8 KB, and the counts' store reads come on
#: top; 1 ms is the issue's bound for work on the event loop.
INLINE_OCTETS = 2 * 1024
#: The A/B arms (``JunkVerdict.arm``).
CONTROL, CANDIDATE, OWN = "control", "candidate", "own"
#: Journaled trainings applied per write (``apply``).
JOURNAL_BATCH = 50
#: Seconds between a command's commit and applying its journal entries.
JOURNAL_DELAY = 1.0


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

    def junk_threshold(self, account: str) -> float | None:
        """The account's own threshold (None: the configured one)."""
        ...

    def junk_days(self, days: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """Counts of use per UTC day (``junk_writes.DAY_FIELDS``)."""
        ...

    async def junk_add_day(self, day: str, counts: tuple[int, ...]) -> None:
        """Add to a day's counts of use."""
        ...

    def junk_journal(self, limit: int) -> list[JournalEntry]:
        """The oldest trainings from IMAP not yet applied."""
        ...

    async def junk_apply(self, day: str, items: list[Applied]) -> int:
        """Apply journal entries."""
        ...

    def get_blob(self, blob_id: bytes) -> bytes:
        """A message's octets by blob id."""
        ...


@dataclass(frozen=True, slots=True)
class JunkVerdict:
    """One account's verdict on one message."""

    junk: bool
    score: Score
    threshold: float
    #: Which threshold applied: "control" (the configured one), "candidate"
    #: (the A/B comparison's) or "own" (the account's own).
    arm: str = CONTROL
    #: What the candidate threshold says of this message (None: no comparison runs).
    candidate_junk: bool | None = None

    def fields(self) -> bytes:
        """``X-Spam-Status`` and ``X-Spam-Score`` (SpamAssassin's conventions,
        scores scaled to 0-10), CRLF-ended."""
        return (f"X-Spam-Status: {self.score.header(self.threshold)}\r\n"
                f"X-Spam-Score: {self.score.value * 10:.1f}\r\n").encode()


#: ``DAY_FIELDS`` positions.
_SCORED, _JUNK, _FP, _FN, _AGREED, _TRAINED = range(len(DAY_FIELDS))


def arm_of(account: str, share: float) -> str:
    """The A/B arm of ``account``: "candidate" for a stable ``share`` (0-1) of
    addresses (BLAKE2b of the lower-cased address, so every worker and every
    restart agrees), "control" otherwise."""
    if share <= 0:
        return CONTROL
    digest = hashlib.blake2b(account.lower().encode(), digest_size=8).digest()
    return CANDIDATE if int.from_bytes(digest, "big") < share * 2.0 ** 64 else CONTROL


def today(now: float | None = None) -> str:
    """The UTC day of ``now`` (POSIX seconds; None: now) as YYYY-MM-DD."""
    return dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class Drift:
    """Today's user corrections per scored message (``rate``) against the 7
    UTC days before (``baseline``; None without scored mail then), today's
    ``corrections``, and the share of trainings the model already agreed
    with over the 8 days (``agreement``; None without trainings)."""

    rate: float
    baseline: float | None
    corrections: int
    agreement: float | None

    def drifting(self, factor: float, min_corrections: int) -> bool:
        """Has the rate reached ``factor`` × the baseline, on enough corrections?"""
        return (self.corrections >= min_corrections and self.baseline is not None
                and self.baseline > 0 and self.rate >= factor * self.baseline)


def drift_of(days: dict[str, tuple[int, ...]], day: str) -> Drift:
    """``Drift`` of ``day`` from per-day counts (``Store.junk_days`` of it and
    the 7 days before)."""
    d = dt.date.fromisoformat(day)
    now = days.get(day, (0,) * len(DAY_FIELDS))
    before = [days[k] for i in range(1, 8)
              if (k := (d - dt.timedelta(days=i)).isoformat()) in days]
    corrections = now[_FP] + now[_FN]
    rate = corrections / now[_SCORED] if now[_SCORED] else 0.0
    scored_before = sum(c[_SCORED] for c in before)
    baseline = (sum(c[_FP] + c[_FN] for c in before) / scored_before
                if scored_before else None)
    trained = sum(c[_TRAINED] for c in [now, *before])
    agreed = sum(c[_AGREED] for c in [now, *before])
    return Drift(rate, baseline, corrections, agreed / trained if trained else None)


class JunkFilter:
    """Scoring and training over the store (see the module docstring).

    One per process: the counts of use it gathers (``record``, trainings
    after a command) are added to the store's per-day counts by ``flush``,
    which the app calls every few seconds (statistics: a crash loses at most
    the last few seconds of them, never mail or a training)."""

    def __init__(self, store: JunkCounts, settings: JunkSettings) -> None:
        self.store = store
        self.settings = settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[str, list[int]] = {}
        self._warned: str | None = None  # the day the drift warning was logged
        self._again = False  # more was journaled while ``apply_soon``'s task ran

    def trained(self) -> bool:
        """Whether the global model has learnt both kinds yet.  Until then no
        score would mean anything (every message would get 0.5), so mail is
        not scored at all: no features computed, no X-Spam fields."""
        spam, ham = self.store.junk_totals("")
        return spam > 0 and ham > 0

    async def verdicts(self, accounts: Sequence[str], blob: bytes) -> list[JunkVerdict]:
        """Each of ``accounts``' verdict on the message ``blob``: features once,
        then the counts read and scored per account; off the event loop from
        ``INLINE_OCTETS`` (features + one score is ~1 ms at 8 KB,
        bench/RESULTS-junk.md; the issue's bound for work on the loop)."""
        def work() -> list[JunkVerdict]:
            feats = sorted(features(blob))
            return [self.verdict(a, feats) for a in accounts]

        if len(blob) >= INLINE_OCTETS:
            return await asyncio.to_thread(work)
        return work()

    async def features_of(self, blob: bytes) -> list[str]:
        """The message's features (``junk/features.py``), off the loop when big."""
        if len(blob) >= THREAD_OCTETS:
            return sorted(await asyncio.to_thread(features, blob))
        return sorted(features(blob))

    def threshold_for(self, account: str) -> tuple[float, str]:
        """The threshold that applies to ``account`` and its arm (see
        ``JunkVerdict.arm``)."""
        own = self.store.junk_threshold(account)
        if own is not None:
            return own, OWN
        cfg = self.settings
        if cfg.candidate_threshold > 0 and arm_of(account, cfg.candidate_share) == CANDIDATE:
            return cfg.candidate_threshold, CANDIDATE
        return cfg.threshold, CONTROL

    def verdict(self, account: str, feats: Sequence[str]) -> JunkVerdict:
        """``account``'s verdict on a message with ``feats`` (store reads only)."""
        result = self._score(account, feats)
        threshold, arm = self.threshold_for(account)
        candidate = self.settings.candidate_threshold
        return JunkVerdict(result.value >= threshold, result, threshold, arm,
                           result.value >= candidate if candidate > 0 else None)

    def record(self, v: JunkVerdict) -> None:
        """Count a verdict applied to a delivered copy: metrics by arm (and the
        candidate threshold's verdict on the same message), today's counts."""
        m = instruments()
        m.junk_verdicts.labels("junk" if v.junk else "ham", v.arm).inc()
        if v.candidate_junk is not None:
            m.junk_candidate_verdicts.labels("junk" if v.candidate_junk else "ham").inc()
        self._count(_SCORED, 1)
        if v.junk:
            self._count(_JUNK, 1)

    def _count(self, field: int, n: int, day: str | None = None) -> None:
        counts = self._pending.setdefault(day or today(), [0] * len(DAY_FIELDS))
        counts[field] += n

    async def flush(self) -> None:
        """Add the counts gathered since the last flush to the store's days.
        Raises server faults (the counts are kept for the next flush)."""
        pending, self._pending = self._pending, {}
        for day, counts in sorted(pending.items()):
            try:
                await self.store.junk_add_day(day, tuple(counts))
            except BaseException:
                for d, c in pending.items():  # keep what was not written
                    if d >= day:
                        mine = self._pending.setdefault(d, [0] * len(DAY_FIELDS))
                        for i, n in enumerate(c):
                            mine[i] += n
                raise

    def drift(self, now: float | None = None) -> Drift:
        """Today's ``Drift`` from the store's per-day counts."""
        day = today(now)
        d = dt.date.fromisoformat(day)
        days = [(d - dt.timedelta(days=i)).isoformat() for i in range(8)]
        return drift_of(self.store.junk_days(days), day)

    def check_drift(self, now: float | None = None) -> Drift:
        """``drift``, with a ``junk_drift`` warning in the log (once a day) when
        the correction rate reached ``drift_factor`` × its 7-day baseline."""
        d = self.drift(now)
        cfg = self.settings
        day = today(now)
        if d.drifting(cfg.drift_factor, cfg.drift_min_corrections) and self._warned != day:
            self._warned = day
            log.warning("junk_drift", rate=round(d.rate, 5), baseline=round(d.baseline or 0, 5),
                        corrections=d.corrections, factor=cfg.drift_factor,
                        agreement=None if d.agreement is None else round(d.agreement, 3))
        return d

    def _score(self, account: str, feats: Sequence[str]) -> Score:
        own, own_totals, glob, glob_totals = self.store.junk_counts(account, feats)
        glob_score = score(feats, _lookup(glob), Totals(*glob_totals))
        n_own = sum(own_totals)
        k = self.settings.min_own_samples
        if n_own >= k and own_totals[0] and own_totals[1]:
            own_score = score(feats, _lookup(own), Totals(*own_totals))
            weight = n_own / (n_own + k)
            value = weight * own_score.value + (1 - weight) * glob_score.value
            return Score(value, own_score.top)
        return glob_score

    def _agrees(self, account: str, feats: Sequence[str], spam: bool) -> bool:
        """Did the model, before this training, already put the message on the
        user's side (the agreement figure of the drift metrics)?  Only asked
        once the global model has learnt both kinds (``trained``)."""
        threshold, _ = self.threshold_for(account)
        return (self._score(account, feats).value >= threshold) == spam

    def prepare(self, account: str, blob_ids: Sequence[bytes], spam: bool) -> Training | None:
        """The training of the messages ``blob_ids`` as spam or ham, to hand to
        the IMAP command's write (``Store.transfer``, ``Store.store_flags``):
        it commits their journal entries and the day's correction counts with
        the command; ``apply`` adds them to the model.  None: nothing to train."""
        if not blob_ids:
            return None
        counts = [0] * len(DAY_FIELDS)
        counts[_FN if spam else _FP] = len(blob_ids)
        return (account, spam, list(blob_ids), (today(), tuple(counts)))

    def committed(self, training: Training) -> None:
        """After the command's commit: count the corrections, log, and start
        applying the journal (``apply_soon``)."""
        account, spam, blob_ids, _ = training
        self._corrected(account, spam, len(blob_ids))
        log.info("junk_trained", account=account, spam=spam, messages=len(blob_ids),
                 with_command=True)
        self.apply_soon()

    def _corrected(self, account: str, spam: bool, n: int) -> None:
        _, arm = self.threshold_for(account)
        instruments().junk_corrections.labels(
            "false_negative" if spam else "false_positive", arm).inc(n)

    def apply_soon(self) -> None:
        """Apply the training journal in a task of its own, ``JOURNAL_DELAY``
        seconds from now, unless one runs (it keeps going until the journal
        is empty)."""
        if self._tasks:
            self._again = True
            return

        async def run() -> None:
            # A moment first: trainings of the next commands join the batch,
            # and a run of moves does not queue behind a training's commit.
            await asyncio.sleep(JOURNAL_DELAY)
            while True:
                self._again = False
                try:
                    while await self.apply():
                        pass
                except Exception:  # a store fault: the entries stay for the next try
                    log.warning("junk_journal_failed", exc_info=True)
                    return
                if not self._again:
                    return
        task = asyncio.get_running_loop().create_task(run(), name="junk-training")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def apply(self, limit: int = JOURNAL_BATCH) -> int:
        """Add up to ``limit`` journaled trainings to the counts in one write:
        features computed off the loop, and whether the model already agreed
        with the user (scored before the batch is applied).  Returns how many
        entries were taken up (0: the journal is empty), whether applied here
        or, in a race, by another process first (each entry counts once:
        ``junk_writes.apply_journal``).  Raises server faults."""
        entries = self.store.junk_journal(limit)
        if not entries:
            return 0
        loaded: list[tuple[bytes, str, bytes, bool, bytes | None]] = []
        for key, account, blob_id, spam in entries:
            try:
                blob: bytes | None = self.store.get_blob(blob_id)
            except Exception:  # expunged before it was applied: nothing to learn
                blob = None
            loaded.append((key, account, blob_id, spam, blob))
        scored = self.trained()

        def work() -> list[Applied]:
            out: list[Applied] = []
            for key, account, blob_id, spam, blob in loaded:
                if blob is None:
                    out.append((key, account, blob_id, spam, None, False))
                    continue
                feats = sorted(features(blob))
                agrees = scored and self._agrees(account, feats, spam)
                out.append((key, account, blob_id, spam, feats, agrees))
            return out

        items = await asyncio.to_thread(work)
        n = await self.store.junk_apply(today(), items)
        if n:
            log.info("junk_journal_applied", trainings=n)
        return len(entries)

    @property
    def pending(self) -> int:
        """Journal tasks running (``apply_soon``)."""
        return len(self._tasks)

    async def settle(self) -> None:
        """Wait for the trainings started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def train(self, account: str, blob_id: bytes, blob: bytes, spam: bool) -> str:
        """Train one message for ``account`` (and the global model); returns
        "trained", "retrained" or "unchanged".  Raises server faults."""
        feats = await self.features_of(blob)
        self._count(_TRAINED, 1)
        self._count(_AGREED, int(self.trained() and self._agrees(account, feats, spam)))
        outcome = await self.store.junk_train(account, blob_id, feats, spam)
        log.info("junk_trained", account=account, spam=spam, outcome=outcome,
                 features=len(feats))
        return outcome


def _lookup(counts: dict[str, tuple[int, int]]) -> Callable[[str], tuple[int, int]]:
    return lambda f: counts.get(f, (0, 0))
