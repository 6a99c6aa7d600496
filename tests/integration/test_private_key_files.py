"""Private keys are written 0600 whatever temporary files were left behind
(``fsutil.write_atomic``, shared by tls.py, dkim/keys.py and daemon.py).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mailserver.fsutil import write_atomic
from mailserver.tls import make_self_signed


def test_tls_key_is_0600_despite_a_stale_loose_temporary_file(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir(mode=0o700)
    # What a crash (or another program) may have left: a world-readable temp file
    # at the name the old writer reused with O_TRUNC, keeping its mode.
    for stale in (tls / ".key.pem.tmp", tls / "key.pem.tmp"):
        stale.write_bytes(b"stale")
        os.chmod(stale, 0o644)
    make_self_signed("mx.example.test", tls / "cert.pem", tls / "key.pem")
    assert stat.S_IMODE((tls / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tls / "cert.pem").stat().st_mode) == 0o644
    assert (tls / "key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_write_atomic_sets_the_exact_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"old")
    os.chmod(target, 0o666)
    old_umask = os.umask(0o022)
    try:
        write_atomic(target, b"new", 0o600)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        write_atomic(target, b"public", 0o644)
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"public"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing-dir" / "x", b"", 0o600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]
