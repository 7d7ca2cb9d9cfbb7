"""``gradserve.build``: a compact network from tabular data, written as a new model version.

The steps, each in its own module:

1. the data: a CSV or Parquet file, a mapping of columns or numpy arrays, checked column by column
   (``tabular``), with errors naming the column and the row;
2. the normalisation of every feature, from the fitting rows, under NeurEco's shift/scale choices
   (``normalisation``);
3. a validation split (a fraction of the rows, drawn from the seed, or given row indices);
4. a search over small architectures (``architecture``): each candidate is trained with
   full-batch L-BFGS in float64 (``training.train_mlp``), stopped early when the validation
   error has not improved for ``patience`` iterations, and the smallest network within a tolerance
   of the best validation error is kept;
5. the report (``build_report``) and, with ``out``, a new version written through
   ``ModelRepository.write`` (atomic: a watching service sees the whole version or none).

Everything is deterministic given ``seed``: the same data and arguments give the same weights.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .architecture import Candidate, check_architectures, choose, default_architectures, n_weights
from .build_report import BuildReport, output_errors, selection_error
from .engine import Model
from .errors import BadData
from .normalisation import SCALES, SHIFTS, Choice, resolve_choices, shift_scale
from .progress import ProgressBar
from .repository import ModelRepository
from .tabular import MIN_ROWS, Table, read_table, table_from_columns
from .training import train_mlp

__all__ = ["build", "BuildResult", "KINDS"]

KINDS = ("regression", "classification", "compression")
Data = str | os.PathLike | Mapping[str, object] | np.ndarray | tuple


@dataclass(frozen=True)
class BuildResult:
    """The built model (served weights included) and what was measured on the way."""

    model: Model
    report: BuildReport

    @property
    def version(self) -> int | None:
        return self.report.version


def build(data: Data, inputs: Sequence[str] | None = None, outputs: Sequence[str] | None = None,
          *, out: str | os.PathLike | None = None, kind: str = "regression",
          input_shift: Choice = "auto", input_scale: Choice = "auto",
          output_shift: Choice = "auto", output_scale: Choice = "auto",
          validation: float | Sequence[int] = 0.2,
          architectures: Sequence[Sequence[int]] | None = None, activation: str = "tanh",
          tolerance: float = 0.25, epochs: int = 3000, patience: int = 300, seed: int = 0,
          name: str | None = None, description: str | None = None,
          progress: bool = True) -> BuildResult:
    """Train a compact network on tabular data; with ``out`` (``REPO/NAME``), store it.

    data: a ``.csv``/``.parquet`` path; a mapping column name -> values; a tuple ``(x, y)`` of
    arrays x (n, m) and y (n, k) / (n,) (for classification, labels (n,) or one-hot (n, k));
    or, for compression, the array x (n, m) alone.
    inputs / outputs: column names (for arrays: names to give the columns). With a file or a
    mapping, ``inputs`` defaults to every column that is not an output. Classification takes one
    label column (its distinct values are the classes) or several one-hot columns. Compression
    takes no outputs: they are the inputs.

    input_shift ... output_scale: the normalisation per feature: ``none``, ``min``,
    ``min_centered``, ``mean`` / ``none``, ``max``, ``max_centered``, ``std``, or ``auto`` (see
    ``gradserve.normalisation``); one for all, a list, or ``{"column": choice, "*": default}``.
    validation: the share of rows held out (0 < v < 1), or the indices of the held-out rows.
    architectures: hidden widths to try, e.g. ``[(8,), (16,), (8, 8)]`` (compression: an odd
    number of layers, the middle one the code); default ``default_architectures``.
    tolerance: keep the smallest network whose validation error is at most (1 + tolerance) times
    the best. epochs / patience: L-BFGS iterations at most, and without a validation improvement.
    progress: a progress bar on stderr.

    Raises BadData (a GradserveError) naming the column and row for unusable data.
    """
    start = time.perf_counter()
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    if not 0 <= tolerance:
        raise ValueError(f"tolerance must be >= 0; got {tolerance}")
    table, inputs, outputs = _resolve(data, inputs, outputs, kind)
    table.check_rows()
    x = table.numeric(inputs, "input")
    table.check_not_constant(x, inputs, "input")
    if kind == "classification":
        y, outputs = table.labels(outputs)
    elif kind == "compression":
        y, outputs = x, list(inputs)
    else:
        y = table.numeric(outputs, "output")
        table.check_not_constant(y, outputs, "output")
    n, m, k = x.shape[0], x.shape[1], y.shape[1]

    val, fit = _split(n, validation, seed, table)
    norm = _normalisation(x[fit], y[fit], inputs, outputs, kind,
                          (input_shift, input_scale, output_shift, output_scale))
    shapes = check_architectures(architectures, kind) if architectures is not None else \
        default_architectures(kind, m, k)
    model_name = name or (Path(out).name if out is not None else "model")
    spread = y.std(axis=0) if kind != "classification" else np.ones(k)

    bar = ProgressBar(len(shapes), epochs, enabled=progress)
    trained: list[tuple[Candidate, Model]] = []
    for hidden in shapes:
        label = f"{'-'.join(map(str, (m, *hidden, k)))} p={n_weights(m, hidden, k)}"
        bar.start(label)
        t0 = time.perf_counter()
        model = train_mlp(
            x, y, hidden, activation=_activations(hidden, activation, kind), kind=kind,
            input_names=inputs, output_names=outputs,
            code_layer=len(hidden) // 2 if kind == "compression" else None,
            epochs=epochs, patience=patience, validation_indices=val, seed=seed,
            optimizer="lbfgs", name=model_name, **norm,
            progress=lambda e, _train, v: bar.update(e, v))
        error = selection_error(kind, model.evaluate(x[val]), y[val], spread)
        candidate = Candidate(hidden, model.n_weights, error,
                              model.spec.metadata["training"]["epochs_run"],
                              time.perf_counter() - t0)
        bar.finish(f"validation {candidate.validation_error:.4g} after {candidate.epochs} "
                   f"iterations ({candidate.seconds:.1f} s)")
        trained.append((candidate, model))

    chosen = choose([c for c, _ in trained], tolerance)
    model = next(mod for c, mod in trained if c is chosen)
    errors = output_errors(kind, outputs, model.evaluate(x[fit]), y[fit],
                           model.evaluate(x[val]), y[val], spread)
    report = BuildReport(
        name=model_name, kind=kind, source=table.source, n_rows=n, n_train=len(fit),
        n_validation=len(val), architecture=_describe(model), n_weights=model.n_weights,
        validation_error=chosen.validation_error, outputs=errors,
        candidates=[c for c, _ in trained], chosen=chosen.hidden, tolerance=tolerance,
        seconds=0.0)
    # The record in the spec leaves out what differs between two identical builds (time, version).
    record = {key: value for key, value in report.as_dict().items()
              if key not in ("seconds", "version", "path")}
    record.update(seed=seed, normalisation={key: list(v) for key, v in norm.items()},
                  validation_rows=[int(i) for i in val] if not isinstance(validation, float)
                  else None, validation_fraction=validation if isinstance(validation, float)
                  else None)
    spec = model.spec.model_copy(update={
        "description": description or f"Built by gradserve build from {table.source}.",
        "metadata": {**model.spec.metadata, "build": record}})
    model = Model(spec, model.get_weights(), name=model_name, buckets=model.buckets)
    version = path = None
    if out is not None:
        folder = Path(out)
        version = ModelRepository(folder.parent).write(folder.name, spec, model.get_weights())
        model.replace_weights(model.snapshot()[0], version)
        path = str(folder)
    report = dataclasses.replace(report, seconds=time.perf_counter() - start, version=version,
                                 path=path)
    return BuildResult(model, report)


# --- the steps -------------------------------------------------------------------------------

def _resolve(data: Data, inputs, outputs, kind: str) -> tuple[Table, list[str], list[str]]:
    """(table, input names, output names) from any accepted form of ``data``."""
    if isinstance(data, (str, os.PathLike)):
        table = read_table(data)
    elif isinstance(data, Mapping):
        table = table_from_columns(data)
    elif isinstance(data, (np.ndarray, tuple, list)):
        table, inputs, outputs = _from_arrays(data, inputs, outputs, kind)
    else:
        raise BadData(f"data must be a file path, a mapping of columns or arrays; got "
                      f"{type(data).__name__}")
    outputs = [] if outputs is None else _names(outputs)
    if kind == "compression":
        if outputs:
            raise BadData("a compression model's outputs are its inputs: give no outputs")
    elif not outputs:
        raise BadData(f"a {kind} model needs outputs: name the output column(s)")
    inputs = [c for c in table.names if c not in outputs] if inputs is None else _names(inputs)
    if not inputs:
        raise BadData("no input columns: name them")
    for role, names in (("input", inputs), ("output", outputs)):
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:
            raise BadData(f"{role} column {twice[0]!r} is named twice")
    both = [c for c in inputs if c in outputs]
    if both:
        raise BadData(f"column {both[0]!r} is both an input and an output")
    return table, inputs, outputs


def _names(names: Sequence[str] | str) -> list[str]:
    return [names] if isinstance(names, str) else [str(c) for c in names]


def _from_arrays(data, inputs, outputs, kind: str) -> tuple[Table, list[str], list[str]]:
    if isinstance(data, np.ndarray):
        x, y = data, None
    elif len(data) == 2:
        x, y = data
    else:
        raise BadData("array data is (x, y), or x alone for compression")
    x = np.asarray(x)
    if x.ndim != 2:
        raise BadData(f"x must have shape (n, m); got shape {x.shape}")
    in_names = _names(inputs) if inputs is not None else [f"x{j}" for j in range(x.shape[1])]
    if len(in_names) != x.shape[1]:
        raise BadData(f"{len(in_names)} input names for the {x.shape[1]} columns of x")
    columns = {nm: x[:, j] for j, nm in enumerate(in_names)}
    out_names: list[str] = []
    if y is not None:
        y = np.asarray(y)
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        if y.ndim != 2 or y.shape[0] != x.shape[0]:
            raise BadData(f"y must have {x.shape[0]} rows, like x; got shape {y.shape}")
        default = ["label"] if kind == "classification" and y.shape[1] == 1 else \
            [f"y{j}" for j in range(y.shape[1])]
        out_names = _names(outputs) if outputs is not None else default
        if len(out_names) != y.shape[1]:
            raise BadData(f"{len(out_names)} output names for the {y.shape[1]} columns of y")
        columns.update({nm: y[:, j] for j, nm in enumerate(out_names)})
    return table_from_columns(columns, source="arrays"), in_names, out_names


def _split(n: int, validation, seed: int, table: Table) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows, fitting rows): one split shared by every candidate."""
    if isinstance(validation, (float, int)) and not isinstance(validation, bool):
        fraction = float(validation)
        if not 0 < fraction < 1:
            raise BadData(f"validation must be a share of the rows between 0 and 1 (exclusive), "
                          f"or row indices; got {validation}")
        # Its own generator, apart from the one that draws the initial weights.
        order = np.random.default_rng([seed, 1]).permutation(n)
        val = np.sort(order[:max(1, int(round(fraction * n)))])
    else:
        val = np.unique(np.asarray(list(validation), dtype=np.int64))
        if val.size == 0:
            raise BadData("validation names no row")
        bad = val[(val < 0) | (val >= n)]
        if bad.size:
            raise BadData(f"validation row {int(bad[0])} is outside {table.source}'s rows "
                          f"(0 to {n - 1})")
    fit = np.setdiff1d(np.arange(n), val)
    if len(fit) < MIN_ROWS // 2:
        raise BadData(f"{len(val)} validation rows leave {len(fit)} of {n} to train on; "
                      f"at least {MIN_ROWS // 2} are needed")
    return val, fit


def _normalisation(x_fit, y_fit, inputs, outputs, kind, choices) -> dict[str, list[str]]:
    """Resolve the choices per feature, and refuse any that gives a zero scale on these rows."""
    in_shift, in_scale, out_shift, out_scale = choices
    norm = {"input_shift": resolve_choices(in_shift, inputs, SHIFTS, "input shift"),
            "input_scale": resolve_choices(in_scale, inputs, SCALES, "input scale")}
    shift_scale(x_fit, inputs, norm["input_shift"], norm["input_scale"])
    if kind == "regression":
        norm["output_shift"] = resolve_choices(out_shift, outputs, SHIFTS, "output shift")
        norm["output_scale"] = resolve_choices(out_scale, outputs, SCALES, "output scale")
        shift_scale(y_fit, outputs, norm["output_shift"], norm["output_scale"])
    return norm


def _activations(hidden: tuple[int, ...], activation: str, kind: str) -> list[str]:
    acts = [activation] * len(hidden)
    if kind == "compression":
        acts[len(hidden) // 2] = "identity"  # a linear code layer
    return acts


def _describe(model: Model) -> str:
    spec = model.spec
    return " -> ".join([str(spec.n_inputs)] + [f"{layer.units} {layer.activation}"
                                               for layer in spec.layers])
