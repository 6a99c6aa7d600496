"""Coverage-guided fuzzing (atheris/libFuzzer) of our parsers, bounded in time
(issue 12 §3).  Not part of the test suite: crashes it finds become tests.

    .venv/bin/pip install -e '.[bench]'          # atheris (wheels for CPython 3.11 x86-64)
    .venv/bin/python bench/fuzz.py --seconds 120                  # every target
    .venv/bin/python bench/fuzz.py --seconds 60 --targets imap,dsn --out /tmp/fz

Targets (each function below says what is an expected refusal; any other
exception, a hang past libFuzzer's ``-timeout``, or an assertion of a
property is a crash):

* ``imap``: the IMAP receiver and command parser (``protocol.imap.receiver``,
  ``parser``, search keys, FETCH items, ...) fed the input in two chunks;
  ``ProtocolSyntaxError`` is a refusal (after a non-fatal one the receiver must
  go on).
* ``smtp``: the SMTP line reader and MAIL/RCPT/BDAT argument parsers
  (``protocol.smtp.command``); ``ProtocolSyntaxError`` is a refusal.
* ``mime``: the MIME tree, BODY/BODYSTRUCTURE, ENVELOPE and search facts
  (``protocol.mime.facts.compute_facts``, without ``analyze``'s safety net),
  the BODY[section] extraction and the search text.  Nothing may raise.
* ``dsn``: the DSN parameters (``protocol.dsn_params``: RET, ENVID, NOTIFY,
  ORCPT, xtext, RFC 3461/6533) with their round trips, and the DSN built
  for a fuzzed message (``queue.dsn.build_dsn``), which must parse back as a
  ``multipart/report``.

Each target runs in a child process for ``--seconds`` (libFuzzer's
``-max_total_time``); after a crash the child is started again until the time
is used up, so one run can report several crashes.  Crash inputs land in
``--out`` (a temp dir by default) as ``<target>-crash-<sha1>``; the summary
prints each with its exception.  Replay one with ``--replay FILE --targets T``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus" / "messages"

# ----------------------------------------------------------------- targets


def imap_target(data: bytes) -> None:
    """Receiver + parser; the first byte picks the chunk split, UTF8=ACCEPT
    mode and small limits, so limit paths are reached too."""
    from mailserver.errors import ProtocolSyntaxError
    from mailserver.protocol.imap.receiver import Receiver
    from mailserver.protocol.imap.types import NEED_DATA

    if not data:
        return
    mode, data = data[0], data[1:]
    r = Receiver(max_line=64 if mode & 1 else 4096, max_literal=32 if mode & 2 else 65536,
                 max_depth=3 if mode & 4 else 64)
    r.utf8 = bool(mode & 8)
    cut = (mode * 7) % (len(data) + 1)
    for chunk in (data[:cut], data[cut:]):
        r.feed(chunk)
        for _ in range(10_000):
            try:
                event = r.next_event()
            except ProtocolSyntaxError as exc:
                if exc.fatal:
                    return
                continue
            if event is NEED_DATA:
                break
    assert r.buffered <= len(data)


def smtp_target(data: bytes) -> None:
    """Line reader + command split + MAIL/RCPT/BDAT arguments."""
    from mailserver.errors import ProtocolSyntaxError
    from mailserver.protocol.smtp import command as c

    if not data:
        return
    mode, data = data[0], data[1:]
    reader = c.CommandReader(max_line=64 if mode & 1 else c.MAX_COMMAND_LINE)
    cut = (mode * 7) % (len(data) + 1)
    for chunk in (data[:cut], data[cut:]):
        reader.feed(chunk)
        for _ in range(10_000):
            try:
                cmd = reader.next_command()
            except ProtocolSyntaxError:
                continue
            if cmd == "NEED_DATA":
                break
            assert isinstance(cmd, c.Command)
            try:
                if cmd.verb == "MAIL":
                    c.parse_mail(cmd.arg)
                elif cmd.verb == "RCPT":
                    c.parse_rcpt(cmd.arg)
                elif cmd.verb == "BDAT":
                    c.parse_bdat(cmd.arg)
            except ProtocolSyntaxError:
                pass
    # Every verb also as a whole argument, whatever the line reader made of it.
    text = data.decode("utf-8", "surrogateescape")
    for parse in (c.parse_mail, c.parse_rcpt, c.parse_bdat):
        try:
            parse(text)
        except ProtocolSyntaxError:
            pass


def mime_target(data: bytes) -> None:
    """Facts (tree, BODY, BODYSTRUCTURE, ENVELOPE, search values), every
    section of the tree, the search text.  Nothing may raise."""
    from mailserver.protocol.mime import facts as f
    from mailserver.protocol.mime import sections, text

    mf = f.compute_facts(data)
    assert mf.body.startswith(b"(") and mf.bodystructure.startswith(b"(")
    assert mf.envelope.startswith(b"(")
    # As the store keeps them: readable, and equal unless a media type,
    # encoding or charset was cut at its 255 octets.
    back = f.MessageFacts.from_bytes(mf.to_bytes())
    if all(len(s.encode()) <= 255 for p in _parts(mf.root)
           for s in (p.media_type, p.encoding, p.charset)):
        assert back == mf
    for path in ((1,), (1, 1), (2,), (1, 2, 1)):
        part = sections.resolve(mf.root, path)
        if part is not None:
            assert 0 <= part.header_start <= part.body_start <= part.end <= len(data)
    text.search_text(data, mf, with_headers=True)


def _parts(part: Any) -> list[Any]:
    return [part] + [q for c in part.children for q in _parts(c)]


def dsn_target(data: bytes) -> None:
    """DSN parameters with their round trips; a built DSN parses back."""
    from mailserver.errors import ProtocolSyntaxError
    from mailserver.protocol import dsn_params as d
    from mailserver.protocol.mime.structure import build_tree
    from mailserver.queue.dsn import DsnRecipient, build_dsn

    s = data.decode("utf-8", "replace")
    tokens = s.split(" ")
    for parse, allowed in ((d.parse_mail, d.MAIL_KEYWORDS), (d.parse_rcpt, d.RCPT_KEYWORDS)):
        mine = [t for t in tokens if t.partition("=")[0].upper() in allowed]
        try:
            parse(mine)
        except ProtocolSyntaxError:
            pass
    assert d.xtext_decode(d.xtext_encode(s)) == s
    for fn in (d.xtext_decode, d.parse_notify, d.parse_orcpt):
        try:
            fn(s)
        except ProtocolSyntaxError:
            pass
    try:
        orcpt = d.parse_orcpt(s)
    except ProtocolSyntaxError:
        orcpt = None
    if orcpt is not None:
        # What goes to the next hop parses there, within RFC 3461's limits.
        for param in d.RcptDsn(orcpt=orcpt).to_params():
            assert d.parse_rcpt([param]).orcpt is not None
    for param in d.MailDsn(envid=s).to_params() if s else ():  # an ENVID has a value
        d.parse_mail([param])
    rcpt = DsnRecipient("bob@example.test", "failed", "5.1.1", diagnostic=s[:300],
                        remote_mta="mx.example.test", orcpt=orcpt)
    msg = build_dsn(reporting_mta="mx.example.test", reverse_path="alice@example.test",
                    recipients=[rcpt], original=data, arrival_date=0.0, now=0.0,
                    return_full=bool(data[:1] == b"F"))
    tree = build_tree(msg)
    assert (tree.mtype, tree.subtype) == ("multipart", "report"), (tree.mtype, tree.subtype)
    assert [(p.mtype, p.subtype) for p in tree.children][:2] == [
        ("text", "plain"), ("message", "delivery-status")]


TARGETS: dict[str, Callable[[bytes], None]] = {
    "imap": imap_target, "smtp": smtp_target, "mime": mime_target, "dsn": dsn_target,
}

SEEDS: dict[str, list[bytes]] = {
    "imap": [
        b"\x00a LOGIN alice secret\r\nb SELECT INBOX\r\n",
        b"\x00a UID SEARCH RETURN (MIN COUNT UPDATE) OR FROM x (UNSEEN MODSEQ 5) SINCE 1-Feb-2024\r\n",
        b"\x00a FETCH 1:* (BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.10> BINARY[1] ENVELOPE)\r\n",
        b"\x00a UID SORT RETURN (PARTIAL -1:-10) (REVERSE DISPLAYFROM ARRIVAL) UTF-8 ALL\r\n",
        b"\x00a APPEND INBOX (\\Seen) \"01-Jan-2024 00:00:00 +0000\" {5+}\r\nhello\r\n",
        b"\x00a APPEND INBOX CATENATE (URL \"/INBOX/;UID=1/;SECTION=1\" TEXT {3+}\r\nabc)\r\n",
        b"\x00a STORE 1,2:4 +FLAGS.SILENT (\\Deleted $Junk) (UNCHANGEDSINCE 7)\r\n",
        b"\x00a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (STATUS (MESSAGES SIZE))\r\n",
        b"\x00a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
        b"\x00a THREAD REFERENCES UTF-8 SUBJECT \"&AOQ-\"\r\nb CANCELUPDATE \"a\"\r\n",
        b"\x00a SETQUOTA \"\" (STORAGE 512)\r\nb ID (\"name\" \"x\")\r\nc ENABLE QRESYNC\r\n",
    ],
    "smtp": [
        b"\x00EHLO x\r\nMAIL FROM:<a@b.test> SIZE=10 BODY=BINARYMIME RET=HDRS ENVID=x+2B\r\n",
        b"\x00RCPT TO:<b@c.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b@c.test\r\nBDAT 10 LAST\r\n",
        b"\x00MAIL FROM:<\"q u\"@[127.0.0.1]> SMTPUTF8 REQUIRETLS AUTH=<>\r\nDATA\r\n",
        b"\x00RCPT TO:<Postmaster>\r\nRSET\r\nQUIT\r\n",
    ],
    "dsn": [
        b"RET=FULL ENVID=QQ+2B NOTIFY=FAILURE ORCPT=rfc822;x+40y",
        b"utf-8;\\x{4E2D}@example.test",
        b"NEVER",
        b"rfc822;bob@example.test",
        b"F\r\nSubject: x\r\n\r\nbody\r\n",
    ],
}


def seeds_for(target: str) -> list[bytes]:
    """The seed inputs: the lists above; for ``mime`` the shared corpus."""
    if target == "mime":
        return [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))] or [
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\na\r\n--x--\r\n"]
    return SEEDS[target]


# ------------------------------------------------------------------ child


def child(target: str, seconds: int, out: Path, replay: str | None) -> None:
    """Run one target under libFuzzer (never returns)."""
    import atheris

    with atheris.instrument_imports(include=["mailserver"]):
        import mailserver.protocol.dsn_params  # noqa: F401
        import mailserver.protocol.imap.receiver  # noqa: F401
        import mailserver.protocol.mime.facts  # noqa: F401
        import mailserver.protocol.mime.text  # noqa: F401
        import mailserver.protocol.smtp.command  # noqa: F401
        import mailserver.queue.dsn  # noqa: F401
    fn = TARGETS[target]
    if replay is not None:
        fn(Path(replay).read_bytes())
        print("no crash")
        sys.exit(0)
    seed_dir = out / f"{target}-seeds"
    work = out / f"{target}-corpus"
    seed_dir.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    for i, seed in enumerate(seeds_for(target)):
        (seed_dir / f"seed-{i}").write_bytes(seed)
    args = [sys.argv[0], str(work), str(seed_dir), f"-max_total_time={seconds}",
            "-timeout=10", "-rss_limit_mb=1024", "-max_len=65536",
            f"-artifact_prefix={out}/{target}-", "-print_final_stats=1"]
    atheris.Setup(args, fn)
    atheris.Fuzz()


# ----------------------------------------------------------------- parent


def run_target(target: str, seconds: int, out: Path) -> list[Path]:
    """Fuzz ``target`` for ``seconds``, restarting after each crash; the
    crash inputs found."""
    deadline = time.monotonic() + seconds
    before = set(out.glob(f"{target}-crash-*")) | set(out.glob(f"{target}-timeout-*"))
    runs = execs = 0
    while (left := int(deadline - time.monotonic())) > 2:
        runs += 1
        proc = subprocess.run(
            [sys.executable, __file__, "--child", target, "--seconds", str(left), "--out", str(out)],
            capture_output=True, text=True, errors="replace", cwd=ROOT, check=False)
        for line in proc.stderr.splitlines():
            if line.startswith("stat::number_of_executed_units:"):
                execs += int(line.split()[-1])
        if proc.returncode == 0:
            break
        if not (set(out.glob(f"{target}-crash-*")) | set(out.glob(f"{target}-timeout-*"))) - before:
            print(proc.stderr[-3000:], file=sys.stderr)
            break  # not a crash of ours (could not start): say so, do not loop
        before |= set(out.glob(f"{target}-crash-*")) | set(out.glob(f"{target}-timeout-*"))
    found = sorted(set(out.glob(f"{target}-crash-*")) | set(out.glob(f"{target}-timeout-*")))
    print(f"{target:5} {seconds:5d} s  {execs:9d} execs  {runs} run(s)  {len(found)} crash(es)")
    return found


def describe(target: str, path: Path) -> str:
    """The exception a crash input raises, in one line."""
    try:
        TARGETS[target](path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - the point is to show it
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        return f"{type(exc).__name__}: {str(exc)[:120]} at {Path(tb.filename).name}:{tb.lineno}"
    return "no exception on replay (a timeout or memory limit?)"


def main() -> int:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=60, help="per target")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--out", type=Path, default=None, help="crash inputs and corpora")
    ap.add_argument("--replay", default=None, help="run one input through --targets")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if a.child:
        child(a.child, a.seconds, a.out, a.replay)
    targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        ap.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if a.replay:
        for t in targets:
            print(t, describe(t, Path(a.replay)))
        return 0
    out = a.out or Path(tempfile.mkdtemp(prefix="fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"crash inputs and corpora in {out}")
    crashes = 0
    for t in targets:
        for path in run_target(t, a.seconds, out):
            crashes += 1
            print(f"  {path.name}: {describe(t, path)}")
    return 1 if crashes else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
