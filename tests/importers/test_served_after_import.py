"""An imported model is served by a running service without a restart (the repository is
watched), and the service's derivatives are the imported model's."""

from __future__ import annotations

import time

import numpy as np
import pytest

import gradserve
import gradserve_client as gc
from live import LiveServer, copy_demo_repository

sklearn_nn = pytest.importorskip("sklearn.neural_network")


def test_import_into_a_running_service_is_served(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(200, 3))
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2]
    estimator = sklearn_nn.MLPRegressor(hidden_layer_sizes=(8,), activation="tanh", max_iter=300,
                                        random_state=0).fit(x, y)
    repo = copy_demo_repository(tmp_path / "models")
    with LiveServer(repo, env={"GRADSERVE_POLL_INTERVAL": "0.5"}) as server:
        result = gradserve.from_sklearn(estimator, out=repo / "imported")
        client = gc.Client(server.url, retries=0)
        deadline = time.monotonic() + 120
        while "imported" not in [m["name"] for m in client.models()]:
            assert time.monotonic() < deadline, "the imported model was not served in time"
            time.sleep(0.25)
        remote = client.model("imported")
        probe = rng.uniform(-1, 1, size=(5, 3))
        py = rng.normal(size=(5, 1))
        np.testing.assert_allclose(remote.evaluate(probe)[:, 0], estimator.predict(probe), rtol=1e-10, atol=1e-12)
        pw, px = remote.gradient(None, probe, py)
        pw_local, px_local = result.model.gradient(None, probe, py)
        np.testing.assert_allclose(pw, pw_local, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(px, px_local, rtol=1e-12, atol=1e-14)
