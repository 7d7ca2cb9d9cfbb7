"""The committed OpenAPI document is the contract: it must match the app."""

from __future__ import annotations

import json
from pathlib import Path

from gradserve.http import create_app
from gradserve.settings import Settings

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_spec_matches_the_app():
    generated = create_app(Settings()).openapi()
    committed = json.loads(SPEC.read_text())
    assert committed == json.loads(json.dumps(generated)), (
        "openapi/openapi.json is stale: regenerate it with `gradserve openapi -o openapi/openapi.json`")


def test_every_compute_body_is_described():
    doc = json.loads(SPEC.read_text())
    for path in ("/models/{name}/gradient", "/models/{name}/forward_derivative", "/models/{name}/evaluate",
                 "/models/{name}/jacobian", "/models/{name}/hessian_vector"):
        body = doc["paths"][path]["post"]["requestBody"]["content"]
        assert {"application/json", "application/x-safetensors"} <= set(body)
        schema = body["application/json"]["schema"]
        assert schema["additionalProperties"] is False and schema["required"]
    put = doc["paths"]["/models/{name}/weights"]["put"]
    assert "412" in put["responses"] and "422" in put["responses"]



def test_the_jacobian_names_its_query_parameter():
    paths = json.loads(SPEC.read_text())["paths"]
    params = paths["/models/{name}/jacobian"]["post"]["parameters"]
    assert {p["name"] for p in params} == {"name", "wrt"}


def test_the_other_protocols_are_in_the_spec():
    paths = json.loads(SPEC.read_text())["paths"]
    for path in ("/Info", "/ModelInfo", "/InputSizes", "/OutputSizes", "/Evaluate", "/Gradient",
                 "/ApplyJacobian", "/ApplyHessian", "/v2", "/v2/health/live", "/v2/health/ready",
                 "/v2/models/{name}", "/v2/models/{name}/ready", "/v2/models/{name}/infer",
                 "/v2/models/{name}/versions/{version}/infer"):
        assert path in paths, path
