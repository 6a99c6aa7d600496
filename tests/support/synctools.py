"""Helpers for the two-way sync tests with real sync tools (mbsync, offlineimap3).

Both tools mirror an IMAP account into a local Maildir (the layout of
https://cr.yp.to/proto/maildir.html: ``cur/``, ``new/``, ``tmp/``; flags in
the file name after ``:2,``).  The tests compare the two sides through one
shape, a *state*: ``{mailbox: {key: Msg}}``, where ``key`` is the value of
the ``X-Sync-Key`` header that every test message carries on its first line
(so the corpus can be appended twice and a message keeps its identity
whatever UID or file name it gets).

The tools are installed by ``scripts/test`` (Debian packages ``isync`` and
``offlineimap3``); a missing tool fails the test, it never skips it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from imapclient import IMAPClient

#: Maildir info letters <-> IMAP system flags (the Maildir spec's "2," info;
#: the same table mbsync and offlineimap use).  Keywords are not compared:
#: isync 1.4 and offlineimap3 do not sync them by default.
MAILDIR_FLAGS = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
SYNCED_FLAGS = frozenset(MAILDIR_FLAGS.values())

KEY_HEADER = b"X-Sync-Key: "
_KEY_RE = re.compile(rb"\AX-Sync-Key: ([A-Za-z0-9._-]+)\r?\n")

#: Per-run limit of one sync tool invocation, in seconds.
TOOL_TIMEOUT = 120


@dataclass(frozen=True, slots=True)
class Msg:
    """One message as seen on either side: its flags and a hash of its bytes
    with line ends folded to LF (Maildir files use LF, IMAP uses CRLF;
    both tools convert between them)."""

    flags: frozenset[str]
    digest: str


def require_tool(name: str) -> str:
    """Path of the executable ``name``; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/test (it installs isync and "
                    f"offlineimap3 with apt-get) or `apt-get install isync offlineimap3`")
    return path


def tool_version(argv: list[str]) -> str:
    """First line the tool prints for its version option."""
    done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    return (done.stdout or done.stderr).decode(errors="replace").strip().splitlines()[0]


def run_tool(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = TOOL_TIMEOUT) -> str:
    """Run a sync tool; return its combined output.

    Raises AssertionError carrying the whole output when it exits non-zero or
    runs past ``timeout`` seconds, so a failing test shows the protocol trace.
    """
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
                "LANG": "C.UTF-8", **(env or {})}
    try:
        done = subprocess.run(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace")
        raise AssertionError(f"{argv[0]} timed out after {timeout} s:\n{out[-20000:]}") from None
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise AssertionError(f"{argv} exited {done.returncode}:\n{out[-20000:]}")
    return out


def keyed(key: str, blob: bytes) -> bytes:
    """``blob`` with an ``X-Sync-Key`` header line put in front of it (CRLF)."""
    return KEY_HEADER + key.encode() + b"\r\n" + blob


def key_of(blob: bytes) -> str:
    """The ``X-Sync-Key`` value on the first line of ``blob``."""
    m = _KEY_RE.match(blob)
    assert m is not None, f"message without X-Sync-Key first line: {blob[:120]!r}"
    return m.group(1).decode()


def crlf_form(blob: bytes) -> bytes:
    """What imapclient (through ``imaplib.IMAP4.append``) sends for ``blob``:
    every CRLF, bare CR and bare LF made a CRLF (RFC 5322 §2.3 line ends)."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", blob)


def fetched_form(blob: bytes) -> bytes:
    """What FETCH BODY[] returns for ``blob`` APPENDed by imapclient: its
    ``crlf_form`` with NUL octets as 0x80 (a literal may not carry NUL,
    RFC 3501 §9; the server substitutes them as Dovecot does)."""
    return crlf_form(blob).replace(b"\0", b"\x80")


def lf_form(blob: bytes) -> bytes:
    """``blob`` with every CRLF folded to LF: what a Maildir copy of an IMAP
    message holds (mbsync and offlineimap store LF line ends)."""
    return blob.replace(b"\r\n", b"\n")


def has_header_end(blob: bytes) -> bool:
    """Whether ``blob`` has the empty line that ends its header (RFC 5322 §2.1)."""
    return re.search(rb"\r?\n\r?\n", blob) is not None


def digest(blob: bytes) -> str:
    return hashlib.sha256(lf_form(blob)).hexdigest()


def imap_client(port: int, user: str, password: str) -> IMAPClient:
    """An imapclient session over implicit TLS (the test server's self-signed cert)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    client = IMAPClient("127.0.0.1", port=port, ssl=True, ssl_context=ctx, timeout=60)
    client.login(user, password)
    return client


def server_state(client: IMAPClient, mailboxes: list[str] | None = None,
                 clean: Callable[[bytes], bytes] = lambda b: b,
                 ) -> tuple[dict[str, dict[str, Msg]], dict[str, dict[str, bytes]]]:
    """Every message of ``mailboxes`` (default: all selectable ones) on the
    server: ``({mailbox: {key: Msg}}, {mailbox: {key: BODY[]}})``; ``Msg``
    digests are of ``clean(BODY[])`` (see ``maildir_box``).

    Fetches with BODY.PEEK so reading does not set ``\\Seen`` (RFC 3501 §6.4.5).
    A key seen twice in one mailbox fails: the tools must not duplicate.
    """
    if mailboxes is None:
        mailboxes = [name for flags, _delim, name in client.list_folders()
                     if b"\\Noselect" not in flags and b"\\NonExistent" not in flags]
    state: dict[str, dict[str, Msg]] = {}
    bodies: dict[str, dict[str, bytes]] = {}
    for name in mailboxes:
        client.select_folder(name, readonly=True)
        box: dict[str, Msg] = {}
        raw: dict[str, bytes] = {}
        uids = client.search("ALL")
        for start in range(0, len(uids), 100):
            chunk = uids[start:start + 100]
            data = client.fetch(chunk, ["FLAGS", "BODY.PEEK[]"])
            for uid in chunk:
                body = data[uid][b"BODY[]"]
                flags = frozenset(f.decode() for f in data[uid][b"FLAGS"]) & SYNCED_FLAGS
                key = key_of(body)
                assert key not in box, f"{name}: key {key} twice on the server"
                box[key] = Msg(flags, digest(clean(body)))
                raw[key] = body
        state[name] = box
        bodies[name] = raw
        client.unselect_folder()
    return state, bodies


def maildir_flags(filename: str, info_sep: str = ":") -> frozenset[str]:
    """IMAP flags from a Maildir file name's ``:2,FLAGS`` info part."""
    _, sep, info = filename.rpartition(info_sep + "2,")
    if not sep:
        return frozenset()
    return frozenset(MAILDIR_FLAGS[c] for c in info if c in MAILDIR_FLAGS)


def maildir_files(folder: Path) -> list[Path]:
    """Message files of one Maildir folder (``new/`` and ``cur/``)."""
    return sorted(p for sub in ("new", "cur") for p in (folder / sub).iterdir() if p.is_file())


def maildir_box(folder: Path, clean: Callable[[bytes], bytes] = lambda b: b
                ) -> tuple[dict[str, Msg], dict[str, Path]]:
    """``({key: Msg}, {key: file})`` for one Maildir folder; ``clean`` undoes
    what a tool adds to the files it writes (mbsync's ``X-TUID`` line)."""
    box: dict[str, Msg] = {}
    paths: dict[str, Path] = {}
    for path in maildir_files(folder):
        blob = clean(path.read_bytes())
        key = key_of(blob)
        assert key not in box, f"{folder}: key {key} twice ({paths.get(key)}, {path})"
        box[key] = Msg(maildir_flags(path.name), digest(blob))
        paths[key] = path
    return box, paths


def set_maildir_flags(path: Path, flags: frozenset[str]) -> Path:
    """Rename a Maildir file (moving it to ``cur/``) so its info carries ``flags``;
    returns the new path.  What a mail reader does when the user flags mail."""
    base = path.name.split(":2,")[0]
    letters = "".join(sorted(c for c, f in MAILDIR_FLAGS.items() if f in flags))
    target = path.parent.parent / "cur" / f"{base}:2,{letters}"
    path.rename(target)
    return target


def add_maildir_message(folder: Path, name: str, blob: bytes, flags: str = "") -> Path:
    """Deliver ``blob`` into a Maildir folder the way a local MUA saves a draft:
    written in ``tmp/``, then renamed into ``cur/`` (with ``flags``) or ``new/``."""
    tmp = folder / "tmp" / name
    tmp.write_bytes(blob)
    target = folder / ("cur" if flags else "new") / (f"{name}:2,{flags}" if flags else name)
    tmp.rename(target)
    return target


def new_local_message(key: str, subject: str) -> bytes:
    """A small message written locally (LF line ends, as a Maildir holds it)."""
    return (f"X-Sync-Key: {key}\nFrom: Alice <alice@example.test>\nTo: bob@example.test\n"
            f"Subject: {subject}\nMessage-ID: <{key}@local.test>\n"
            f"Date: Mon, 01 Jan 2024 10:00:00 +0000\n\nwritten locally: {key}\n").encode()


def cert_fingerprint_sha256(cert_pem: Path) -> str:
    """Lower-case hex SHA-256 of the DER form of a PEM certificate."""
    der = ssl.PEM_cert_to_DER_cert(cert_pem.read_text())
    return hashlib.sha256(der).hexdigest()


# ------------------------------------------------------------------ the shared scenario

State = dict[str, dict[str, Msg]]


def assert_same(expected: State, actual: State, side: str) -> None:
    """Compare two states mailbox by mailbox, reporting only the differences."""
    assert sorted(actual) == sorted(expected), side
    for name, box in expected.items():
        got = actual[name]
        missing = sorted(set(box) - set(got))
        extra = sorted(set(got) - set(box))
        changed = {k: (box[k], got[k]) for k in box.keys() & got.keys() if box[k] != got[k]}
        assert not (missing or extra or changed), (
            f"{side} {name}: missing {missing[:10]} extra {extra[:10]} "
            f"differs {dict(list(changed.items())[:5])}")


def drop(state: State, gone: dict[str, set[str]]) -> State:
    """``state`` without the keys in ``gone`` (per mailbox)."""
    return {name: {k: m for k, m in box.items() if k not in gone.get(name, set())}
            for name, box in state.items()}


def initial_flags(i: int) -> list[bytes]:
    """A spread of system flags over the corpus copies (index ``i`` from 1)."""
    flags = []
    for every, flag in ((3, b"\\Seen"), (5, b"\\Flagged"), (7, b"\\Answered"), (11, b"\\Draft")):
        if i % every == 0:
            flags.append(flag)
    return flags


def server_uids(client: IMAPClient, mailbox: str, keys: list[str]) -> list[int]:
    """Selects ``mailbox``; the UIDs of the messages whose X-Sync-Key is in ``keys``."""
    client.select_folder(mailbox)
    wanted = set(keys)
    uids = []
    data = client.fetch(client.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (X-Sync-Key)]"])
    for uid, item in data.items():
        (header,) = (v for k, v in item.items() if k.startswith(b"BODY[HEADER"))
        if key_of(header) in wanted:
            uids.append(uid)
    assert len(uids) == len(wanted), (mailbox, len(uids), len(wanted))
    return uids


class Scenario:
    """The two-way sync scenario both tool tests run, and its model.

    ``fill`` puts the corpus twice into INBOX (keys ``c1-NNN``, ``c2-NNN``)
    and twelve messages into ``Lists/dev``; ``change_server`` and
    ``change_local`` change flags, delete and add messages on each side,
    on disjoint sets of messages (no conflicts: each tool resolves those
    its own way).  ``expected`` is what both sides must hold after the
    next sync, computed here and not read from either side.
    """

    def __init__(self, client: IMAPClient, corpus: list[Path],
                 clean: Callable[[bytes], bytes] = lambda b: b) -> None:
        """``clean``: applied to every server message before hashing (see
        ``server_state``), so the model matches what the tool writes."""
        self.client = client
        self.corpus = corpus
        self.clean = clean
        self.expected: State = {}
        self.local_new: dict[str, bytes] = {}

    def fill(self) -> tuple[State, dict[str, dict[str, bytes]]]:
        """APPEND the messages; return ``server_state`` right after."""
        sent: dict[str, dict[str, bytes]] = {"INBOX": {}, "Lists/dev": {}}
        i = 0
        for copy in (1, 2):
            for path in self.corpus:
                i += 1
                blob = keyed(f"c{copy}-{path.name[:3]}", path.read_bytes())
                self.client.append("INBOX", blob, flags=initial_flags(i))
                sent["INBOX"][key_of(blob)] = blob
        self.client.create_folder("Lists/dev")
        for path in self.corpus[:12]:
            blob = keyed(f"dev-{path.name[:3]}", path.read_bytes())
            self.client.append("Lists/dev", blob, flags=[b"\\Seen"])
            sent["Lists/dev"][key_of(blob)] = blob
        state, bodies = server_state(self.client, clean=self.clean)
        for name, box in sent.items():
            # BODY[] is exactly what APPEND sent (RFC 3501 §6.3.11, §6.4.5).
            wrong = sorted(k for k, blob in box.items() if bodies[name].get(k) != fetched_form(blob))
            assert not wrong, f"{name}: BODY[] differs from the APPENDed bytes: {wrong}"
        self.expected = {name: dict(box) for name, box in state.items()}
        self.keys = sorted(state["INBOX"])  # c1-001 ... c1-148, c2-001 ... c2-148
        return state, bodies

    def _reflag(self, key: str, add: set[str], remove: set[str]) -> frozenset[str]:
        old = self.expected["INBOX"][key]
        flags = (old.flags | add) - remove
        self.expected["INBOX"][key] = Msg(frozenset(flags), old.digest)
        return flags

    def change_server(self) -> None:
        """STORE flags (RFC 3501 §6.4.6), UID EXPUNGE (RFC 4315 §2.1), EXPUNGE, APPEND."""
        client, keys, inbox = self.client, self.keys, self.expected["INBOX"]
        for sel, add, remove in ((keys[0:20], {"\\Flagged"}, set()),
                                 (keys[20:40], {"\\Seen", "\\Answered"}, set()),
                                 (keys[40:60], set(), {"\\Seen", "\\Flagged"})):
            uids = server_uids(client, "INBOX", sel)
            if add:
                client.add_flags(uids, sorted(add))
            if remove:
                client.remove_flags(uids, sorted(remove))
            for key in sel:
                self._reflag(key, add, remove)
        uids = server_uids(client, "INBOX", keys[60:75])
        client.add_flags(uids, [b"\\Deleted"])
        client.uid_expunge(uids)
        for key in keys[60:75]:
            del inbox[key]
        for n in (1, 2):
            blob = keyed(f"srv-new-{n}", self.corpus[n].read_bytes())
            flags = {"\\Flagged"} if n == 1 else set()
            client.append("INBOX", blob, flags=sorted(flags))
            inbox[f"srv-new-{n}"] = Msg(frozenset(flags), digest(self.clean(fetched_form(blob))))
        dev_deleted = sorted(self.expected["Lists/dev"])[0]
        uids = server_uids(client, "Lists/dev", [dev_deleted])
        client.add_flags(uids, [b"\\Deleted"])
        client.expunge()
        del self.expected["Lists/dev"][dev_deleted]
        client.unselect_folder()

    def change_local(self, folder: Callable[[str], Path],
                     paths: dict[str, dict[str, Path]]) -> None:
        """Rename files' flags, remove files, add files in ``new/`` and ``cur/``,
        on messages ``change_server`` left alone.  ``folder(mailbox)`` is the
        Maildir folder of a mailbox, ``paths`` the files from ``maildir_box``."""
        keys, inbox, lpaths = self.keys, self.expected["INBOX"], paths["INBOX"]
        for key in keys[100:120]:
            set_maildir_flags(lpaths[key], self._reflag(key, {"\\Flagged", "\\Seen"}, set()))
        for key in keys[120:140]:
            set_maildir_flags(lpaths[key], self._reflag(key, set(), {"\\Seen", "\\Answered"}))
        for key in keys[140:155]:
            lpaths[key].unlink()
            del inbox[key]
        for n, flags in ((1, ""), (2, ""), (3, "S")):
            key = f"loc-new-{n}"
            blob = new_local_message(key, f"local {n}")
            add_maildir_message(folder("INBOX"), f"local{n}.test", blob, flags)
            inbox[key] = Msg(frozenset({"\\Seen"}) if flags else frozenset(), digest(blob))
            self.local_new[key] = blob
        blob = new_local_message("dev-local", "to the list")
        add_maildir_message(folder("Lists/dev"), "devlocal.test", blob)
        self.expected["Lists/dev"]["dev-local"] = Msg(frozenset(), digest(blob))
