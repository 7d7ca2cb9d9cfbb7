"""The model folder format: round trips, atomic versions, and clear errors for malformed files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import safetensors.numpy

import gradserve
from gradserve import ModelFormatError, ModelNotFound, ModelRepository, WeightsConflict
from factories import random_inputs, random_model


@pytest.fixture()
def saved(tmp_path):
    model = random_model(31)
    version = gradserve.save_model(model, tmp_path / "net")
    return model, tmp_path / "net", version


def test_round_trip_is_exact(saved):
    model, folder, version = saved
    assert version == 1
    loaded = gradserve.load_model(folder)
    assert loaded.name == "net" and loaded.version == 1 and loaded.spec == model.spec
    np.testing.assert_array_equal(loaded.get_weights(), model.get_weights())
    x = random_inputs(model, 5)
    np.testing.assert_array_equal(loaded.evaluate(x), model.evaluate(x))
    # a version folder loads too
    assert gradserve.load_model(folder / "1").version == 1


def test_versions_are_numbered_and_latest_wins(saved):
    model, folder, _ = saved
    model.set_weights(model.get_weights() * 2)
    assert gradserve.save_model(model, folder) == 2
    repo = ModelRepository(folder.parent)
    assert repo.versions("net") == [1, 2] and repo.model_names() == ["net"]
    np.testing.assert_array_equal(gradserve.load_model(folder).get_weights(), model.get_weights())
    assert gradserve.load_model(folder, version=1).version == 1


def test_conditional_write_refuses_a_stale_version(saved):
    model, folder, _ = saved
    repo = ModelRepository(folder.parent)
    assert repo.write("net", model.spec, model.get_weights(), if_version=1) == 2
    with pytest.raises(WeightsConflict, match="version 2, not 1"):
        repo.write("net", model.spec, model.get_weights(), if_version=1)
    assert repo.versions("net") == [1, 2]
    assert not list(folder.glob(".tmp-*"))  # the loser leaves nothing behind


def test_incomplete_version_folder_is_ignored(saved):
    _, folder, _ = saved
    (folder / "2").mkdir()  # a crash before the spec was in place, or a stray folder
    (folder / ".tmp-dead").mkdir()
    assert gradserve.load_model(folder).version == 1


def test_path_traversal_names_are_refused(tmp_path):
    repo = ModelRepository(tmp_path)
    for name in ["../etc", "..", ".hidden", "a/b", "", "x" * 200]:
        with pytest.raises(ModelNotFound):
            repo.read(name)


def _break(folder, how):
    spec_path, weights_path = folder / "1" / "model.json", folder / "1" / "weights.safetensors"
    spec = json.loads(spec_path.read_text())
    tensors = safetensors.numpy.load_file(str(weights_path))
    if how == "spec-json":
        spec_path.write_text("{not json")
    elif how == "spec-missing":
        spec_path.unlink()
    elif how == "field-missing":
        del spec["layers"]
    elif how == "activation":
        spec["layers"][0]["activation"] = "swish2"
    elif how == "dangling-input":
        spec["layers"][0]["inputs"] = ["nowhere"]
    elif how == "scale-zero":
        spec["inputs"][0]["scale"] = 0
    elif how == "format-version":
        spec["format_version"] = 99
    elif how == "unknown-field":
        spec["colour"] = "blue"
    elif how == "weights-missing":
        weights_path.unlink()
    elif how == "weights-garbage":
        weights_path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    elif how == "tensor-missing":
        del tensors["out.bias"]
    elif how == "tensor-shape":
        tensors["out.bias"] = np.zeros(7)
    elif how == "tensor-dtype":
        tensors["out.bias"] = tensors["out.bias"].astype(np.float32)
    elif how == "tensor-nan":
        tensors["out.bias"][0] = np.nan
    if how.startswith(("field", "activation", "dangling", "scale", "format", "unknown")):
        spec_path.write_text(json.dumps(spec))
    if how.startswith("tensor"):
        safetensors.numpy.save_file(tensors, str(weights_path))


@pytest.mark.parametrize("how, pattern", [
    ("spec-json", r"model\.json: not valid JSON"),
    ("spec-missing", r"1/model\.json: cannot be read"),
    ("field-missing", r"model\.json: field 'layers': is required but missing"),
    ("activation", r"model\.json: field 'layers\.0\.activation': .*'identity'.*got 'swish2'"),
    ("dangling-input", r"model\.json: .*layers\[0\]\.inputs names 'nowhere'"),
    ("scale-zero", r"model\.json: .*inputs\[0\]\.scale must be non-zero"),
    ("format-version", r"model\.json: .*format_version 99 is not supported \(expected 1\)"),
    ("unknown-field", r"model\.json: field 'colour': Extra inputs are not permitted"),
    ("weights-missing", r"weights\.safetensors: is missing"),
    ("weights-garbage", r"weights\.safetensors: is not a readable safetensors file"),
    ("tensor-missing", r"weights\.safetensors: field 'out\.bias': is missing \(expected a float64 tensor of shape \(2,\)\)"),
    ("tensor-shape", r"weights\.safetensors: field 'out\.bias': has shape \(7,\); expected \(2,\)"),
    ("tensor-dtype", r"weights\.safetensors: field 'out\.bias': has dtype float32; expected float64"),
    ("tensor-nan", r"weights\.safetensors: field 'out\.bias': has a non-finite entry"),
])
def test_malformed_model_is_refused_with_a_clear_error(saved, how, pattern):
    _, folder, _ = saved
    version_folder = folder / "1"
    _break(folder, how)
    target = version_folder if how != "spec-missing" else folder / "1"
    with pytest.raises((ModelFormatError, ModelNotFound), match=pattern) as info:
        gradserve.load_model(target)
    assert info.value.__traceback__ is not None
    assert info.value.__cause__ is None  # no chained traceback from deep inside a library


def test_nothing_but_a_model_folder_loads(tmp_path):
    with pytest.raises(ModelFormatError, match="neither a model folder"):
        gradserve.load_model(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFound, match="no model named 'empty'"):
        gradserve.load_model(empty)


def test_from_arrays_builds_the_documented_layout():
    rng = np.random.default_rng(0)
    W1, b1, W2, b2 = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(4, 2)), rng.normal(size=2)
    model = gradserve.from_arrays([W1, W2], [b1, b2], ["tanh", "identity"],
                                  input_shift=[1, 2, 3], input_scale=2.0, output_shift=5.0)
    np.testing.assert_array_equal(model.get_weights().ravel(),
                                  np.concatenate([W1.ravel(), b1, W2.ravel(), b2]))
    x = rng.normal(size=(6, 3))
    want = np.tanh(((x - [1, 2, 3]) / 2.0) @ W1 + b1) @ W2 + b2 + 5.0
    np.testing.assert_allclose(model.evaluate(x), want, rtol=1e-13)


def test_spec_round_trips_through_json(saved):
    model, _, _ = saved
    assert gradserve.ModelSpec.from_json_bytes(model.spec.to_json()) == model.spec
    shutil.rmtree(saved[1])
