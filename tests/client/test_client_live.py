"""The client against a real uvicorn process: every method, both encodings, named and default
model, agreeing with the in-process engine to the last bit."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import gradserve
import gradserve_client as gc
from factories import random_inputs
from live import TEST_BUCKETS, TEST_DIRECTION_BUCKETS


@pytest.fixture(scope="module", params=["binary", "json"])
def client(request, live_server):
    with gc.Client(live_server.url, encoding=request.param) as c:
        yield c


def _case(model, n=7, seed=0):
    rng = np.random.default_rng(seed)
    x = random_inputs(model, n, seed=seed)
    w = model.get_weights()
    return (rng, x, w * (1 + 0.01 * rng.normal(size=w.shape)), rng.normal(size=w.shape),
            rng.normal(size=x.shape) * 1e-3, rng.normal(size=(n, model.n_outputs)))


@pytest.mark.parametrize("name", ["borehole", "classifier", "compression"])
def test_every_method_is_bitwise_the_engine(client, demo_models, name):
    local = demo_models[name]
    remote = client.model(name)
    _, x, w, dw, dx, py = _case(local)
    np.testing.assert_array_equal(remote.evaluate(x), local.evaluate(x))
    np.testing.assert_array_equal(remote.evaluate(x, w), local.evaluate(x, w))
    np.testing.assert_array_equal(remote.forward_derivative(w, dw, x), local.forward_derivative(w, dw, x))
    np.testing.assert_array_equal(remote.forward_derivative(w, dw, x, dx),
                                  local.forward_derivative(w, dw, x, dx))
    pw, px = remote.gradient(w, x, py)
    pw_l, px_l = local.gradient(w, x, py)
    assert pw.shape == (local.n_weights, 1) and px.shape == x.shape
    np.testing.assert_array_equal(pw, pw_l)
    np.testing.assert_array_equal(px, px_l)
    np.testing.assert_array_equal(remote.gradient(None, x, py)[0], local.gradient(None, x, py)[0])


def _twin(model):
    """The engine compiled for the live server's buckets: the same kernels, hence the same bits."""
    sizes = lambda text: tuple(int(b) for b in text.split(","))  # noqa: E731
    return gradserve.Model(model.spec, model.get_weights(), buckets=sizes(TEST_BUCKETS),
                           direction_buckets=sizes(TEST_DIRECTION_BUCKETS))


@pytest.fixture(scope="module")
def twins(demo_models):
    return {name: _twin(model) for name, model in demo_models.items()}


@pytest.mark.parametrize("name", ["borehole", "classifier", "compression"])
def test_beyond_the_four_methods_is_bitwise_the_engine(client, twins, name):
    local = twins[name]
    remote = client.model(name)
    rng, x, w, dw, dx, py = _case(local, n=5, seed=1)
    r = 6  # more than the server's direction bucket (4): two chunks
    dws = rng.normal(size=(local.n_weights, r))
    dxs, pys = rng.normal(size=x.shape + (r,)) * 1e-3, rng.normal(size=py.shape + (r,))
    np.testing.assert_array_equal(remote.forward_derivative(w, dws, x, dxs),
                                  local.forward_derivative(w, dws, x, dxs))
    np.testing.assert_array_equal(remote.forward_derivative(None, None, x, dxs),
                                  local.forward_derivative(None, None, x, dxs))
    np.testing.assert_array_equal(remote.forward_derivative(w, None, x, dx),
                                  local.forward_derivative(w, None, x, dx))
    for got, want in zip(remote.gradient(w, x, pys), local.gradient(w, x, pys)):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    for got, want in zip(remote.hessian_vector(w, x, py, dw, dx), local.hessian_vector(w, x, py, dw, dx)):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(remote.hessian_vector(None, x, py, dx=dx)[0],
                                  local.hessian_vector(None, x, py, dx=dx)[0])
    for wrt in ("x", "w"):
        np.testing.assert_array_equal(remote.jacobian(w, x, wrt), local.jacobian(w, x, wrt))


def test_an_answer_over_the_limit_is_refused_before_computing(client):
    remote = client.model("borehole")  # the live server's limit: 2^17 numbers
    x = np.tile([[0.1, 1000, 90000, 1000, 90, 760, 1400, 11000]], (100, 1))
    assert remote.jacobian(None, x, "x").shape == (100, 1, 8)
    with pytest.raises(gc.PayloadTooLarge, match="GRADSERVE_MAX_ANSWER_ELEMENTS") as info:
        remote.jacobian(None, x, "w")  # 100 · 1 · 1377 float64: 1.1 MB
    assert info.value.status == 413
    with pytest.raises(gc.PayloadTooLarge, match="1 rows and 100 directions would hold 138500"):
        remote.gradient(None, x[:1], np.ones((1, 1, 100)))  # pw (1377, 1, 100): 1.1 MB
    with pytest.raises(gc.InvalidInput, match="wrt must be 'x' or 'w'"):
        remote.jacobian(None, x[:1], "y")


def test_weights_and_info(client, demo_models):
    remote = client.model("classifier")
    w = remote.get_weights()
    assert w.shape == (demo_models["classifier"].n_weights, 1) and remote.version == 1
    info = remote.info()
    assert info["kind"] == "classification" and info["n_weights"] == w.shape[0]
    assert [f["name"] for f in info["inputs"]] == [f.name for f in demo_models["classifier"].spec.inputs]


def test_default_model_is_the_first_by_name(client, demo_models):
    default = client.model()
    assert default.info()["name"] == "borehole"
    _, x, w, dw, _, py = _case(demo_models["borehole"], n=3)
    np.testing.assert_array_equal(default.gradient(w, x, py)[1], demo_models["borehole"].gradient(w, x, py)[1])


def test_async_client_agrees(live_server, demo_models):
    local = demo_models["compression"]
    _, x, w, dw, dx, py = _case(local, n=5, seed=3)

    async def run():
        async with gc.AsyncClient(live_server.url) as client:
            remote = client.model("compression")
            return await asyncio.gather(remote.evaluate(x), remote.forward_derivative(w, dw, x, dx),
                                        remote.gradient(w, x, py), remote.get_weights())

    y, dy, (pw, px), weights = asyncio.run(run())

    async def beyond():
        async with gc.AsyncClient(live_server.url) as client:
            remote = client.model("compression")
            return await asyncio.gather(remote.jacobian(w, x, "x"),
                                        remote.hessian_vector(w, x, py, dw, dx))

    jx, (hw, hx) = asyncio.run(beyond())
    np.testing.assert_array_equal(jx, local.jacobian(w, x, "x"))
    np.testing.assert_array_equal(hw, local.hessian_vector(w, x, py, dw, dx)[0])
    np.testing.assert_array_equal(y, local.evaluate(x))
    np.testing.assert_array_equal(dy, local.forward_derivative(w, dw, x, dx))
    np.testing.assert_array_equal(pw, local.gradient(w, x, py)[0])
    np.testing.assert_array_equal(weights, local.get_weights())


def test_errors_are_rebuilt_from_the_body(client):
    remote = client.model("borehole")
    with pytest.raises(gc.InvalidInput, match=r"x must have shape \(n, 8\)") as info:
        remote.evaluate(np.ones((2, 3)))
    assert info.value.status == 422
    with pytest.raises(gc.ModelNotFound, match="no model named 'nope'"):
        client.model("nope").evaluate(np.ones((1, 8)))


def test_set_weights_refusals_return_a_status(client):
    remote = client.model("classifier")
    w = remote.get_weights()
    bad = w.copy()
    bad[3] = np.inf
    assert remote.set_weights(np.ones((5, 1))) == 1
    assert remote.set_weights(bad) == 2
    assert remote.set_weights([["a"]] * len(w)) == 3
    np.testing.assert_array_equal(remote.get_weights(), w)


def test_constructor_does_no_io():
    client = gc.Client("http://127.0.0.1:9", retries=0)  # nothing listens on port 9
    model = client.model("anything")
    with pytest.raises(gc.TransportError):
        model.get_weights()
