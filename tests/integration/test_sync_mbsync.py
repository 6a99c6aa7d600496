"""Two-way sync with mbsync (isync), issue #4 §3.

A real mbsync (Debian package ``isync``, installed by ``scripts/test``)
talks to the running server over implicit TLS (``SSLType IMAPS``) and
mirrors alice's account into a Maildir in ``tmp_path``:

1. The server's INBOX holds the corpus twice (296 messages, each with its
   own ``X-Sync-Key`` first line and a pattern of system flags) and a
   ``Lists/dev`` mailbox a few more.  The first sync brings every message
   down byte for byte (line ends folded to LF, as a Maildir holds them)
   with its flags mapped to the Maildir info letters.
2. Flags change and messages are deleted on both sides (server: STORE and
   ``\\Deleted`` + UID EXPUNGE, RFC 3501 §6.4.6, RFC 4315 §2.1; local:
   file renames and removals), new messages appear on both sides (local
   files are APPENDed, RFC 3501 §6.3.11, and found again through
   APPENDUID, RFC 4315 §3).  After the second sync both sides equal the
   model the test computed by itself.
3. A third sync changes nothing.

The certificate mbsync trusts is the server's own self-signed one
(``CertificateFile`` with a host certificate: matched as is, no name check).
"""

from __future__ import annotations

import re
from pathlib import Path

from support.server import USERS, ServerThread, corpus_messages
from support.synctools import (
    Scenario,
    State,
    assert_same,
    drop,
    has_header_end,
    imap_client,
    lf_form,
    maildir_box,
    require_tool,
    run_tool,
    server_state,
    tool_version,
)

ALICE = "alice@example.test"


def write_config(tmp: Path, server: ServerThread) -> Path:
    """An mbsync configuration: the server's IMAPS port, a Maildir in ``tmp``."""
    cert = server.config.data_dir / "tls" / "cert.pem"
    assert cert.is_file(), cert
    conf = tmp / "mbsyncrc"
    conf.write_text(f"""\
IMAPAccount test
Host 127.0.0.1
Port {server.port("imaps")}
User {ALICE}
Pass {USERS[ALICE]}
SSLType IMAPS
SystemCertificates no
CertificateFile {cert}
Timeout 60

IMAPStore remote
Account test

MaildirStore local
Path {tmp}/mail/
Inbox {tmp}/mail/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
Sync All
SyncState *
""")
    (tmp / "mail").mkdir()
    return conf


def strip_tuid(blob: bytes) -> bytes:
    """``blob`` without the ``X-TUID`` line mbsync 1.4 puts at the end of the
    header of every message it writes (its way to find a message again)."""
    return re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", blob, count=1)


def local_state(tmp: Path, mailboxes: list[str]) -> tuple[State, dict[str, dict[str, Path]]]:
    state: State = {}
    paths: dict[str, dict[str, Path]] = {}
    for name in mailboxes:
        state[name], paths[name] = maildir_box(tmp / "mail" / name, strip_tuid)
    return state, paths


def test_mbsync_two_way(server: ServerThread, tmp_path: Path) -> None:
    mbsync = require_tool("mbsync")
    assert tool_version([mbsync, "--version"]).startswith("isync 1.")

    def sync() -> str:
        return run_tool([mbsync, "-c", str(conf), "-V", "sync"], cwd=tmp_path)

    client = imap_client(server.port("imaps"), ALICE, USERS[ALICE])
    try:
        scenario = Scenario(client, corpus_messages(), clean=strip_tuid)
        before, bodies = scenario.fill()
        mailboxes = sorted(before)

        # --- first sync: everything comes down, byte for byte, flags mapped
        conf = write_config(tmp_path, server)
        out = sync()
        # mbsync 1.4 cannot insert its X-TUID line into a message whose
        # header has no end (corpus 023, 024); it skips them: a tool limit.
        headless = {name: {k for k, b in box.items() if not has_header_end(b)}
                    for name, box in bodies.items()}
        assert out.count("has incomplete header; skipping") == len(headless["INBOX"]) == 4, out
        local, paths = local_state(tmp_path, mailboxes)
        assert_same(drop(before, headless), local, "local after first sync")
        for name, box in bodies.items():
            for key, body in box.items():
                if key not in headless[name]:
                    got = strip_tuid(paths[name][key].read_bytes())
                    assert got == lf_form(body), (name, key)

        # --- changes on both sides, then the second sync: both equal the model
        scenario.change_server()
        scenario.change_local(lambda name: tmp_path / "mail" / name, paths)
        sync()
        after_server, after_bodies = server_state(client, clean=strip_tuid)
        after_local, _ = local_state(tmp_path, mailboxes)
        assert_same(scenario.expected, after_server, "server after second sync")
        assert_same(drop(scenario.expected, headless), after_local, "local after second sync")
        for key, blob in scenario.local_new.items():
            # APPENDed with CRLF line ends (RFC 5322 §2.3) and mbsync's X-TUID.
            body = after_bodies["INBOX"][key]
            assert body.count(b"\r\nX-TUID: ") == 1, body
            assert strip_tuid(body) == blob.replace(b"\n", b"\r\n"), key

        # --- third sync: nothing left to do
        sync()
        again_server, _ = server_state(client, clean=strip_tuid)
        again_local, _ = local_state(tmp_path, mailboxes)
        assert_same(after_server, again_server, "server after third sync")
        assert_same(after_local, again_local, "local after third sync")
    finally:
        client.logout()
