"""The junk filter in the server (issue #16 §1): mail from the MX is scored
for each recipient once the model has learnt both kinds; at or above the
threshold it lands in Junk with $Junk; X-Spam-Status/X-Spam-Score on every
scored copy; users train it with real IMAP MOVE, COPY and STORE; retraining
undoes; the counts persist in the store."""

from __future__ import annotations

import dataclasses
import imaplib
import random
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.server import USERS, ServerThread, make_config, running_server

from mailserver.junk.features import features
from mailserver.junk.filter import arm_of, drift_of, today
from mailserver.store import junk_writes
from mailserver.store.junk_writes import DAY_FIELDS

ALICE = "alice@example.test"
SPAM_WORDS = "viagra casino winner prize cheap offer unsubscribe million bitcoin urgent".split()
HAM_WORDS = "meeting agenda review patch release minutes draft schedule budget lunch".split()


def message(kind: str, rng: random.Random) -> bytes:
    words = SPAM_WORDS if kind == "spam" else HAM_WORDS
    body = " ".join(rng.choice(words) for _ in range(40))
    return (f"From: someone@{kind}.example\r\nTo: {ALICE}\r\nSubject: "
            f"{' '.join(rng.choice(words) for _ in range(3))}\r\n\r\n{body}\r\n").encode()


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerThread]:
    with running_server(make_config(tmp_path / "data")) as s:
        yield s


def deliver(srv: ServerThread, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as c:
        c.sendmail("x@sender.example", [ALICE], data)


def box(srv: ServerThread, name: str) -> list[bytes]:
    mb = srv.store.get_mailbox(ALICE, name)
    return [r.prefix + srv.store.get_blob(r.blob_id) for r in srv.store.list_messages(mb.id)]


def test_trained_by_imap_then_scores_new_mail(srv: ServerThread) -> None:
    rng = random.Random(3)
    for kind in ["spam", "ham"] * 8:
        deliver(srv, message(kind, rng))
    assert all(b"X-Spam-Status" not in m for m in box(srv, "INBOX"))  # untrained: unscored
    imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
    imap.login(ALICE, USERS[ALICE])
    imap.select("INBOX")
    typ, data = imap.uid("SEARCH", "FROM", "spam.example")
    spam_uids = data[0].split()
    assert typ == "OK" and len(spam_uids) == 8
    assert imap.uid("MOVE", b",".join(spam_uids[:6]), "Junk")[0] == "OK"  # trains spam
    assert imap.uid("COPY", spam_uids[6], "Junk")[0] == "OK"
    typ, data = imap.uid("SEARCH", "FROM", "ham.example")
    ham_uids = data[0].split()
    assert imap.uid("STORE", b",".join(ham_uids), "+FLAGS", "($NotJunk)")[0] == "OK"
    # Journaled in each command's own commit, applied to the counts right after.
    srv.run(srv.app.services.junk.settle())
    assert srv.store.junk_journal(100) == []
    assert srv.store.junk_totals(ALICE) == (7, 8) and srv.store.junk_totals() == (7, 8)
    # New mail is scored: spam to Junk with $Junk, ham to INBOX, both with the fields.
    deliver(srv, message("spam", rng))
    deliver(srv, message("ham", rng))
    junk = box(srv, "Junk")
    assert b"X-Spam-Status: Yes, score=" in junk[-1] and b"required=8.0" in junk[-1]
    assert b"X-Spam-Score: " in junk[-1]
    inbox = box(srv, "INBOX")
    assert b"X-Spam-Status: No, score=" in inbox[-1]
    imap.select("Junk")
    typ, data = imap.uid("SEARCH", "KEYWORD", "$Junk")
    assert typ == "OK" and data[0]
    # Moving a trained spam out of Junk (not to Trash) retrains it as ham:
    # the first training is taken back, nothing counted twice.
    typ, data = imap.uid("SEARCH", "NOT", "KEYWORD", "$Junk")
    first = data[0].split()[0]  # one of the messages moved in above
    assert imap.uid("MOVE", first, "INBOX")[0] == "OK"
    srv.run(srv.app.services.junk.settle())
    assert srv.store.junk_totals(ALICE) == (6, 9)
    imap.logout()


def test_retraining_undoes_exactly(srv: ServerThread) -> None:
    feats = sorted(features(message("spam", random.Random(1))))
    blob_id = b"\x01" * 32
    store = srv.store
    assert srv.run(store.junk_train(ALICE, blob_id, feats, True)) == "trained"
    assert srv.run(store.junk_train(ALICE, blob_id, feats, True)) == "unchanged"
    own, totals, glob, gtotals = store.junk_counts(ALICE, feats)
    assert totals == (1, 0) and gtotals == (1, 0) and all(v == (1, 0) for v in own.values())
    assert srv.run(store.junk_train(ALICE, blob_id, feats, False)) == "retrained"
    own, totals, _, _ = store.junk_counts(ALICE, feats)
    assert totals == (0, 1) and all(v == (0, 1) for v in own.values())
    assert srv.run(store.junk_reset(ALICE)) > 0
    assert store.junk_totals(ALICE) == (0, 0) and store.junk_totals() == (0, 1)


def test_junk_commands(tmp_path: Path) -> None:
    from support.daemon import run_cli

    conf = tmp_path / "mailserver.toml"
    conf.write_text('data_dir = "data"\ndomains = ["example.test"]\n', encoding="utf-8")
    assert run_cli("init", "-c", conf).returncode == 0
    assert run_cli("user", "add", ALICE, "--password-stdin", "-c", conf,
                   stdin="alice-secret-1\n").returncode == 0
    rng = random.Random(5)
    for kind in ("spam", "ham"):
        with (tmp_path / f"{kind}.mbox").open("wb") as f:
            for _ in range(30):
                f.write(b"From x@y Mon Feb  3 10:11:12 2025\n"
                        + message(kind, rng).replace(b"\r\n", b"\n") + b"\n")
    out = run_cli("junk", "train", ALICE, "--spam", tmp_path / "spam.mbox", "--ham",
                  tmp_path / "ham.mbox", "-c", conf)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"trained 30 spam and 30 ham message(s) for {ALICE}"
    stats = run_cli("junk", "stats", ALICE, "-c", conf).stdout
    assert "30 spam, 30 ham trained; global model: 30 spam, 30 ham" in stats
    (tmp_path / "test.eml").write_bytes(message("spam", rng))
    tested = run_cli("junk", "test", ALICE, tmp_path / "test.eml", "-c", conf)
    assert tested.returncode == 0 and tested.stdout.startswith("X-Spam-Status: Yes, score=")
    assert "w:" in tested.stdout  # the deciding features
    assert "threshold 0.8 (control)" in stats
    own = run_cli("junk", "threshold", ALICE, "0.95", "-c", conf)
    assert own.returncode == 0 and own.stdout.strip() == f"{ALICE}: junk threshold 0.95 (own)"
    loose = run_cli("junk", "test", ALICE, tmp_path / "test.eml", "-c", conf).stdout
    assert "required=9.5" in loose
    bad = run_cli("junk", "threshold", ALICE, "1.5", "-c", conf)
    assert bad.returncode != 0 and "threshold" in bad.stderr
    back = run_cli("junk", "threshold", ALICE, "--reset", "-c", conf)
    assert back.stdout.strip() == f"{ALICE}: junk threshold 0.8 (control)"
    assert run_cli("junk", "reset", ALICE, "-c", conf).returncode == 0
    assert "0 spam, 0 ham trained; global model: 30 spam" in run_cli(
        "junk", "stats", ALICE, "-c", conf).stdout
    assert "no account" in run_cli("junk", "stats", "bob@example.test", "-c", conf).stderr


def _trained(srv: ServerThread, rng: random.Random) -> None:
    for kind in ("spam", "ham"):
        for i in range(10):
            data = message(kind, rng)
            srv.run(srv.app.services.junk.train(ALICE, bytes([i, kind == "spam"]) * 16, data,
                                                kind == "spam"))


def test_thresholds_by_account_and_candidate(tmp_path: Path) -> None:
    # A/B: every account (share 1.0) in the candidate arm, whose stricter
    # threshold (0.3) sends a half-spammy message (score ~0.55) to Junk where
    # the configured 0.8 would not; an account's own threshold wins over both.
    config = make_config(tmp_path / "data")
    config = dataclasses.replace(config, junk=dataclasses.replace(
        config.junk, candidate_threshold=0.3, candidate_share=1.0))
    rng = random.Random(11)
    mixed = random.Random(24)
    body = " ".join([mixed.choice(SPAM_WORDS) for _ in range(24)]
                    + [mixed.choice(HAM_WORDS) for _ in range(16)])
    grey = (f"From: someone@mixed.example\r\nTo: {ALICE}\r\nSubject: hello\r\n\r\n"
            f"{body}\r\n").encode()
    with running_server(config) as srv:
        _trained(srv, rng)
        junk = srv.app.services.junk
        assert junk.threshold_for(ALICE) == (0.3, "candidate")
        v = junk.verdict(ALICE, sorted(features(grey)))
        assert 0.3 <= v.score.value < 0.8 and v.candidate_junk and v.arm == "candidate"
        deliver(srv, grey)
        (caught,) = box(srv, "Junk")
        assert b"X-Spam-Status: Yes" in caught and b"required=3.0" in caught
        srv.run(srv.store.junk_set_threshold(ALICE, 0.9))
        assert junk.threshold_for(ALICE) == (0.9, "own")
        deliver(srv, grey)
        (got,) = box(srv, "INBOX")
        assert b"X-Spam-Status: No" in got and b"required=9.0" in got
        # The day's counts of use reach the store at the next flush.
        srv.run(junk.flush())
        (counts,) = srv.store.junk_days([today()]).values()
        assert dict(zip(DAY_FIELDS, counts, strict=True))["scored"] == 2
    assert arm_of(ALICE, 0.0) == "control" and arm_of(ALICE, 1.0) == "candidate"
    shares = [arm_of(f"user{i}@example.test", 0.2) for i in range(2000)]
    assert 300 < shares.count("candidate") < 500  # about a fifth, stable by address


def test_corrections_are_counted_with_the_move(srv: ServerThread) -> None:
    rng = random.Random(12)
    _trained(srv, rng)
    srv.run(srv.app.services.junk.flush())
    before = srv.store.junk_days([today()]).get(today(), (0,) * len(DAY_FIELDS))
    deliver(srv, message("spam", rng))
    deliver(srv, message("ham", rng))
    imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
    imap.login(ALICE, USERS[ALICE])
    imap.select("INBOX")
    typ, data = imap.uid("SEARCH", "ALL")
    (ham_uid,) = data[0].split()
    assert imap.uid("MOVE", ham_uid, "Junk")[0] == "OK"  # a (wrong) user correction
    imap.logout()
    # The correction is counted in the move's own commit; the training when
    # the journal is applied.
    srv.run(srv.app.services.junk.settle())
    after = dict(zip(DAY_FIELDS, srv.store.junk_days([today()])[today()], strict=True))
    old = dict(zip(DAY_FIELDS, before, strict=True))
    assert after["false_negative"] == old["false_negative"] + 1
    assert after["trained"] == old["trained"] + 1
    assert after["agreed"] == old["agreed"]  # the model had called it ham


def test_drift_against_the_7_day_baseline() -> None:
    day = "2026-03-10"

    def counts(scored: int, fp: int, fn: int, agreed: int = 0, trained: int = 0
               ) -> tuple[int, ...]:
        return (scored, 0, fp, fn, agreed, trained)

    week = {f"2026-03-0{i}": counts(1000, 5, 5, 8, 10) for i in range(3, 10)}
    calm = drift_of({**week, day: counts(500, 3, 2)}, day)
    assert calm.baseline == pytest.approx(0.01) and calm.rate == pytest.approx(0.01)
    assert not calm.drifting(2.0, 5)
    rough = drift_of({**week, day: counts(500, 15, 10)}, day)
    assert rough.rate == pytest.approx(0.05) and rough.drifting(2.0, 20)
    assert not rough.drifting(2.0, 26)  # too few corrections yet today
    assert rough.agreement == pytest.approx(56 / 70)
    fresh = drift_of({day: counts(10, 5, 5)}, day)
    assert fresh.baseline is None and not fresh.drifting(2.0, 1)  # nothing to compare with


def test_journal_and_threshold_survive_a_restart(tmp_path: Path) -> None:
    # What a MOVE committed (its journal entry) but a crash kept from the
    # counts is applied when the server starts again.
    config = make_config(tmp_path / "data")
    rng = random.Random(13)
    spam = message("spam", rng)
    with running_server(config) as srv:
        deliver(srv, spam)
        (rec,) = srv.store.list_messages(srv.store.get_mailbox(ALICE, "INBOX").id)
        # The move's journal entry, written as the MOVE's commit writes it,
        # without the apply that follows a command (as if it crashed there).
        srv.run(srv.store._writer.submit(junk_writes.journal, (
            ALICE, True, [rec.blob_id], (today(), (0,) * len(DAY_FIELDS)))))
        assert len(srv.store.junk_journal(10)) == 1
        srv.run(srv.store.junk_set_threshold(ALICE, 0.7))
    with running_server(config, users={}) as srv:
        assert srv.app.services.junk.threshold_for(ALICE) == (0.7, "own")  # kept too
        srv.run(srv.app.services.junk.settle())
        assert srv.store.junk_journal(10) == []
        assert srv.store.junk_totals(ALICE) == (1, 0)
        assert srv.store.junk_trained_as(ALICE, rec.blob_id) is True
