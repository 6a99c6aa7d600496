"""The junk filter in the server (issue #16 §1): mail from the MX is scored
for each recipient once the model has learnt both kinds; at or above the
threshold it lands in Junk with $Junk; X-Spam-Status/X-Spam-Score on every
scored copy; users train it with real IMAP MOVE, COPY and STORE; retraining
undoes; the counts persist in the store."""

from __future__ import annotations

import imaplib
import random
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.server import USERS, ServerThread, make_config, running_server

from mailserver.junk.features import features

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
    # Trained in the command's own commit: counted once its OK is sent, with
    # no training task left behind.
    assert srv.app.services.junk.pending == 0
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
    assert run_cli("junk", "reset", ALICE, "-c", conf).returncode == 0
    assert "0 spam, 0 ham trained; global model: 30 spam" in run_cli(
        "junk", "stats", ALICE, "-c", conf).stdout
    assert "no account" in run_cli("junk", "stats", "bob@example.test", "-c", conf).stderr
