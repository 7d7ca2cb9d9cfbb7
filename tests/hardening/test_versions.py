"""Weight versions: the last N are kept and listed, never the served one is deleted, a restore
serves an old version again under a new number, and pruning cannot leave half a version."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import gradserve_client as gc
from gradserve.repository import ModelRepository
from gradserve.settings import Settings
from hardening_kit import InProcess, tiny_model, tiny_repository


@pytest.fixture()
def client(tmp_path):
    repo = tiny_repository(tmp_path / "models")
    app = InProcess(Settings(models=repo, buckets=(1,), keep_versions=3))
    app.repo = repo
    yield app
    app.close()


def _put(client, value: float, **headers) -> int:
    r = client.put("/models/tiny/weights", json={"weights": [value] * 17}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["version"]


def test_last_n_versions_are_kept_and_listed(client):
    assert [_put(client, float(i)) for i in range(2, 7)] == [2, 3, 4, 5, 6]
    listing = client.get("/models/tiny/versions").json()
    assert listing["served"] == 6 and listing["name"] == "tiny"
    assert [v["version"] for v in listing["versions"]] == [4, 5, 6]
    assert listing["versions"][0]["stored_at"].endswith("+00:00")
    assert sorted(p.name for p in (client.repo / "tiny").iterdir()) == ["4", "5", "6"]
    assert client.get("/versions").json() == listing  # the default model's twin


def test_restore_serves_an_old_version_under_a_new_number(client):
    for value in (2.0, 3.0, 4.0):
        _put(client, value)
    r = client.post("/models/tiny/versions/2/restore")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": 0, "version": 5, "restored": 2} and r.headers["etag"] == '"5"'
    weights = client.get("/models/tiny/weights")
    assert weights.headers["etag"] == '"5"' and weights.json()["weights"] == [[2.0]] * 17
    # numbers only grow: the restored copy is new, so an ETag never names two weight vectors
    assert [v["version"] for v in client.get("/models/tiny/versions").json()["versions"]] == [3, 4, 5]
    r = client.post("/models/tiny/versions/2/restore")
    assert r.status_code == 404 and r.json()["error"]["type"] == "ModelNotFound"
    assert "versions: [3, 4, 5]" in r.json()["error"]["message"]


def test_restore_honours_if_match(client):
    _put(client, 2.0)
    r = client.post("/versions/1/restore", headers={"If-Match": '"1"'})
    assert r.status_code == 412 and r.json()["error"]["type"] == "WeightsConflict"
    r = client.post("/versions/1/restore", headers={"If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["version"] == 3
    r = client.post("/versions/0/restore")
    assert r.status_code == 422 and r.json()["error"]["type"] == "InvalidInput"


def test_served_version_is_never_pruned(tmp_path):
    repo = ModelRepository(tmp_path)
    model = tiny_model()
    for _ in range(5):
        repo.write("tiny", model.spec, model.get_weights())
    assert repo.prune("tiny", keep=1, protect={2}) == [1, 3, 4]
    assert repo.versions("tiny") == [2, 5]
    assert repo.prune("tiny", keep=1) == [2]
    assert repo.versions("tiny") == [5]
    with pytest.raises(ValueError):
        repo.prune("tiny", keep=0)


def test_a_crash_mid_prune_leaves_no_half_version(tmp_path):
    """Pruning renames a version out of sight before deleting it: what a crash leaves is a hidden
    temporary folder, which the next start removes."""
    repo = ModelRepository(tmp_path)
    model = tiny_model()
    for _ in range(3):
        repo.write("tiny", model.spec, model.get_weights())
    half = tmp_path / "tiny" / ".tmp-crashed"
    (tmp_path / "tiny" / "1").rename(half)
    (half / "weights.safetensors").unlink()  # as if the delete stopped midway
    assert repo.versions("tiny") == [2, 3]
    for v in repo.versions("tiny"):
        np.testing.assert_array_equal(repo.read("tiny", v)[1], model.get_weights().ravel())
    assert repo.remove_stale_temporaries("tiny") == 1 and not half.exists()


def test_client_lists_and_restores(client):
    async def run():
        async with gc.AsyncClient("http://app", transport=client.transport(), encoding="json") as c:
            model = c.model("tiny")
            first = await model.get_weights()
            assert await model.set_weights(first * 2) == 0 and model.version == 2
            assert [v["version"] for v in (await model.versions())["versions"]] == [1, 2]
            assert await model.restore(1) == 3 and model.version == 3
            np.testing.assert_array_equal(await model.get_weights(), first)
            with pytest.raises(gc.WeightsConflict):
                await model.restore(2, if_match=1)

    asyncio.run(run())
