"""A client of the admin API (``/api/v1``) for tests: urllib, JSON in and out."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    """What one request got back."""

    status: int
    headers: dict[str, str]
    body: Any  # parsed JSON, or None for an empty body

    @property
    def problem_type(self) -> str:
        """The problem's ``type`` (checks it is a problem response)."""
        assert self.headers["Content-Type"] == "application/problem+json", self.headers
        assert self.body["status"] == self.status
        return str(self.body["type"]).removeprefix("/api/v1/problems/")


class ApiClient:
    """Requests to ``http://127.0.0.1:<port>`` with an optional bearer token."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def with_token(self, token: str | None) -> ApiClient:
        """The same server, another token."""
        return ApiClient(int(self.base.rpartition(":")[2]), token)

    def call(self, method: str, path: str, body: Any = None, *,
             headers: dict[str, str] | None = None, raw: bytes | None = None,
             content_type: str = "application/json") -> Reply:
        """``method path`` (``path`` from ``/api/v1/...`` or a ``next`` link)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                status, hdrs, payload = r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as err:
            status, hdrs, payload = err.code, dict(err.headers), err.read()
        return Reply(status, hdrs, json.loads(payload) if payload else None)

    def get(self, path: str, **kw: Any) -> Reply:
        """GET."""
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        """POST a JSON body."""
        return self.call("POST", path, body, **kw)

    def all_items(self, path: str) -> list[Any]:
        """Every item of a list, following ``next`` links."""
        items: list[Any] = []
        url: str | None = path
        while url is not None:
            reply = self.get(url)
            assert reply.status == 200, reply.body
            items += reply.body["items"]
            url = reply.body["next"]
        return items
