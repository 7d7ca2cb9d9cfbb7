"""Optional dependencies, imported only when a feature needs them.

The core (engine, service) needs none of these; building from Parquet needs ``pyarrow``
(extra ``build``), the importers need ``scikit-learn`` or ``onnx`` (extra ``import``). Each is
imported at the call that uses it, so a missing one costs nothing until then, and then says which
extra brings it rather than failing with a bare ModuleNotFoundError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependency

__all__ = ["require"]


def require(module: str, *, extra: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingDependency naming the pip extra that installs it.

    package: the name to pip-install when it differs from the module's (scikit-learn: sklearn).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name != top and not exc.name.startswith(top + "."):
            raise  # the module is there but one of its own dependencies is not: show that error
        raise MissingDependency(
            f"{purpose} needs the package {package or top!r}, which is not installed: "
            f"pip install 'gradserve[{extra}]' (or pip install {package or top})"
        ) from None
