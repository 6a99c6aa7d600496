"""Bearer tokens of the admin API (``admin.tokens``) and the HTTP problem
types of our errors (``errors.http_problem``)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from mailserver import errors
from mailserver.admin.tokens import PREFIX, TokenFile, digest, token_name
from mailserver.errors import AlreadyExists, InvalidName, NotFound, http_problem


def test_token_is_shown_once_and_kept_hashed(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path)
    info, token = tokens.create("grafana", read_only=True, now=1000.0)
    assert token.startswith(PREFIX) and len(token) == len(PREFIX) + 43
    assert (info.name, info.read_only, info.created) == ("grafana", True, 1000.0)
    text = tokens.path.read_text()
    assert token not in text and digest(token) in text
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    assert json.loads(text)["tokens"][0]["name"] == "grafana"
    assert tokens.check(token) == info
    assert tokens.check(token + "x") is None
    assert tokens.check("") is None


def test_tokens_differ_names_are_unique(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path)
    _, one = tokens.create("a", read_only=False)
    with pytest.raises(AlreadyExists):
        tokens.create("a", read_only=True)
    _, two = tokens.create("b", read_only=False)
    assert one != two
    assert [t.name for t in tokens.list()] == ["a", "b"]


def test_revoke_is_seen_by_another_reader(tmp_path: Path) -> None:
    """The daemon's reader sees a change made by another (the CLI's) at once."""
    writer, reader = TokenFile(tmp_path), TokenFile(tmp_path)
    assert reader.check("msv1_nothing") is None  # no file yet
    _, token = writer.create("ops", read_only=False)
    assert reader.check(token) is not None
    assert writer.revoke("ops").name == "ops"
    assert reader.check(token) is None
    with pytest.raises(NotFound):
        writer.revoke("ops")


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 65, "é"])
def test_bad_token_names(name: str) -> None:
    with pytest.raises(InvalidName):
        token_name(name)


def _classes(root: type[BaseException]) -> list[type[BaseException]]:
    out = [root]
    for sub in root.__subclasses__():
        out += _classes(sub)
    return out


def test_problem_types_are_distinct_and_stable() -> None:
    """Every error class that names its own problem type has a slug of its own."""
    own = [c.__dict__["http"] for c in _classes(errors.MailserverError) if "http" in c.__dict__]
    slugs = [p.slug for p in own] + [errors.INTERNAL_ERROR.slug]
    assert len(slugs) == len(set(slugs))
    # The published slugs (README: never renamed).
    assert http_problem(errors.AccountNotFound()).type == "/api/v1/problems/account-not-found"
    assert http_problem(errors.AlreadyExists()).status == 409
    assert http_problem(errors.InvalidPassword()).slug == "invalid-password"
    assert http_problem(errors.Unauthorized("x")).status == 401
    assert http_problem(errors.Forbidden("x")).status == 403
    assert http_problem(errors.PreconditionFailed("x")).status == 412
    # A subclass without its own type answers with its parent's.
    assert http_problem(errors.InvalidRequest("x")).slug == "invalid-request"
    # Not ours, or a bare MailserverError ("store is closed"): 500, nothing shown.
    assert http_problem(ValueError()) is errors.INTERNAL_ERROR
    assert http_problem(errors.MailserverError("store is closed")) is errors.INTERNAL_ERROR
