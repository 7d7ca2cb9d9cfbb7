"""Build the bundled demo model repository (``service/gradserve/demo_models``) from scratch.

    PYTHONPATH=service python service/demo/train_demo_models.py

Generates each data set from a fixed seed, writes it to ``service/demo/data/<name>_{train,test}.csv``,
trains on the values read back from those files (so the CSVs are exactly the data the models saw),
measures the held-out error, and writes version 1 of each model plus the repository README.
Running it again gives the same files: every earlier version is deleted first, and nothing
time-dependent is written.
"""

from __future__ import annotations

import csv
import shutil
import sys
import time
from pathlib import Path

import numpy as np

import gradserve
from gradserve.training import train_mlp

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
REPO = Path(gradserve.demo_repository())
SEED = 20240611
# Test bounds that tests/engine/test_demo_models.py checks; documented in the README.
BOUNDS = {"borehole": 0.005, "classifier": 0.97, "compression": 0.02}


# --- data ------------------------------------------------------------------------------------

BOREHOLE_RANGES = {  # the standard ranges used with this benchmark function
    "rw": (0.05, 0.15, "radius of the borehole (m)"),
    "r": (100.0, 50000.0, "radius of influence (m)"),
    "Tu": (63070.0, 115600.0, "transmissivity of the upper aquifer (m^2/yr)"),
    "Hu": (990.0, 1110.0, "potentiometric head of the upper aquifer (m)"),
    "Tl": (63.1, 116.0, "transmissivity of the lower aquifer (m^2/yr)"),
    "Hl": (700.0, 820.0, "potentiometric head of the lower aquifer (m)"),
    "L": (1120.0, 1680.0, "length of the borehole (m)"),
    "Kw": (9855.0, 12045.0, "hydraulic conductivity of the borehole (m/yr)"),
}
CLASSES = ["inner", "upper", "lower"]
SENSORS = ["s1", "s2", "s3", "s4", "s5", "s6"]


def borehole(x: np.ndarray) -> np.ndarray:
    """Water flow (m^3/yr) through a borehole; x (n, 8) in BOREHOLE_RANGES order -> (n,)."""
    rw, r, tu, hu, tl, hl, length, kw = x.T
    log_ratio = np.log(r / rw)
    return 2 * np.pi * tu * (hu - hl) / (
        log_ratio * (1 + 2 * length * tu / (log_ratio * rw**2 * kw) + tu / tl))


def borehole_data(rng, n):
    lo, hi = (np.array([v[i] for v in BOREHOLE_RANGES.values()]) for i in (0, 1))
    x = lo + (hi - lo) * rng.random((n, len(lo)))
    return [*BOREHOLE_RANGES, "flow"], np.column_stack([x, borehole(x)])


def classifier_label(x: np.ndarray) -> np.ndarray:
    """0 inside the disk of radius 0.65, else 1 above the diagonal x2 = x1, else 2 (equal areas)."""
    inner = x[:, 0] ** 2 + x[:, 1] ** 2 < 0.65**2
    return np.where(inner, 0, np.where(x[:, 1] > x[:, 0], 1, 2))


def classifier_data(rng, n):
    x = rng.uniform(-1.0, 1.0, (n, 2))
    return ["x1", "x2", "label"], [[*row, CLASSES[c]] for row, c in zip(x, classifier_label(x))]


def compression_data(rng, n):
    """Six noisy sensor readings driven by two hidden factors u, v ~ U(-1, 1)."""
    u, v = rng.uniform(-1.0, 1.0, (2, n))
    s = np.column_stack([u, v, 0.5 * (u + v), u * v, np.sin(1.5 * u), np.exp(0.7 * v)])
    return SENSORS, s + 0.01 * rng.standard_normal(s.shape)


def write_csv(path: Path, header, rows) -> None:
    # Six significant digits keep the files small; the models train on these rounded values.
    with path.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header)
        out.writerows([v if isinstance(v, str) else f"{v:.6g}" for v in row] for row in rows)


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def make_data(name: str, generate, n_train: int, n_test: int, rng):
    """Write both CSVs, then return (header, train rows, test rows) as read back from them."""
    DATA.mkdir(exist_ok=True)
    header, rows = generate(rng, n_train + n_test)
    rows = list(rows)
    out = []
    for part, chunk in (("train", rows[:n_train]), ("test", rows[n_train:])):
        path = DATA / f"{name}_{part}.csv"
        write_csv(path, header, chunk)
        out.append(read_csv(path)[1])
    return header, out[0], out[1]


def numeric(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


# --- training ---------------------------------------------------------------------------------

def build_borehole(rng):
    header, train, test = make_data("borehole", borehole_data, 2000, 500, rng)
    train, test = numeric(train), numeric(test)
    model = train_mlp(train[:, :8], train[:, 8:], (32, 32), activation="tanh",
                      input_names=header[:8], output_names=["flow"], epochs=2000, batch_size=64,
                      learning_rate=3e-3, final_learning_rate=1e-5, validation_fraction=0.2,
                      patience=300, seed=SEED, name="borehole")
    pred = model.evaluate(test[:, :8])[:, 0]
    y = test[:, 8]
    rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
    metrics = {"n_test": len(y), "rmse": rmse, "relative_rmse": rmse / float(np.std(y)),
               "mean_abs_relative_error": float(np.mean(np.abs(pred - y) / np.abs(y)))}
    description = "Surrogate of the 8-input borehole function: water flow (m^3/yr) through a borehole."
    return model, metrics, description


def build_classifier(rng):
    header, train, test = make_data("classifier", classifier_data, 1500, 500, rng)
    x, labels = numeric([r[:2] for r in train]), np.array([CLASSES.index(r[2]) for r in train])
    model = train_mlp(x, labels, (16, 16), activation="tanh", kind="classification",
                      input_names=header[:2], output_names=CLASSES, epochs=1500, batch_size=64,
                      learning_rate=1e-2, final_learning_rate=1e-5, validation_fraction=0.2,
                      patience=300, seed=SEED, name="classifier")
    xt, lt = numeric([r[:2] for r in test]), np.array([CLASSES.index(r[2]) for r in test])
    accuracy = float(np.mean(model.evaluate(xt).argmax(axis=1) == lt))
    metrics = {"n_test": len(lt), "accuracy": accuracy}
    description = ("Three regions of the square [-1, 1]^2: 'inner' (x1^2 + x2^2 < 0.65^2), else "
                   "'upper' (x2 > x1) or 'lower'. Outputs are class probabilities (softmax).")
    return model, metrics, description


def build_compression(rng):
    header, train, test = make_data("compression", compression_data, 1500, 500, rng)
    train, test = numeric(train), numeric(test)
    model = train_mlp(train, None, (16, 2, 16), activation=["tanh", "identity", "tanh"],
                      kind="compression", input_names=header, code_layer=1, epochs=2000,
                      batch_size=64, learning_rate=3e-3, final_learning_rate=1e-5,
                      validation_fraction=0.2, patience=300, seed=SEED, name="compression")
    err = model.evaluate(test) - test
    rmse = np.sqrt(np.mean(err**2, axis=0))
    metrics = {"n_test": len(test), "rmse": float(np.sqrt(np.mean(err**2))),
               "relative_rmse": float(np.mean(rmse / test.std(axis=0))),
               "rmse_per_feature": {n: float(v) for n, v in zip(header, rmse)}}
    description = ("Autoencoder: six noisy sensor readings driven by two hidden factors, "
                   "squeezed through a 2-unit code layer (dense1) and reconstructed.")
    return model, metrics, description


# --- writing ----------------------------------------------------------------------------------

def save(model, metrics, description) -> None:
    folder = REPO / model.name
    shutil.rmtree(folder, ignore_errors=True)  # version 1 always: the script is idempotent
    meta = {**model.spec.metadata, "test": metrics,
            "data": f"service/demo/data/{model.name}_{{train,test}}.csv",
            "retrain": "PYTHONPATH=service python service/demo/train_demo_models.py"}
    spec = model.spec.model_copy(update={"description": description, "metadata": meta})
    spec = gradserve.ModelSpec.model_validate(spec.model_dump())  # a full check before writing
    version = gradserve.ModelRepository(REPO).write(model.name, spec, model.get_weights())
    assert version == 1, version


def architecture(spec) -> str:
    sizes = [str(spec.n_inputs)] + [f"{l.units} {l.activation}" for l in spec.layers]
    return " -> ".join(sizes)


def features_table(features, describe=None) -> str:
    lines = ["| name | min | max | meaning |", "|---|---|---|---|"]
    for f in features:
        meaning = describe.get(f.name, "") if describe else ""
        lines.append(f"| `{f.name}` | {f.min:.6g} | {f.max:.6g} | {meaning} |")
    return "\n".join(lines)


def readme(models: dict) -> str:
    b, c, a = (models[k] for k in ("borehole", "classifier", "compression"))
    bm, cm, am = (m.spec.metadata["test"] for m in (b, c, a))
    bore_meaning = {k: v[2] for k, v in BOREHOLE_RANGES.items()} | {"flow": "water flow (m^3/yr)"}
    sensors = {"s1": "u", "s2": "v", "s3": "(u + v) / 2", "s4": "u v", "s5": "sin(1.5 u)",
               "s6": "exp(0.7 v)"}
    return f"""# Demo models

The models bundled with gradserve (`gradserve.demo_repository()`), one version each. They are
built by one deterministic script; to rebuild them, and the data in `service/demo/data/`, run from
the repository root:

    PYTHONPATH=service python service/demo/train_demo_models.py

The script prints the held-out numbers below; they are also in each `model.json` under
`metadata.test`, next to the training details (`metadata.training`: seed, epochs, validation
error). All models are float64 chain MLPs trained with Adam (`gradserve.training.train_mlp`),
inputs normalised by the training mean and standard deviation. `min`/`max` are the ranges seen in
the training data. Each data set is split into a training file (of which 20% is held back for
early stopping) and a test file that the training never sees; `tests/engine/test_demo_models.py`
recomputes the held-out numbers from the test files and checks the bounds given here.

## borehole (regression, p = {b.n_weights})

The classic borehole function, water flow through a borehole between two aquifers:
`flow = 2 pi Tu (Hu - Hl) / (ln(r/rw) (1 + 2 L Tu / (ln(r/rw) rw^2 Kw) + Tu/Tl))`, inputs
sampled uniformly over their standard ranges (2000 training points, {bm['n_test']} test points).

Architecture: {architecture(b.spec)}.

{features_table(b.spec.inputs + b.spec.outputs, bore_meaning)}

Held-out: RMSE {bm['rmse']:.4g} m^3/yr; relative RMSE (RMSE / standard deviation of the test
flows) {bm['relative_rmse']:.3%}; mean absolute relative error {bm['mean_abs_relative_error']:.3%}.
Test bound: relative RMSE < {BOUNDS['borehole']:.1%}.

## classifier (classification, p = {c.n_weights})

{c.spec.description} Inputs uniform on the square (1500 training points, {cm['n_test']} test
points); the label is exact (no label noise), so errors are points near a boundary.

Architecture: {architecture(c.spec)}.

{features_table(c.spec.inputs, {'x1': 'horizontal coordinate', 'x2': 'vertical coordinate'})}

Outputs: `{'`, `'.join(f.name for f in c.spec.outputs)}`, the probability of each class (sum 1);
the predicted class is the largest. Held-out accuracy {cm['accuracy']:.1%}. Test bound: accuracy >=
{BOUNDS['classifier']:.0%}.

## compression (autoencoder, p = {a.n_weights})

Six sensor readings driven by two hidden factors u, v ~ U(-1, 1), each with Gaussian noise of
standard deviation 0.01 (1500 training points, {am['n_test']} test points). The network squeezes
them through a 2-unit linear code layer (`code_layer` = `{a.spec.code_layer}`) and reconstructs
them; outputs are the inputs, by name.

Architecture: {architecture(a.spec)}.

{features_table(a.spec.inputs, sensors)}

Held-out reconstruction RMSE (all features) {am['rmse']:.4g}, about the noise level; mean over
features of RMSE / standard deviation {am['relative_rmse']:.2%}. Test bound: RMSE < {BOUNDS['compression']}.
"""


def main() -> int:
    models = {}
    for index, build in enumerate((build_borehole, build_classifier, build_compression)):
        # One generator per model, so changing one data set leaves the others as they are.
        rng = np.random.default_rng([SEED, index])
        start = time.perf_counter()
        model, metrics, description = build(rng)
        elapsed = time.perf_counter() - start
        save(model, metrics, description)
        models[model.name] = gradserve.load_model(REPO / model.name)
        shown = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
        print(f"{model.name}: p={model.n_weights} epochs={model.spec.metadata['training']['epochs_run']} "
              f"time={elapsed:.1f}s test={shown}", flush=True)
    (REPO / "README.md").write_text(readme(models))
    size = sum(p.stat().st_size for p in REPO.rglob("*.safetensors"))
    data = sum(p.stat().st_size for p in DATA.glob("*.csv"))
    print(f"weights {size} bytes, data {data} bytes, written to {REPO}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
