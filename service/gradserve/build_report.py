"""What ``build`` measured: errors per output on the training and validation rows, and the report.

Errors are relative so that outputs of any scale compare: for regression and compression, the RMSE
of each output divided by that output's standard deviation over all rows (0 is perfect, 1 is no
better than predicting the mean); for classification, the share of each class's rows that are
misclassified. The selection error that ranks candidates is, for regression and compression, the
root mean square of the per-output validation errors, and for classification the validation
cross-entropy (smooth, where the share misclassified moves in steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .architecture import Candidate

__all__ = ["OutputError", "BuildReport", "output_errors", "selection_error"]


@dataclass(frozen=True)
class OutputError:
    """Errors of one output (one class for classification). ``validation_raw``: the validation
    RMSE in the output's own units (regression, compression), or None."""

    name: str
    train: float
    validation: float
    validation_raw: float | None = None


def _relative_rmse(pred: np.ndarray, y: np.ndarray,
                   spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rmse = np.sqrt(np.mean((pred - y) ** 2, axis=0))
    return rmse / spread, rmse


def _class_errors(prob: np.ndarray, hot: np.ndarray) -> np.ndarray:
    truth, guess = hot.argmax(axis=1), prob.argmax(axis=1)
    out = np.zeros(hot.shape[1])
    for c in range(hot.shape[1]):
        rows = truth == c
        out[c] = float(np.mean(guess[rows] != c)) if rows.any() else 0.0
    return out


def output_errors(kind: str, names: list[str], pred_fit: np.ndarray, y_fit: np.ndarray,
                  pred_val: np.ndarray, y_val: np.ndarray, spread: np.ndarray) -> list[OutputError]:
    """Per-output errors. pred/y: (rows, k); spread (k,): each output's standard deviation."""
    if kind == "classification":
        train, val = _class_errors(pred_fit, y_fit), _class_errors(pred_val, y_val)
        return [OutputError(n, float(a), float(b)) for n, a, b in zip(names, train, val)]
    train, _ = _relative_rmse(pred_fit, y_fit, spread)
    val, raw = _relative_rmse(pred_val, y_val, spread)
    return [OutputError(n, float(a), float(b), float(r))
            for n, a, b, r in zip(names, train, val, raw)]


def selection_error(kind: str, pred_val: np.ndarray, y_val: np.ndarray,
                    spread: np.ndarray) -> float:
    """The number candidates are ranked by (lower is better), on the validation rows."""
    if kind == "classification":
        return float(-np.mean(np.sum(y_val * np.log(np.maximum(pred_val, 1e-300)), axis=1)))
    rel, _ = _relative_rmse(pred_val, y_val, spread)
    return float(np.sqrt(np.mean(rel ** 2)))


@dataclass(frozen=True)
class BuildReport:
    """Everything ``build`` measured; ``str(report)`` is the text printed at the end of a build."""

    name: str
    kind: str
    source: str
    n_rows: int
    n_train: int
    n_validation: int
    architecture: str
    n_weights: int
    validation_error: float
    outputs: list[OutputError]
    candidates: list[Candidate]
    chosen: tuple[int, ...]
    tolerance: float
    seconds: float
    version: int | None = None
    path: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def selection_metric(self) -> str:
        return "cross-entropy" if self.kind == "classification" else "relative RMSE"

    def as_dict(self) -> dict:
        """The report as JSON-ready data (what the spec's ``metadata.build`` records, plus time)."""
        return {
            "name": self.name, "kind": self.kind, "source": self.source, "n_rows": self.n_rows,
            "n_train": self.n_train, "n_validation": self.n_validation,
            "architecture": self.architecture, "n_weights": self.n_weights,
            "validation_error": self.validation_error, "selection_metric": self.selection_metric,
            "tolerance": self.tolerance, "chosen": list(self.chosen),
            "errors": {o.name: {"train": o.train, "validation": o.validation,
                                **({"validation_rmse": o.validation_raw}
                                   if o.validation_raw is not None else {})}
                       for o in self.outputs},
            # A diverged candidate's error is NaN, which JSON cannot hold: recorded as null.
            "candidates": [{"hidden": list(c.hidden), "n_weights": c.n_weights,
                            "validation_error": c.validation_error
                            if np.isfinite(c.validation_error) else None, "epochs": c.epochs}
                           for c in self.candidates],
            "seconds": self.seconds, "version": self.version, "path": self.path,
        }

    def __str__(self) -> str:
        where = f" -> {self.path} version {self.version}" if self.version is not None else ""
        share = self.n_validation / self.n_rows
        lines = [
            f"built {self.name!r} ({self.kind}) from {self.source}{where}",
            f"rows: {self.n_rows}, {self.n_train} to train, {self.n_validation} to validate "
            f"({share:.0%})",
            f"candidates (validation {self.selection_metric}; * = the smallest within "
            f"{self.tolerance:.0%} of the best):",
            f"  {'hidden':>14} {'p':>6} {'validation':>11} {'epochs':>7} {'time':>7}",
        ]
        for c in self.candidates:
            mark = "*" if c.hidden == self.chosen else " "
            lines.append(f"{mark} {str(list(c.hidden)):>14} {c.n_weights:>6} "
                         f"{c.validation_error:>11.4g} {c.epochs:>7} {c.seconds:>6.1f}s")
        lines.append(f"network: {self.architecture}, p = {self.n_weights}")
        if self.kind == "classification":
            lines.append(f"  {'class':<16} {'train error':>12} {'validation error':>17}")
            for o in self.outputs:
                lines.append(f"  {o.name:<16} {o.train:>12.2%} {o.validation:>17.2%}")
        else:
            lines.append(f"  {'output':<16} {'train rel. RMSE':>16} {'validation rel. RMSE':>21} "
                         f"{'validation RMSE':>16}")
            for o in self.outputs:
                lines.append(f"  {o.name:<16} {o.train:>16.3%} {o.validation:>21.3%} "
                             f"{o.validation_raw:>16.4g}")
        lines.append(f"time: {self.seconds:.1f} s")
        return "\n".join(lines)
