"""Models trained elsewhere, as gradserve models: scikit-learn MLPs.

    from gradserve.importers import from_sklearn
    result = from_sklearn(fitted_pipeline, out="repo/name")   # checked, then stored
    result.model.gradient(None, x, py)

Each importer checks itself before anything is written: the imported model's outputs must match
the source's on random inputs to the source's float precision (``check.TOLERANCE``), else
ImportCheckFailed. The packages they read with (scikit-learn: the ``import`` extra) are
imported on first use; without them a MissingDependency names the extra to install.
"""

from __future__ import annotations

from .check import ImportResult
from .sklearn import from_sklearn

__all__ = ["ImportResult", "from_sklearn"]
