"""Two-way sync with offlineimap3, issue #4 §3.

The scenario of ``support.synctools.Scenario`` (also run with mbsync in
test_sync_mbsync.py), with a real offlineimap (Debian ``offlineimap3``)
talking to the server over implicit TLS and mirroring alice's account into
a Maildir in ``tmp_path``:

1. The first sync brings every message down with its flags in the Maildir
   info letters.  offlineimap3 parses each message with Python's email
   package and writes it re-serialised (header spacing, LF line ends), so
   each file is compared with that transformation of BODY[]
   (``offlineimap_form``), byte for byte.
2. After flag changes, deletions (STORE, UID EXPUNGE: RFC 3501 §6.4.6,
   RFC 4315 §2.1) and new messages on both sides, a second sync leaves both
   sides equal to the model the scenario computed; local files are
   APPENDed (RFC 3501 §6.3.11) and found again through APPENDUID
   (RFC 4315 §3).
3. A third sync changes nothing.

offlineimap trusts the server's self-signed certificate by its SHA-256
fingerprint (``cert_fingerprint``), since the certificate names
mx.example.test and the test connects to 127.0.0.1.
"""

from __future__ import annotations

import email.policy
from email.parser import BytesParser
from pathlib import Path

from support.server import USERS, ServerThread, corpus_messages
from support.synctools import (
    Scenario,
    State,
    assert_same,
    cert_fingerprint_sha256,
    imap_client,
    maildir_box,
    require_tool,
    run_tool,
    server_state,
    tool_version,
)

ALICE = "alice@example.test"


def write_config(tmp: Path, server: ServerThread) -> Path:
    """An offlineimap configuration: the IMAPS port, a Maildir in ``tmp``."""
    cert = server.config.data_dir / "tls" / "cert.pem"
    conf = tmp / "offlineimaprc"
    conf.write_text(f"""\
[general]
accounts = test
metadata = {tmp}/meta
maxsyncaccounts = 1

[Account test]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {tmp}/mail
sep = /

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {server.port("imaps")}
ssl = yes
cert_fingerprint = {cert_fingerprint_sha256(cert)}
remoteuser = {ALICE}
remotepass = {USERS[ALICE]}
timeout = 60
maxconnections = 1
""")
    (tmp / "mail").mkdir()
    return conf


#: The policies offlineimap3 (folder/Base.py) parses fetched messages with
#: and writes Maildir files with: it keeps a parsed ``email`` object, not the
#: bytes, so headers come out re-serialised by Python's email package.
_FETCHED = email.policy.default.clone(cte_type="8bit", utf8=True, refold_source="none",
                                      linesep="\r\n")
_MAILDIR = _FETCHED.clone(linesep="\n")


def offlineimap_form(body: bytes) -> bytes:
    """The Maildir file offlineimap3 writes for a message whose BODY[] is ``body``."""
    return BytesParser(policy=_FETCHED).parsebytes(body).as_bytes(policy=_MAILDIR)


def offlineimap_corpus() -> list[Path]:
    """The corpus without its messages that contain NUL: FETCH sends NUL as
    0x80 (RFC 3501 §9; Dovecot does the same), and offlineimap3 cannot
    re-serialise a message with 8-bit octets in a multipart preamble or
    epilogue (``email.generator`` raises UnicodeEncodeError; offlineimap
    reports the message as unprocessable), against any server."""
    return [p for p in corpus_messages() if b"\0" not in p.read_bytes()]


def local_state(tmp: Path, mailboxes: list[str]) -> tuple[State, dict[str, dict[str, Path]]]:
    state: State = {}
    paths: dict[str, dict[str, Path]] = {}
    for name in mailboxes:
        state[name], paths[name] = maildir_box(tmp / "mail" / name)
    return state, paths


def test_offlineimap_two_way(server: ServerThread, tmp_path: Path) -> None:
    offlineimap = require_tool("offlineimap")
    assert tool_version([offlineimap, "--version"]).startswith(("7.", "8."))

    def sync() -> str:
        return run_tool([offlineimap, "-c", str(conf), "-o", "-u", "basic"], cwd=tmp_path)

    client = imap_client(server.port("imaps"), ALICE, USERS[ALICE])
    try:
        scenario = Scenario(client, offlineimap_corpus(), clean=offlineimap_form)
        before, bodies = scenario.fill()
        mailboxes = sorted(before)

        # --- first sync: everything comes down, byte for byte, flags mapped
        conf = write_config(tmp_path, server)
        out = sync()
        local, paths = local_state(tmp_path, mailboxes)
        assert_same(before, local, "local after first sync")
        for name, box in bodies.items():
            for key, body in box.items():
                got = paths[name][key].read_bytes()
                assert got == offlineimap_form(body), (name, key, out[-3000:])

        # --- changes on both sides, then the second sync: both equal the model
        scenario.change_server()
        scenario.change_local(lambda name: tmp_path / "mail" / name, paths)
        sync()
        after_server, after_bodies = server_state(client, clean=offlineimap_form)
        after_local, _ = local_state(tmp_path, mailboxes)
        assert_same(scenario.expected, after_server, "server after second sync")
        assert_same(scenario.expected, after_local, "local after second sync")
        for key, blob in scenario.local_new.items():
            # APPENDed with CRLF line ends (RFC 5322 §2.3).
            assert after_bodies["INBOX"][key] == blob.replace(b"\n", b"\r\n"), key

        # --- third sync: nothing left to do
        sync()
        again_server, _ = server_state(client, clean=offlineimap_form)
        again_local, _ = local_state(tmp_path, mailboxes)
        assert_same(after_server, again_server, "server after third sync")
        assert_same(after_local, again_local, "local after third sync")
    finally:
        client.logout()
