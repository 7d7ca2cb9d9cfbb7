"""The Open Inference Protocol (KServe V2) front end, driven by a real V2 client (``tritonclient``):
health, metadata and evaluation in the JSON tensor form and the binary data extension, agreeing
with our own client to the last bit."""

from __future__ import annotations

import json
import re

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

import gradserve_client as gc
from factories import random_inputs

NAMES = ["borehole", "classifier", "compression"]


@pytest.fixture(scope="module")
def v2(live_server):
    client = triton.InferenceServerClient(live_server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def ours(live_server):
    with gc.Client(live_server.url) as client:
        yield client


def test_health_and_server_metadata(v2):
    assert v2.is_server_live() and v2.is_server_ready()
    meta = v2.get_server_metadata()
    assert meta["name"] == "gradserve" and "binary_tensor_data" in meta["extensions"]
    assert all(v2.is_model_ready(name) for name in NAMES)
    assert v2.is_model_ready("borehole", "1") and not v2.is_model_ready("borehole", "7")
    assert not v2.is_model_ready("nope")


@pytest.mark.parametrize("name", NAMES)
def test_model_metadata(v2, demo_models, name):
    model = demo_models[name]
    meta = v2.get_model_metadata(name)
    assert meta == {"name": name, "versions": ["1"], "platform": "gradserve",
                    "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, model.n_inputs]}],
                    "outputs": [{"name": "y", "datatype": "FP64", "shape": [-1, model.n_outputs]}]}
    assert v2.get_model_metadata(name, model_version="1") == meta


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", NAMES)
def test_inference_agrees_with_our_client(v2, ours, demo_models, name, binary):
    x = random_inputs(demo_models[name], 9, seed=2)
    tensor = triton.InferInput("x", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x, binary_data=binary)
    result = v2.infer(name, [tensor], request_id="call-1",
                      outputs=[triton.InferRequestedOutput("y", binary_data=binary)])
    y = result.as_numpy("y")
    np.testing.assert_array_equal(y, ours.model(name).evaluate(x))
    response = result.get_response()
    assert response["model_name"] == name and response["model_version"] == "1"
    assert response["id"] == "call-1"
    assert ("binary_data_size" in response["outputs"][0].get("parameters", {})) == binary


def test_weights_as_a_second_input_and_float32_data(v2, ours, demo_models):
    model = demo_models["classifier"]
    x = random_inputs(model, 4, seed=3)
    w = model.get_weights() * 1.01
    inputs = [triton.InferInput("x", [4, 2], "FP32"), triton.InferInput("w", list(w.shape), "FP64")]
    inputs[0].set_data_from_numpy(x.astype(np.float32))
    inputs[1].set_data_from_numpy(w)
    y = v2.infer("classifier", inputs).as_numpy("y")  # no outputs named: binary by default
    np.testing.assert_array_equal(y, ours.model("classifier").evaluate(x.astype(np.float32), w))


def test_nested_json_data_and_the_version_path(live_server, ours, demo_models):
    x = random_inputs(demo_models["borehole"], 2)
    body = {"inputs": [{"name": "x", "shape": [2, 8], "datatype": "FP64", "data": x.tolist()}]}
    r = httpx.post(f"{live_server.url}/v2/models/borehole/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["shape"] == [2, 1] and out["datatype"] == "FP64"
    np.testing.assert_array_equal(np.array(out["data"]).reshape(2, 1), ours.model("borehole").evaluate(x))


ERRORS = [
    # (path, request body, status, message pattern)
    ("/v2/models/nope/infer", {"inputs": []}, 404, "no model named 'nope'"),
    ("/v2/models/borehole/versions/3/infer", {"inputs": []}, 404, "serves version 1, not '3'"),
    ("/v2/models/borehole/infer", {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64",
                                              "data": [1, 2, 3]}]}, 400, r"x must have shape \(n, 8\)"),
    ("/v2/models/borehole/infer", {"inputs": [{"name": "x", "shape": [2, 8], "datatype": "FP64",
                                              "data": [1, 2, 3]}]}, 400, "holds 3 values"),
    ("/v2/models/borehole/infer", {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "BYTES",
                                              "data": ["a"] * 8}]}, 400, "datatype 'BYTES'"),
    ("/v2/models/borehole/infer", {"inputs": [{"name": "z", "shape": [1], "datatype": "FP64",
                                              "data": [1]}]}, 400, "inputs must be 'x'"),
    ("/v2/models/borehole/infer", {"rows": []}, 400, "a list 'inputs'"),
]


@pytest.mark.parametrize("path, body, status, pattern", ERRORS)
def test_errors_have_the_protocol_shape(live_server, path, body, status, pattern):
    r = httpx.post(f"{live_server.url}{path}", content=json.dumps(body),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    doc = r.json()
    assert set(doc) == {"error"} and isinstance(doc["error"], str)
    assert re.search(pattern, doc["error"]), doc["error"]


def test_the_client_raises_the_server_message(v2):
    tensor = triton.InferInput("x", [1, 3], "FP64")
    tensor.set_data_from_numpy(np.ones((1, 3)))
    with pytest.raises(InferenceServerException, match=r"x must have shape \(n, 8\)"):
        v2.infer("borehole", [tensor])


def test_a_lying_binary_header_is_refused(live_server):
    head = json.dumps({"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP64",
                                   "parameters": {"binary_data_size": 64}}]}).encode()
    r = httpx.post(f"{live_server.url}/v2/models/borehole/infer", content=head + b"\0" * 10,
                   headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 400 and "binary_data_size 64" in r.json()["error"]
    r = httpx.post(f"{live_server.url}/v2/models/borehole/infer", content=head,
                   headers={"Inference-Header-Content-Length": "99999"})
    assert r.status_code == 400 and "Inference-Header-Content-Length" in r.json()["error"]
