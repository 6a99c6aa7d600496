"""The admin API against its own OpenAPI document: schemathesis generates
requests for every operation from ``/api/v1/openapi.json`` and checks each
answer (status documented, media type, headers, body schema, no 5xx) on a
real server on loopback.

Bounded: a few examples per operation, derandomized (the same requests on
every run), no shrinking deadline.  The server is shared by the module: a
generated create may leave a domain or an alias behind, which later
examples only see as more items in a list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.server import ServerThread, make_config, running_server

from mailserver.config import Listener
from mailserver.http.api.openapi import OPERATIONS

#: Examples per operation: enough to reach each status an operation has,
#: few enough for the whole run to take seconds.
EXAMPLES = 10
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, str]]:
    config = make_config(tmp_path_factory.mktemp("api-schema") / "data")
    http = Listener(name="http", protocol="http")
    with running_server(dataclasses.replace(config, listeners=(*config.listeners, http))) as srv:
        _, token = srv.run(srv.app.services.admin.create_token("schemathesis"))
        yield srv, token


@pytest.fixture(scope="module")
def api_schema(api_server: tuple[ServerThread, str]) -> Any:
    srv, _ = api_server
    base = f"http://127.0.0.1:{srv.port('http')}"
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    schema.config.update(base_url=base)
    return schema


# One test per operation of the document's table (known at collection time);
# schemathesis's own pytest plugin is not used: its lazy loader does not
# work with pytest 9.
# Negative examples (schemathesis breaks the schema on purpose: the answer must
# be a 4xx) only where there is something to break: query parameters or a body.
# An endless event stream (SSE) has no answer to wait for: its own tests cover it
# (tests/integration/test_flow.py).
CASES = [pytest.param(op.operation_id, GenerationMode.POSITIVE, id=f"positive-{op.operation_id}")
         for op in OPERATIONS if not op.stream] + [
    pytest.param(op.operation_id, GenerationMode.NEGATIVE, id=f"negative-{op.operation_id}")
    for op in OPERATIONS if (op.query or op.body) and not op.stream]


@pytest.mark.parametrize(("operation_id", "mode"), CASES)
def test_api_follows_its_document(operation_id: str, mode: GenerationMode, api_schema: Any,
                                  api_server: tuple[ServerThread, str]) -> None:
    _, token = api_server
    operation = api_schema.find_operation_by_id(operation_id)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case: Case) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

    run()
