"""The shift/scale choices per feature, and train_mlp's new options (choices, given validation
rows, L-BFGS)."""

import numpy as np
import pytest

from gradserve.errors import BadData
from gradserve.normalisation import SCALES, SHIFTS, resolve_choices, shift_scale
from gradserve.training import train_mlp

COL = np.array([2.0, 4.0, 9.0, 5.0])  # min 2, max 9, mean 5, std sqrt(6.5)


@pytest.mark.parametrize("shift, want", [("none", 0.0), ("min", 2.0), ("min_centered", 5.5),
                                         ("mean", 5.0)])
def test_each_shift_is_the_documented_value(shift, want):
    got, _ = shift_scale(COL[:, None], ["c"], [shift], ["none"])
    assert got[0] == want


@pytest.mark.parametrize("shift, scale, want", [
    ("none", "none", 1.0), ("min", "max", 7.0), ("mean", "max", 4.0), ("none", "max", 9.0),
    ("mean", "max_centered", 3.5), ("min", "std", np.sqrt(6.5))])
def test_each_scale_is_the_documented_value(shift, scale, want):
    _, got = shift_scale(COL[:, None], ["c"], [shift], [scale])
    assert got[0] == pytest.approx(want, rel=1e-15)


def test_auto_centres_a_column_far_from_zero_and_keeps_zero_for_one_near_it():
    far = np.linspace(100.0, 110.0, 11)
    near = np.linspace(-1.0, 1.2, 11)  # mean 0.1, a twentieth of its range
    shift, scale = shift_scale(np.column_stack([far, near]), ["far", "near"], ["auto"] * 2,
                               ["auto"] * 2)
    assert shift[0] == pytest.approx(105.0) and shift[1] == 0.0
    for col, a, b in zip((far, near), shift, scale):
        assert np.abs((col - a) / b).max() == pytest.approx(1.0)  # within [-1, 1], touching it


def test_choices_resolve_per_feature_with_a_default_and_overrides():
    names = ["a", "b", "c"]
    assert resolve_choices("mean", names, SHIFTS, "shift") == ["mean"] * 3
    assert resolve_choices({"*": "min", "b": "none"}, names, SHIFTS, "shift") == ["min", "none", "min"]
    assert resolve_choices({"b": "std"}, names, SCALES, "scale") == ["auto", "std", "auto"]
    assert resolve_choices(["none", "max", "std"], names, SCALES, "scale") == ["none", "max", "std"]


@pytest.mark.parametrize("choice, words", [
    ({"z": "min"}, "'z' is not one of the columns"),
    ("median", "'median' is not one of"),
    (["min"], "1 choices for 3 columns"),
])
def test_bad_choices_are_refused_by_name(choice, words):
    with pytest.raises(BadData, match=words):
        resolve_choices(choice, ["a", "b", "c"], SHIFTS, "input shift")


def test_a_zero_scale_names_the_column_unless_lenient():
    # Second column: its max is 0, so scale "max" under shift "none" is 0.
    data = np.column_stack([COL, [-3.0, -1.0, 0.0, -2.0]])
    with pytest.raises(BadData, match="column 'neg': scale 'max' gives 0"):
        shift_scale(data, ["pos", "neg"], ["none", "none"], ["max", "max"])
    _, scale = shift_scale(data, ["pos", "neg"], ["none", "none"], ["max", "max"], strict=False)
    assert scale.tolist() == [9.0, 1.0]


# --- train_mlp's options ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (200, 2)) * [1.0, 3.0] + [0.0, 10.0]
    return x, np.sin(2 * x[:, :1]) + 0.3 * x[:, 1:2]


def test_train_mlp_uses_the_choices_and_the_given_validation_rows(data):
    x, y = data
    rows = list(range(0, 200, 5))
    model = train_mlp(x, y, (4,), epochs=5, input_names=["a", "b"], output_names=["q"],
                      input_shift={"a": "none", "b": "min"}, input_scale="max_centered",
                      output_shift="min_centered", output_scale="std", validation_indices=rows)
    fit = np.setdiff1d(np.arange(200), rows)
    spec = model.spec
    assert spec.inputs[0].shift == 0.0 and spec.inputs[1].shift == x[fit, 1].min()
    assert spec.inputs[1].scale == pytest.approx(np.ptp(x[fit, 1]) / 2)
    assert spec.outputs[0].shift == pytest.approx((y[fit].min() + y[fit].max()) / 2)
    assert spec.outputs[0].scale == pytest.approx(y[fit].std())
    assert spec.metadata["training"]["n_validation"] == 40


def test_lbfgs_fits_smooth_data_closely_and_deterministically(data):
    x, y = data
    seen = []
    kw = dict(epochs=100, optimizer="lbfgs", validation_fraction=0.2, patience=50, seed=3)
    a = train_mlp(x, y, (8,), progress=lambda e, t, v: seen.append(e), **kw)
    b = train_mlp(x, y, (8,), **kw)
    assert np.array_equal(a.get_weights(), b.get_weights())
    assert seen == list(range(1, len(seen) + 1)) and len(seen) == a.spec.metadata["training"]["epochs_run"]
    # The target's standard deviation is about 1.1: 100 iterations bring the error near 1.5% of it.
    assert a.spec.metadata["training"]["validation_rmse"] < 0.05
    assert a.spec.metadata["training"]["optimizer"] == "lbfgs"


def test_validation_rows_outside_the_data_are_refused(data):
    x, y = data
    with pytest.raises(ValueError, match="validation index 200 is outside the 200 rows"):
        train_mlp(x, y, (4,), epochs=1, validation_indices=[3, 200])
