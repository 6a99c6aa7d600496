"""Versioned, forward-only schema migrations of the PostgreSQL store (issue #17 §2).

Each ``Migration`` is one transaction of SQL with a version number (1, 2, ...
in order, never reused, never edited once released) and a phase:

* ``expand``: only adds (tables, nullable columns, indexes built
  ``CONCURRENTLY`` in a migration of their own, functions). Nodes of the
  previous release keep working on an expanded schema, so a rolling upgrade
  migrates first and then replaces nodes one by one.
* ``contract``: removes what no release still in service reads. A contract
  migration ships at least one release after the expand that replaced what it
  removes, and ``compatible_from`` moves past the releases that need it.

``migrate`` takes a session advisory lock (``LOCK_KEY``), so nodes started
together apply each migration once; ``pending`` and the dry run list what
would run. ``check`` is what a node asks at start: the database must be at
least at ``REQUIRED`` (the schema this code reads and writes) and must not
have been contracted past what this code needs (``compatible_from`` of the
newest applied migration at most ``LATEST``).

UID and MODSEQ allocation (§2: "never repeats and never goes back under
concurrent writers on several nodes"): by **row lock on the mailbox row**,
``allocate_uids(mailbox, n)`` (an ``UPDATE ... RETURNING`` that takes the
row's lock until the caller's transaction ends), not by a sequence per
mailbox. Why: a sequence hands out numbers outside the transaction, so a
rolled-back delivery leaves a gap (allowed) but a committed UID can become
visible after a larger one committed by another node (a client that saw
UIDNEXT 12 would then get 11: RFC 3501 §2.3.1.1 forbids that);
the row lock orders the transactions that add to one mailbox, which is the
order IMAP needs, and costs one lock per mailbox, not per message. MODSEQ is
allocated the same way (``highestmodseq``, RFC 7162 §3.1.2 needs it strictly
increasing per mailbox).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: ``pg_advisory_lock`` key that serialises migration runs across nodes
#: ("mailsrv" in ASCII).
LOCK_KEY = 0x6D61696C737276


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: ``version`` (1, 2, ...), ``name``, ``phase``
    ("expand" or "contract"), ``sql`` (run in one transaction), and
    ``compatible_from``: the oldest schema version whose code still runs once
    this migration is applied (an expand keeps the previous one's)."""

    version: int
    name: str
    phase: str
    sql: str
    compatible_from: int = 1


_V1 = """
CREATE TABLE domains (
    name        text PRIMARY KEY CHECK (name = lower(name))
);
CREATE TABLE accounts (
    address       text PRIMARY KEY CHECK (address = lower(address)),
    domain        text NOT NULL REFERENCES domains (name),
    password_hash text NOT NULL,
    scram         bytea,
    quota         bigint NOT NULL DEFAULT 0,   -- octets, 0: none
    disabled      boolean NOT NULL DEFAULT false,
    created       timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE aliases (
    address     text PRIMARY KEY CHECK (address = lower(address)),
    targets     text[] NOT NULL
);
-- One row per mailbox; its lock orders UID and MODSEQ allocation (module doc).
-- The counters are kept by the write that changes them (issue #13 §3).
CREATE TABLE mailboxes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account       text NOT NULL REFERENCES accounts (address) ON DELETE CASCADE,
    name          text NOT NULL,
    uidvalidity   bigint NOT NULL,
    uidnext       bigint NOT NULL DEFAULT 1 CHECK (uidnext >= 1),
    highestmodseq bigint NOT NULL DEFAULT 1 CHECK (highestmodseq >= 1),
    special_use   text,
    subscribed    boolean NOT NULL DEFAULT true,
    messages      bigint NOT NULL DEFAULT 0,
    unseen        bigint NOT NULL DEFAULT 0,
    deleted       bigint NOT NULL DEFAULT 0,
    size          bigint NOT NULL DEFAULT 0,
    recent_uid    bigint NOT NULL DEFAULT 0,    -- the \\Recent boundary (RFC 3501 §2.3.2)
    UNIQUE (account, name)
);
-- Content-addressed message blobs (SHA-256), counted references; the octets
-- live here (location 'db') or in the object store (location 's3').
CREATE TABLE blobs (
    id          bytea PRIMARY KEY CHECK (length(id) = 32),
    size        bigint NOT NULL,
    refs        bigint NOT NULL CHECK (refs >= 0),
    location    text NOT NULL CHECK (location IN ('db', 's3')),
    data        bytea
);
CREATE TABLE messages (
    mailbox_id    bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid           bigint NOT NULL,
    modseq        bigint NOT NULL,
    blob_id       bytea NOT NULL REFERENCES blobs (id),
    flags         text[] NOT NULL DEFAULT '{}',
    internal_date timestamptz NOT NULL,
    tz_offset     integer NOT NULL DEFAULT 0,   -- minutes east of UTC
    size          bigint NOT NULL,
    prefix        bytea NOT NULL DEFAULT '',    -- trace fields added on delivery
    facts         bytea,                        -- the MIME facts (BODYSTRUCTURE, ENVELOPE)
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
-- The flag index of issue #13 §3: flag SEARCH and FETCH FLAGS by index.
CREATE INDEX messages_unseen ON messages (mailbox_id, uid) WHERE NOT ('\\Seen' = ANY (flags));
CREATE TABLE expunged (                        -- QRESYNC (RFC 7162 §3.2.5)
    mailbox_id  bigint NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid         bigint NOT NULL,
    modseq      bigint NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
-- The outbound queue; a node leases a message (SELECT ... FOR UPDATE SKIP
-- LOCKED sets lease_owner/lease_until); an expired lease frees it.
CREATE TABLE queue (
    id            text PRIMARY KEY,
    record        bytea NOT NULL,
    blob_id       bytea NOT NULL REFERENCES blobs (id),
    next_attempt  double precision NOT NULL,
    lease_owner   text,
    lease_until   double precision
);
CREATE INDEX queue_due ON queue (next_attempt);
-- Shared limit counters and mail-flow aggregates (issue #11 §3, #14).
CREATE TABLE counters (
    name        text NOT NULL,
    window_start double precision NOT NULL,
    value       double precision NOT NULL,
    PRIMARY KEY (name, window_start)
);
-- The junk classifier (issue #16): counts per account ('' = global), marks,
-- thresholds, the training journal and per-day counts of use.
CREATE TABLE junk_counts (
    account     text NOT NULL,
    feature     text NOT NULL,
    spam        integer NOT NULL DEFAULT 0,
    ham         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (account, feature)
);
CREATE TABLE junk_marks (
    account     text NOT NULL,
    blob_id     bytea NOT NULL,
    spam        boolean NOT NULL,
    PRIMARY KEY (account, blob_id)
);
CREATE TABLE junk_thresholds (
    account     text PRIMARY KEY,
    threshold   double precision NOT NULL CHECK (threshold > 0 AND threshold <= 1)
);
CREATE TABLE junk_journal (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account     text NOT NULL,
    blob_id     bytea NOT NULL,
    spam        boolean NOT NULL
);
CREATE TABLE junk_days (
    day         date PRIMARY KEY,
    counts      integer[] NOT NULL
);

-- allocate_uids(mailbox, n): n new UIDs and one new MODSEQ for a write that
-- adds n messages, under the mailbox row's lock (held to the caller's commit).
CREATE FUNCTION allocate_uids(mbox bigint, n bigint,
                              OUT first_uid bigint, OUT modseq bigint)
LANGUAGE sql AS $$
    UPDATE mailboxes
       SET uidnext = uidnext + n, highestmodseq = highestmodseq + 1
     WHERE id = mbox
    RETURNING uidnext - n, highestmodseq
$$;
-- next_modseq(mailbox): the MODSEQ of a write that changes flags or expunges.
CREATE FUNCTION next_modseq(mbox bigint) RETURNS bigint
LANGUAGE sql AS $$
    UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = mbox
    RETURNING highestmodseq
$$;
"""

# Whom an account has sent to: the first-time recipient limit (issue #11 §3).
_V2 = """
CREATE TABLE sent_to (
    account     text NOT NULL REFERENCES accounts (address) ON DELETE CASCADE,
    recipient   text NOT NULL,
    PRIMARY KEY (account, recipient)
);
"""

# Mailboxes as IMAP has them (RFC 3501 §6.3): hierarchy levels left by a
# DELETE (noselect), subscriptions that outlive their mailbox (§6.3.6,
# RFC 5258 §3.1), and UIDVALIDITYs that only ever grow (§2.3.1.1).
_V3 = """
ALTER TABLE mailboxes ADD COLUMN noselect boolean NOT NULL DEFAULT false;
-- A blob's messages (its facts, and which messages share it).
CREATE INDEX messages_blob ON messages (blob_id);
CREATE TABLE gone_subscriptions (
    account     text NOT NULL REFERENCES accounts (address) ON DELETE CASCADE,
    name        text NOT NULL,
    PRIMARY KEY (account, name)
);
CREATE TABLE last_uidvalidity (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    value       bigint NOT NULL
);
INSERT INTO last_uidvalidity VALUES (true, coalesce((SELECT max(uidvalidity) FROM mailboxes), 0));
-- new_uidvalidity(): above every value handed out before, seeded with the clock.
CREATE FUNCTION new_uidvalidity() RETURNS bigint
LANGUAGE sql AS $$
    UPDATE last_uidvalidity
       SET value = greatest(value + 1, extract(epoch FROM now())::bigint)
    RETURNING value
$$;
"""

# Secrets every node must share (the SRS key: a bounce to an address one node
# rewrote may reach another).
_V4 = """
CREATE TABLE node_secrets (
    name        text PRIMARY KEY,
    value       bytea NOT NULL
);
"""

#: Every migration, in order.  Append only.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", "expand", _V1),
    Migration(2, "sent_to", "expand", _V2),
    Migration(3, "mailbox levels, gone subscriptions, UIDVALIDITY", "expand", _V3),
    Migration(4, "node_secrets", "expand", _V4),
)
#: The newest schema version this code knows.
LATEST = MIGRATIONS[-1].version
#: The schema version this code needs at least.
REQUIRED = 4


class SchemaError(Exception):
    """The database's schema does not fit this code (``check``)."""


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What ``status`` finds: ``applied`` versions, in order, and the
    ``compatible_from`` of the newest (0 with none applied)."""

    applied: tuple[int, ...]
    compatible_from: int

    @property
    def version(self) -> int:
        """The newest applied version (0: an empty database)."""
        return self.applied[-1] if self.applied else 0


_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version         integer PRIMARY KEY,
    name            text NOT NULL,
    phase           text NOT NULL,
    compatible_from integer NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now()
)
"""


async def status(conn: Any) -> SchemaState:
    """The schema state of the database ``conn`` (an asyncpg connection)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return SchemaState((), 0)
    rows = await conn.fetch("SELECT version, compatible_from FROM schema_migrations "
                            "ORDER BY version")
    return SchemaState(tuple(int(r["version"]) for r in rows),
                       int(rows[-1]["compatible_from"]) if rows else 0)


def pending(state: SchemaState, migrations: Sequence[Migration] = MIGRATIONS
            ) -> list[Migration]:
    """The migrations ``state`` lacks, in order."""
    done = set(state.applied)
    return [m for m in migrations if m.version not in done]


async def migrate(conn: Any, *, dry_run: bool = False,
                  migrations: Sequence[Migration] = MIGRATIONS) -> list[Migration]:
    """Apply what is pending, each migration in a transaction of its own, under
    the advisory lock (nodes started together apply each one once).  Returns
    what was applied (with ``dry_run``: what would be, nothing changed).
    Raises SchemaError when the database has a version this code does not
    know (a newer release migrated it), asyncpg errors from the SQL."""
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        state = await status(conn)
        known = {m.version for m in migrations}
        unknown = [v for v in state.applied if v not in known]
        if unknown:
            raise SchemaError(f"the database has schema version(s) {unknown} that this "
                              f"release does not know (it knows 1-{migrations[-1].version})")
        todo = pending(state, migrations)
        if dry_run:
            return todo
        if todo:
            await conn.execute(_TABLE)
        for m in todo:
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, phase, compatible_from) "
                    "VALUES ($1, $2, $3, $4)", m.version, m.name, m.phase, m.compatible_from)
        return todo
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


def check(state: SchemaState, *, required: int = REQUIRED, latest: int = LATEST) -> None:
    """Can this code run on a database in ``state``?  Raises SchemaError saying
    what to do: migrate first (behind ``required``), or upgrade this node (the
    schema was contracted past ``latest``)."""
    if state.version < required:
        raise SchemaError(f"the database schema is at version {state.version}, this "
                          f"release needs {required}: run `mailserver db migrate`")
    if state.compatible_from > latest:
        raise SchemaError(f"the database schema (version {state.version}) no longer "
                          f"supports releases before schema {state.compatible_from}; "
                          f"this node knows {latest}: upgrade it")
