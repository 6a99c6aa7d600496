"""The admin rules on names, passwords and the public host name (pure)."""

from __future__ import annotations

import pytest

from mailserver.admin import policy
from mailserver.errors import ConfigError, InvalidName, InvalidPassword


@pytest.mark.parametrize(("given", "expected"), [
    ("Example.ORG", "example.org"),
    ("example.org.", "example.org"),
    ("  bücher.example ", "xn--bcher-kva.example"),
])
def test_domain_names_are_stored_in_a_labels(given: str, expected: str) -> None:
    assert policy.domain_name(given) == expected


@pytest.mark.parametrize("bad", ["", ".", "a b.example", "x@y.example", "a..b"])
def test_bad_domain_names(bad: str) -> None:
    with pytest.raises(InvalidName):
        policy.domain_name(bad)


def test_account_addresses() -> None:
    assert policy.account_address(" Alice@Bücher.Example ") == "alice@xn--bcher-kva.example"
    for bad in ("no-at-sign", "@example.org", "alice@", "a b@example.org"):
        with pytest.raises(InvalidName, match="invalid"):
            policy.account_address(bad)
    with pytest.raises(InvalidName, match="an address is local@domain"):
        policy.account_address("no-at-sign")


def test_alias_addresses() -> None:
    assert policy.alias_address("@Example.org") == "@example.org"
    assert policy.alias_address("Post@Example.org") == "post@example.org"
    with pytest.raises(InvalidName, match="@domain for a catch-all"):
        policy.alias_address("postmaster")


def test_password_policy() -> None:
    policy.check_password("x" * policy.MIN_PASSWORD_LENGTH)
    policy.check_password("x" * policy.MAX_PASSWORD_LENGTH)
    for bad, why in (("x" * (policy.MIN_PASSWORD_LENGTH - 1), "at least 8"),
                     ("x" * (policy.MAX_PASSWORD_LENGTH + 1), "at most"),
                     ("long enough\n", "NUL, CR or LF"),
                     ("long\0enough", "NUL, CR or LF")):
        with pytest.raises(InvalidPassword, match=why):
            policy.check_password(bad)


@pytest.mark.parametrize(("hostname", "problem"), [
    ("mx.example.org", None),
    ("mx.example.org.", None),
    ("localhost", "not a fully qualified"),
    ("mail", "not a fully qualified"),
    ("localhost.", "not a fully qualified"),
    ("mx.localhost", "never resolves"),
    ("printer.local", "never resolves"),
    ("x.invalid", "never resolves"),
    ("box.home.arpa", "never resolves"),
    ("192.0.2.7", "IP address"),
    ("[2001:db8::1]", "IP address"),
])
def test_public_hostname(hostname: str, problem: str | None) -> None:
    found = policy.public_hostname_problem(hostname)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_check_public_hostname_names_the_file() -> None:
    assert policy.check_public_hostname("mx.example.org.", None) == "mx.example.org"
    with pytest.raises(ConfigError, match=r"hostname 'localhost' \(the built-in configuration\)"):
        policy.check_public_hostname("localhost", None)
    with pytest.raises(ConfigError, match=r"\(/etc/m.toml\)"):
        policy.check_public_hostname("localhost", "/etc/m.toml")
