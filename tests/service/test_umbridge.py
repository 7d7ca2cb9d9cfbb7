"""The UM-Bridge front end, driven by the real ``umbridge`` client: evaluation, gradient, Jacobian
and Hessian actions of the demo models agree with our own client to the last bit (both reach the
same data plane calls), and errors have the protocol's shape."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest
import umbridge

import gradserve_client as gc
from factories import random_inputs

NAMES = ["borehole", "classifier", "compression"]


@pytest.fixture(scope="module")
def ours(live_server):
    with gc.Client(live_server.url) as client:
        yield client


def _point(model, n=1, seed=0):
    rng = np.random.default_rng(seed)
    x = random_inputs(model, n, seed=seed)
    return rng, x, rng.normal(size=(n, model.n_outputs))


def test_info_lists_every_model(live_server):
    assert umbridge.supported_models(live_server.url) == NAMES
    info = httpx.get(f"{live_server.url}/Info").json()
    assert info == {"protocolVersion": 1.0, "models": NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_one_sample_with_the_stored_weights(live_server, ours, demo_models, name):
    model = umbridge.HTTPModel(live_server.url, name)
    local, remote = demo_models[name], ours.model(name)
    m, k = local.n_inputs, local.n_outputs
    assert model.get_input_sizes() == [m] and model.get_output_sizes() == [k]
    assert all((model.supports_evaluate(), model.supports_gradient(),
                model.supports_apply_jacobian(), model.supports_apply_hessian()))
    rng, x, py = _point(local)
    vec = rng.normal(size=m) * 1e-2
    inputs = [x[0].tolist()]
    np.testing.assert_array_equal(model(inputs)[0], remote.evaluate(x)[0])
    np.testing.assert_array_equal(model.gradient(0, 0, inputs, py[0].tolist()),
                                  remote.gradient(None, x, py)[1][0])
    np.testing.assert_array_equal(model.apply_jacobian(0, 0, inputs, vec.tolist()),
                                  remote.forward_derivative(None, None, x, vec[None])[0])
    np.testing.assert_array_equal(model.apply_hessian(0, 0, 0, inputs, py[0].tolist(), vec.tolist()),
                                  remote.hessian_vector(None, x, py, dx=vec[None])[1][0])


def test_a_batch_with_the_weights_as_second_input(live_server, ours, demo_models):
    """config {"batch": n, "weights": true}: inputs [x (n·m), w (p)], output y (n·k)."""
    local, remote = demo_models["compression"], ours.model("compression")
    n, m, k, p = 3, local.n_inputs, local.n_outputs, local.n_weights
    config = {"batch": n, "weights": True}
    model = umbridge.HTTPModel(live_server.url, "compression")
    assert model.get_input_sizes(config) == [n * m, p]
    assert model.get_output_sizes(config) == [n * k]
    rng, x, py = _point(local, n, seed=4)
    w = local.get_weights() * (1 + 0.01 * rng.normal(size=(p, 1)))
    dw, dx = rng.normal(size=p) * 1e-2, rng.normal(size=(n, m)) * 1e-2
    inputs = [x.ravel().tolist(), w.ravel().tolist()]
    sens = py.ravel().tolist()
    np.testing.assert_array_equal(model(inputs, config)[0], remote.evaluate(x, w).ravel())
    pw, px = remote.gradient(w, x, py)
    np.testing.assert_array_equal(model.gradient(0, 0, inputs, sens, config), px.ravel())
    np.testing.assert_array_equal(model.gradient(0, 1, inputs, sens, config), pw.ravel())
    np.testing.assert_array_equal(model.apply_jacobian(0, 1, inputs, dw.tolist(), config),
                                  remote.forward_derivative(w, dw, x).ravel())
    np.testing.assert_array_equal(model.apply_jacobian(0, 0, inputs, dx.ravel().tolist(), config),
                                  remote.forward_derivative(w, None, x, dx).ravel())
    hw, hx = remote.hessian_vector(w, x, py, dw=dw)
    np.testing.assert_array_equal(model.apply_hessian(0, 1, 1, inputs, sens, dw.tolist(), config),
                                  hw.ravel())
    np.testing.assert_array_equal(model.apply_hessian(0, 0, 1, inputs, sens, dw.tolist(), config),
                                  hx.ravel())
    hw, hx = remote.hessian_vector(w, x, py, dx=dx)
    np.testing.assert_array_equal(
        model.apply_hessian(0, 1, 0, inputs, sens, dx.ravel().tolist(), config), hw.ravel())


BOREHOLE = [[0.1, 1000, 90000, 1000, 90, 760, 1400, 11000]]
ERRORS = [
    # (route, body, error type, message pattern)
    ("/Evaluate", {"name": "nope", "input": BOREHOLE}, "ModelNotFound", "no model named 'nope'"),
    ("/ModelInfo", {"name": "nope"}, "ModelNotFound", "no model named 'nope'"),
    ("/InputSizes", {"name": "nope"}, "ModelNotFound", "no model named 'nope'"),
    ("/Evaluate", {"name": "borehole", "input": [BOREHOLE[0][:5]]}, "InvalidInput",
     "input 0 has invalid length: expected 8, got 5"),
    ("/Evaluate", {"name": "borehole", "input": BOREHOLE * 2}, "InvalidInput",
     r"input must be a list of 1 vector\(s\) \(sizes \[8\]"),
    ("/Evaluate", {"name": "borehole", "input": BOREHOLE, "config": {"batch": 0}}, "InvalidInput",
     "'batch' must be a positive integer"),
    ("/Evaluate", {"name": "borehole", "input": BOREHOLE, "config": {"level": 2}}, "InvalidInput",
     "unknown config key 'level'"),
    ("/Gradient", {"name": "borehole", "input": BOREHOLE, "outWrt": 0, "inWrt": 1, "sens": [1.0]},
     "InvalidInput", "inWrt must be an index between 0 and 0"),
    ("/Gradient", {"name": "borehole", "input": BOREHOLE, "outWrt": 1, "inWrt": 0, "sens": [1.0]},
     "InvalidInput", "outWrt must be an index between 0 and 0"),
    ("/ApplyJacobian", {"name": "borehole", "input": BOREHOLE, "outWrt": 0, "inWrt": 0,
                        "vec": [1.0]}, "InvalidInput", "vec has invalid length: expected 8"),
    ("/ApplyHessian", {"name": "borehole", "input": [[-1e308] + BOREHOLE[0][1:]], "outWrt": 0,
                       "inWrt1": 0, "inWrt2": 0, "sens": [1.0], "vec": [1.0] * 8},
     "InvalidInput", "non-finite result"),
    ("/ApplyHessian", {"name": "borehole", "input": BOREHOLE, "outWrt": 0, "inWrt1": 0,
                       "inWrt2": 0, "sens": [1.0, 2.0], "vec": [1.0] * 8},
     "InvalidInput", "sens has invalid length: expected 1, got 2"),
]


@pytest.mark.parametrize("route, body, type_, pattern", ERRORS,
                         ids=[f"{e[0][1:]}-{e[2]}-{i}" for i, e in enumerate(ERRORS)])
def test_errors_have_the_protocol_shape(live_server, route, body, type_, pattern):
    r = httpx.post(f"{live_server.url}{route}", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"type", "message"}
    assert error["type"] == type_
    assert re.search(pattern, error["message"]), error["message"]


def test_a_body_that_is_not_json_is_invalid_input(live_server):
    r = httpx.post(f"{live_server.url}/Evaluate", content=b'{"name": "borehole", "input": [[NaN',
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "InvalidInput"
    assert "not valid JSON" in r.json()["error"]["message"]


def test_the_client_raises_the_server_message(live_server):
    model = umbridge.HTTPModel(live_server.url, "classifier")
    with pytest.raises(Exception, match="InvalidInput: input 0 has invalid length"):
        model([[0.1]])
