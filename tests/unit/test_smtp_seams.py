"""The seams of issue 10 §3: who may import what (read from the source, no imports run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "mailserver"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _files(*names: str) -> list[Path]:
    out: list[Path] = []
    for name in names:
        path = ROOT / name
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


@pytest.mark.parametrize(
    ("files", "forbidden"),
    [
        (("smtp", "checks"), ("mailserver.store", "mailserver.queue", "mailserver.delivery.local",
                              "mailserver.delivery.route")),
        (("delivery",), ("mailserver.queue", "mailserver.store.store")),
        (("config",), ("mailserver.queue",)),
        (("imap/commands/mailbox.py",), ("mailserver.delivery",)),
        (("protocol/smtp", "checks"), ("asyncio", "aiosmtpd")),
    ],
)
def test_imports_point_one_way(files: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in _files(*files)
        for module in _imports(path)
        if module.startswith(forbidden)
    ]
    assert offenders == []
