"""The repository is the source of truth: versions and models written by another process are
served after one scan, compiled before they are swapped in; a malformed one is skipped."""

from __future__ import annotations

import asyncio
import logging
import shutil

import numpy as np
import pytest

from factories import random_graph_spec, random_inputs
from gradserve.dataplane import DataPlane
from gradserve.errors import WeightsConflict
from gradserve.repository import WEIGHTS_FILE, ModelRepository
from gradserve.settings import Settings
from gradserve.watcher import RepositoryWatcher
from live import CACHE

BUCKETS = (1, 8)


def _weights(spec, seed):
    return np.random.default_rng(seed).normal(scale=0.5, size=spec.n_weights)


@pytest.fixture()
def repo(tmp_path) -> ModelRepository:
    repo = ModelRepository(tmp_path / "models")
    spec = random_graph_spec(1)
    repo.write("net", spec, _weights(spec, 0))
    return repo


@pytest.fixture()
def plane(repo):
    plane = DataPlane(Settings(models=repo.root, buckets=BUCKETS, poll_interval=0,
                               compilation_cache=CACHE))
    plane.load()
    yield plane
    plane.close()


def _other_process_writes(repo, name, spec, seed) -> np.ndarray:
    w = _weights(spec, seed)
    repo.write(name, spec, w)  # a ModelRepository of its own, as another process would have
    return w


def test_new_weights_are_swapped_in_without_compiling(repo, plane):
    watcher = RepositoryWatcher(plane)
    before = plane.model("net")
    traces = before.trace_count
    w = _other_process_writes(ModelRepository(repo.root), "net", before.spec, seed=5)
    assert watcher.poll_once() == {"net": "weights"}
    served, version = plane.get_weights("net")
    assert version == 2 and plane.model("net") is before
    np.testing.assert_array_equal(served.ravel(), w)
    x = random_inputs(before, 3)
    np.testing.assert_allclose(before.evaluate(x), before.evaluate(x, w.reshape(-1, 1)))
    assert before.trace_count == traces  # nothing was compiled
    assert watcher.poll_once() == {}  # nothing new: nothing done


def test_a_new_model_is_compiled_before_it_is_served(repo, plane):
    watcher = RepositoryWatcher(plane)
    spec = random_graph_spec(7, m=3, k=2)
    _other_process_writes(repo, "fresh", spec, seed=1)
    assert plane.model_names() == ["net"]
    assert watcher.poll_once() == {"fresh": "model"}
    assert plane.model_names() == ["fresh", "net"] and plane.ready
    model = plane.model("fresh")
    # every kernel, every bucket, before serving
    assert model.trace_count == len(model.compiled_shapes()) > 4 * len(BUCKETS)
    model.evaluate(random_inputs(model, 5))
    assert model.trace_count == len(model.compiled_shapes())
    assert [m["name"] for m in plane.info()["models"]] == ["fresh", "net"]


def test_a_new_spec_replaces_the_model_and_an_old_write_is_refused(repo, plane):
    watcher = RepositoryWatcher(plane)
    old = plane.model("net")
    bigger = random_graph_spec(11, m=4, k=2)
    assert bigger.n_weights != old.n_weights
    _other_process_writes(repo, "net", bigger, seed=2)
    assert watcher.poll_once() == {"net": "model"}
    new = plane.model("net")
    assert new is not old and new.version == 2 and new.n_weights == bigger.n_weights
    # a weight update that began on the old model does not land on an unserved one
    with pytest.raises(WeightsConflict, match="replaced"):
        plane._store_weights(old, old.get_weights().ravel(), None)


def test_a_malformed_version_is_skipped_and_the_old_one_keeps_serving(repo, plane, caplog):
    watcher = RepositoryWatcher(plane)
    spec = plane.model("net").spec
    _other_process_writes(repo, "net", spec, seed=3)
    (repo.root / "net" / "2" / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING, logger="gradserve"):
        assert watcher.poll_once() == {"net": "skipped"}
        assert watcher.poll_once() == {}  # not retried, nor logged again, while unchanged
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipping model net version 2" in warnings[0] and "version 1 keeps serving" in warnings[0]
    assert "not a readable safetensors file" in warnings[0]
    assert plane.served_version("net") == 1 and plane.ready
    # the next good version is served
    w = _other_process_writes(repo, "net", spec, seed=4)
    assert watcher.poll_once() == {"net": "weights"}
    served, version = plane.get_weights("net")
    assert version == 3
    np.testing.assert_array_equal(served.ravel(), w)


def test_a_version_being_copied_in_is_retried_once_its_files_change(repo, plane):
    watcher = RepositoryWatcher(plane)
    spec = plane.model("net").spec
    w = _other_process_writes(repo, "net", spec, seed=6)
    weights = repo.root / "net" / "2" / WEIGHTS_FILE
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])  # a copy by hand, half way through
    assert watcher.poll_once() == {"net": "skipped"}
    weights.write_bytes(whole)
    assert watcher.poll_once() == {"net": "weights"}
    np.testing.assert_array_equal(plane.get_weights("net")[0].ravel(), w)


def test_a_malformed_new_model_is_not_served(repo, plane):
    watcher = RepositoryWatcher(plane)
    shutil.copytree(repo.root / "net", repo.root / "broken")
    (repo.root / "broken" / "1" / "model.json").write_text("{not json")
    assert watcher.poll_once() == {"broken": "skipped"}
    assert plane.model_names() == ["net"] and plane.ready


def test_this_process_own_write_is_not_loaded_again(plane):
    watcher = RepositoryWatcher(plane)
    model = plane.model("net")
    version = asyncio.run(plane.set_weights("net", model.get_weights() * 2))
    assert version == 2
    assert watcher.poll_once() == {}


def test_if_match_is_checked_against_the_repository_not_against_what_is_served(repo, plane):
    """Another worker wrote version 2 and this one has not polled yet: If-Match 2 still wins,
    a stale or a future version still loses."""
    spec = plane.model("net").spec
    _other_process_writes(repo, "net", spec, seed=8)
    assert plane.served_version("net") == 1
    w = _weights(spec, 9)
    for stale in (1, 5):
        with pytest.raises(WeightsConflict):
            asyncio.run(plane.set_weights("net", w, if_version=stale))
    assert asyncio.run(plane.set_weights("net", w, if_version=2)) == 3
    served, version = plane.get_weights("net")
    assert version == 3
    np.testing.assert_array_equal(served.ravel(), w)
