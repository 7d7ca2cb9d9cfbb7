"""gradserve: the derivatives of tabular neural models, in process and over HTTP.

In process::

    import gradserve
    model = gradserve.load_model("path/to/repo/borehole")   # latest version
    w = model.get_weights()                                  # (p, 1)
    dy = model.forward_derivative(w, dw, x, dx=None)         # (n, k)
    pw, px = model.gradient(w, x, py)                        # (p, 1), (n, m)

    result = gradserve.build("data.csv", outputs=["y"], out="repo/name")  # train and store
    result = gradserve.from_onnx("net.onnx", out="repo/net")              # import and store
"""

from .engine import DEFAULT_BUCKETS, Model, SetWeightsStatus
from .errors import (
    BadData,
    Forbidden,
    GradserveError,
    ImportCheckFailed,
    InvalidInput,
    MissingDependency,
    ModelFormatError,
    ModelNotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    UnsupportedModel,
    WeightsConflict,
)
from .loading import from_arrays, load_model, save_model
from .repository import ModelRepository
from .spec import Feature, Layer, ModelSpec

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BUCKETS",
    "Feature",
    "Forbidden",
    "GradserveError",
    "InvalidInput",
    "Layer",
    "Model",
    "ModelFormatError",
    "ModelNotFound",
    "ModelRepository",
    "ModelSpec",
    "PayloadTooLarge",
    "SetWeightsStatus",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "WeightsConflict",
    "BadData",
    "UnsupportedModel",
    "ImportCheckFailed",
    "MissingDependency",
    "build",
    "BuildResult",
    "from_onnx",
    "from_sklearn",
    "demo_repository",
    "from_arrays",
    "load_model",
    "save_model",
]


def demo_repository() -> str:
    """Path of the bundled demo model repository (borehole, a classifier, an autoencoder)."""
    from pathlib import Path

    return str(Path(__file__).parent / "demo_models")


# Loaded on first use: building needs the optimiser library, which serving never imports.
_LAZY = {"build": "builder", "BuildResult": "builder", "from_sklearn": "importers",
         "from_onnx": "importers"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
