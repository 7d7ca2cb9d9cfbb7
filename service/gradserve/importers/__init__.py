"""Models trained elsewhere, as gradserve models: scikit-learn MLPs and ONNX graphs.

    from gradserve.importers import from_sklearn, from_onnx
    result = from_sklearn(fitted_pipeline, out="repo/name")   # checked, then stored
    result = from_onnx("net.onnx", out="repo/name")
    result.model.gradient(None, x, py)

Each importer checks itself before anything is written: the imported model's outputs must match
the source's on random inputs to the source's float precision (``check.TOLERANCE``), else
ImportCheckFailed. The packages they read with (scikit-learn, onnx: the ``import`` extra) are
imported on first use; without them a MissingDependency names the extra to install.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UnsupportedModel
from .check import ImportResult
from .onnx import SUPPORTED_OPS, from_onnx
from .sklearn import from_sklearn

__all__ = ["ImportResult", "SUPPORTED_OPS", "from_onnx", "from_sklearn", "import_file"]


def import_file(path: str | os.PathLike, *, out: str | os.PathLike | None = None,
                **options) -> ImportResult:
    """Import a model file by its type: ``.onnx`` only (options as for ``from_onnx``).

    A scikit-learn estimator saved with pickle or joblib is refused: loading one runs arbitrary
    code, so estimators come in through ``from_sklearn`` from the Python session that has them.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        name = options.pop("name", None) or (Path(out).name if out is not None else "model")
        return from_onnx(path, out=out, name=name, **options)
    if suffix in (".pkl", ".pickle", ".joblib"):
        raise UnsupportedModel(
            f"{Path(path).name}: pickled estimators are not loaded, since unpickling runs "
            "arbitrary code; call gradserve.importers.from_sklearn(estimator, out=...) from the "
            "Python session that holds the fitted estimator")
    raise UnsupportedModel(f"{Path(path).name}: gradserve import reads .onnx files "
                           "(scikit-learn estimators: gradserve.importers.from_sklearn)")
