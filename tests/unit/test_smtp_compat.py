"""The aiosmtpd private names ``mailserver.smtp.compat`` relies on, against the
installed aiosmtpd: an upgrade that renames or reshapes one fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import aiosmtpd.smtp
import pytest

from mailserver.smtp import compat

ROOT = Path(compat.__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(compat.PINNED))
def test_pinned_private_methods_have_the_expected_parameters(name: str) -> None:
    method = getattr(aiosmtpd.smtp.SMTP, name, None)
    assert method is not None, f"aiosmtpd.smtp.SMTP.{name} is gone"
    params = tuple(inspect.signature(method).parameters)
    assert params[0] == "self"
    assert params[1:] == compat.PINNED[name], f"aiosmtpd.smtp.SMTP.{name}{params}"


@pytest.mark.parametrize("name", compat.PINNED_ATTRIBUTES)
def test_pinned_private_attributes_are_still_aiosmtpds(name: str) -> None:
    """Each private attribute we read or set is one aiosmtpd's own code still uses."""
    source = inspect.getsource(aiosmtpd.smtp.SMTP)
    assert re.search(rf"self\.{name}\b", source), f"aiosmtpd.smtp.SMTP no longer uses {name}"


def test_starttls_is_still_done_the_way_we_rely_on() -> None:
    """``compat.start_tls`` calls aiosmtpd's ``smtp_STARTTLS``: it must still answer 220,
    slide an SSLProtocol under the transport and wait for the handshake."""
    source = inspect.getsource(aiosmtpd.smtp.SMTP.smtp_STARTTLS)
    for needle in ("220 Ready to start TLS", "sslproto.SSLProtocol", "set_protocol",
                   "_original_transport", "await waiter", "TLSSetupException"):
        assert needle in source, needle


def test_private_attributes_set_by_stock_init_are_the_ones_we_set() -> None:
    """The attributes ``SMTP.__init__`` sets (read from its source, no loop needed)
    are all set by ``init_stock``: a new one in an upgrade fails here (and in
    tests/integration/test_smtp_adapter.py, which compares live instances)."""
    stock = set(re.findall(r"self\.(\w+)\s*(?::[^=\n]+)?=(?!=)",
                           inspect.getsource(aiosmtpd.smtp.SMTP.__init__)))
    ours = set(re.findall(r"self\.(\w+)\s*(?::[^=\n]+)?=(?!=)",
                          inspect.getsource(compat.AiosmtpdConnection.init_stock)))
    # Set by aiosmtpd only when its per-command call limit is on; init_stock turns it off.
    assert stock - ours == {"_call_limit_default", "_call_limit_base"}


def test_only_compat_imports_aiosmtpd() -> None:
    importers = sorted(
        str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
        if re.search(r"^\s*(from|import) aiosmtpd", p.read_text(), re.MULTILINE)
    )
    assert importers == ["smtp/compat.py"]


def test_no_private_aiosmtpd_names_outside_compat() -> None:
    """The private names of aiosmtpd we use appear in ``compat.py`` only."""
    private = set(compat.PINNED) | set(compat.PINNED_ATTRIBUTES) | {
        "_AuthMechAttr", "_smtp_methods", "_auth_methods", "_strong_reader",
    }
    pattern = re.compile(r"\.(" + "|".join(sorted(private)) + r")\b")
    offenders = []
    for path in (ROOT / "smtp").glob("*.py"):
        if path.name == "compat.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.name}:{lineno}: {line.strip()}")
    assert offenders == []
