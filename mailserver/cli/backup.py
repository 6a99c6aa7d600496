"""``mailserver backup DIR | verify [DIR] | restore DIR``: argument parsing
and printing; the work is the admin service's (``mailserver/admin/backup.py``)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from mailserver.cli.common import PROG, admin_config, load_config, with_admin


def _size(octets: int) -> str:
    value = float(octets)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{octets} B"  # not reached


def cmd_backup(args: argparse.Namespace) -> int:
    """``mailserver backup DIR``: online backup; prints files, size and time."""
    config = admin_config(args)
    report = with_admin(config, lambda admin: admin.backup(args.dir))
    print(f"backup of {config.data_dir} written to {report.path}: {report.files} files, "
          f"{_size(report.size)} in {report.seconds:.1f} s")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``mailserver verify [DIR]``: exit 0 when consistent, 1 on damage."""
    from mailserver.admin import verify

    path = args.dir if args.dir is not None else admin_config(args).data_dir
    report = asyncio.run(verify(path))
    kind = "backup" if report.is_backup else "store"
    counts = ", ".join(f"{v} {k}" for k, v in report.store.counts.items())
    print(f"{kind} {report.path}: {counts}")
    for problem in report.manifest_problems:
        print(f"  manifest: {problem}")
    for finding in report.store.findings:
        print(f"  {finding.kind}: {finding.detail}")
    if report.store.total > len(report.store.findings):
        print(f"  ... and {report.store.total - len(report.store.findings)} more")
    if report.ok:
        print("no damage found")
        return 0
    print(f"{report.store.total + len(report.manifest_problems)} problems found")
    return 1


def cmd_restore(args: argparse.Namespace) -> int:
    """``mailserver restore DIR``: into the configured (empty) data directory."""
    from mailserver.admin import restore

    config = load_config(args)
    report = asyncio.run(restore(config, args.dir))
    print(f"restored {report.files} files, {_size(report.size)} into {report.data_dir} "
          f"in {report.seconds:.1f} s")
    if report.config_copy is not None:
        print(f"the backed-up configuration is {report.config_copy}: put it in place "
              f"if this machine needs it")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add ``backup``, ``verify`` and ``restore`` to ``sub``."""
    p = sub.add_parser("backup", parents=[common],
                       help="copy the store (a consistent snapshot, while the daemon runs), "
                       "configuration and keys into DIR, with a manifest")
    p.add_argument("dir", type=Path, metavar="DIR", help="missing or empty directory")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("verify", parents=[common],
                       help="check a store or a backup for damage (exit 1 when damaged)")
    p.add_argument("dir", type=Path, nargs="?", metavar="DIR",
                   help="data directory or backup (default: the configured data directory)")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("restore", parents=[common],
                       help=f"restore a backup into an empty data directory "
                       f"(see '{PROG} backup')")
    p.add_argument("dir", type=Path, metavar="DIR", help="a backup directory")
    p.set_defaults(func=cmd_restore)
