"""Property-based fuzzing of the HTTP API from the committed OpenAPI document.

For every operation of ``openapi/openapi.json``, requests are generated from its schema, both
valid ones (positive) and ones that break it (negative), and sent to a real server process that
demands API keys. Each answer must be no 5xx, have a status, content type, headers and body that
the document declares, refuse data that breaks the schema with a 4xx, and an operation that
declares a key must refuse a request without one. ``GRADSERVE_FUZZ_EXAMPLES`` sets the examples
per operation and mode (default 90: about 3,000 requests in all).
"""

from __future__ import annotations

import os
from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, ignored_auth,
                                               negative_data_rejection,
                                               response_headers_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from gradserve.repository import ModelRepository
from hardening_kit import bearer, key_entries, tiny_model, rss_kib
from live import LiveServer, copy_demo_repository

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
EXAMPLES = int(os.environ.get("GRADSERVE_FUZZ_EXAMPLES", "90"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection,
          ignored_auth]
SCHEMA = schemathesis.openapi.from_path(SPEC)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
# Invalid requests need something to break: a parameter, a header or a body.
PAIRS = [(op, mode) for op in OPERATIONS for mode in GenerationMode
         if mode is GenerationMode.POSITIVE
         or any((op.path_parameters, op.query, op.headers, op.body))]
SENT: dict[str, int] = {}
# HTTP's own framing and connection headers, not the API's: a malformed one (a generated
# ``Transfer-Encoding: t/'d`` on a GET, say) is refused by the HTTP server itself, with its
# plain-text 400, before the app sees the request. They are dropped from generated cases, and
# any other message the HTTP server refuses that way is held to that (test_hostile.py sends
# malformed messages on purpose).
FRAMING = frozenset({"transfer-encoding", "content-length", "connection", "te", "trailer",
                     "upgrade", "expect"})
MALFORMED = (400, "Invalid HTTP request received.")  # uvicorn's answer, before any app code


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """The demo models plus the tiny one (the default model: generated 2-column inputs fit it)."""
    repo = copy_demo_repository(tmp_path_factory.mktemp("fuzz") / "models")
    tiny = tiny_model()
    ModelRepository(repo).write("tiny", tiny.spec, tiny.get_weights())
    server = LiveServer(repo, args=["--default-model", "tiny"], env={
        "GRADSERVE_API_KEYS": key_entries(), "GRADSERVE_MAX_BODY_BYTES": str(1 << 20),
        "GRADSERVE_KEEP_VERSIONS": "3", "GRADSERVE_REQUEST_TIMEOUT": "20"}).start()
    yield server
    server.stop()
    print(f"\nfuzzing: {sum(SENT.values())} requests over {len(SENT)} operation/mode pairs")


@pytest.mark.slow
@pytest.mark.parametrize("operation,mode", PAIRS,
                         ids=[f"{op.label} {mode.value}" for op, mode in PAIRS])
def test_operation_keeps_its_contract(fuzz_server, operation, mode):
    session = requests.Session()
    label = f"{operation.label} {mode.value}"
    # Half the cases name a real model, so that requests reach the data plane, not only 404.
    strategy = st.one_of(
        operation.as_strategy(generation_mode=mode),
        operation.as_strategy(generation_mode=mode, path_parameters={"name": "tiny"})
        if "{name}" in operation.path else operation.as_strategy(generation_mode=mode))

    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck), print_blob=True)
    @hypothesis.given(case=strategy)
    def check(case):
        SENT[label] = SENT.get(label, 0) + 1
        for name in [n for n in case.headers or {} if n.lower() in FRAMING]:
            del case.headers[name]
        response = case.call(base_url=fuzz_server.url, session=session, headers=bearer("all"),
                             timeout=30)
        if (response.status_code, response.text) == MALFORMED:
            return  # not an API request: a 4xx, and the server must live on (checked below)
        case.validate_response(response, checks=CHECKS, headers=bearer("all"))

    check()
    assert fuzz_server.process.poll() is None, "the server died"


def test_server_memory_stayed_bounded(fuzz_server):
    """Runs after the fuzzing (same module): thousands of odd requests later, RSS is sane."""
    assert rss_kib(fuzz_server.process.pid) < 1_500_000
