"""PUT /weights stores a version that survives a restart; If-Match gives one winner."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest

import gradserve
import gradserve_client as gc
from live import LiveServer, copy_demo_repository


@pytest.fixture()
def own_server(tmp_path):
    server = LiveServer(copy_demo_repository(tmp_path / "models"), args=["--default-model", "classifier"])
    server.start()
    yield server
    server.stop()


def test_put_weights_survives_a_restart(own_server):
    model = gc.Client(own_server.url).model("borehole")
    w = model.get_weights()
    assert model.version == 1
    new = w * 1.01
    assert model.set_weights(new) == 0 and model.version == 2
    np.testing.assert_array_equal(model.get_weights(), new)
    # the repository on disk has the complete version
    on_disk = gradserve.load_model(own_server.models / "borehole")
    assert on_disk.version == 2
    np.testing.assert_array_equal(on_disk.get_weights(), new)
    assert own_server.stop() == 0
    own_server.start()
    model = gc.Client(own_server.url).model("borehole")
    np.testing.assert_array_equal(model.get_weights(), new)
    assert model.version == 2


def test_default_model_routes_follow_the_setting(own_server):
    r = httpx.get(f"{own_server.url}/weights")
    assert r.headers["etag"] == '"1"' and len(r.json()["weights"]) == 371  # the classifier
    assert httpx.get(f"{own_server.url}/model").json()["name"] == "classifier"


def test_two_writers_with_the_same_if_match_one_wins(own_server):
    model = gc.Client(own_server.url).model("compression")
    base = model.get_weights()
    version = model.version
    candidates = [base * 1.5, base * 0.5]
    results: list = [None, None]
    barrier = threading.Barrier(2)

    def write(i):
        client = gc.Client(own_server.url).model("compression")
        barrier.wait()
        try:
            results[i] = client.set_weights(candidates[i], if_match=version)
        except gc.WeightsConflict as exc:
            results[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [i for i, r in enumerate(results) if r == 0]
    losers = [r for r in results if isinstance(r, gc.WeightsConflict)]
    assert len(winners) == 1 and len(losers) == 1 and losers[0].status == 412
    served = model.get_weights()
    np.testing.assert_array_equal(served, candidates[winners[0]])  # the winner's, whole
    assert model.version == version + 1
    # a stale If-Match over plain HTTP gets 412 too
    r = httpx.put(f"{own_server.url}/models/compression/weights", json={"weights": base.tolist()},
                  headers={"If-Match": f'"{version}"'})
    assert r.status_code == 412 and r.json()["error"]["type"] == "WeightsConflict"
    # and the current ETag works
    r = httpx.put(f"{own_server.url}/models/compression/weights", json={"weights": base.ravel().tolist()},
                  headers={"If-Match": f'"{version + 1}"'})
    assert r.status_code == 200 and r.json() == {"status": 0, "version": version + 2}
