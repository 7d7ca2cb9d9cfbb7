"""The model spec: the JSON half of a model version (``model.json``).

A spec is static configuration: names, ranges, normalisation constants and the graph of dense
layers. The trainable numbers live in the weight file. See ``docs/model-format.md``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .errors import ModelFormatError

__all__ = ["FORMAT_VERSION", "ACTIVATIONS", "Feature", "Layer", "ModelSpec", "INPUT_NODE"]

FORMAT_VERSION = 1
INPUT_NODE = "input"
ACTIVATIONS = ("identity", "tanh", "relu", "sigmoid", "softplus", "gelu", "silu", "softmax")
Kind = Literal["regression", "classification", "compression"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """One input or output column: its name, the range it took in the training data, and its
    normalisation ``normalised = (raw - shift) / scale``."""

    name: str = Field(min_length=1)
    min: float
    max: float
    shift: float = 0.0
    scale: float = 1.0


class Layer(_Strict):
    """A dense layer: ``activation(concat(inputs) @ W + b)``, W of shape (fan_in, units)."""

    name: str = Field(min_length=1)
    inputs: list[str] = Field(min_length=1)
    units: int = Field(gt=0)
    activation: Literal[ACTIVATIONS]  # type: ignore[valid-type]


class ModelSpec(_Strict):
    """Everything about a model but its weights."""

    format_version: int
    kind: Kind = "regression"
    dtype: Literal["float64", "float32"] = "float64"
    inputs: list[Feature] = Field(min_length=1)
    outputs: list[Feature] = Field(min_length=1)
    layers: list[Layer] = Field(min_length=1)
    code_layer: str | None = None
    description: str = ""
    metadata: dict = Field(default_factory=dict)

    # --- derived sizes -------------------------------------------------------------------

    @property
    def n_inputs(self) -> int:
        return len(self.inputs)

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    def node_sizes(self) -> dict[str, int]:
        sizes = {INPUT_NODE: self.n_inputs}
        for layer in self.layers:
            sizes[layer.name] = layer.units
        return sizes

    def fan_in(self, layer: Layer) -> int:
        sizes = self.node_sizes()
        return sum(sizes[name] for name in layer.inputs)

    def weight_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The tensors of the weight file in flat-vector order: per layer, W then b."""
        shapes: list[tuple[str, tuple[int, ...]]] = []
        for layer in self.layers:
            shapes.append((f"{layer.name}.weight", (self.fan_in(layer), layer.units)))
            shapes.append((f"{layer.name}.bias", (layer.units,)))
        return shapes

    @property
    def n_weights(self) -> int:
        return sum(math.prod(shape) for _, shape in self.weight_shapes())

    # --- checks that span fields -------------------------------------------------------------

    @pydantic.model_validator(mode="after")
    def _check_graph(self) -> "ModelSpec":
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"format_version {self.format_version} is not supported (expected {FORMAT_VERSION})"
            )
        for group in ("inputs", "outputs"):
            features = getattr(self, group)
            names = [f.name for f in features]
            if len(set(names)) != len(names):
                raise ValueError(f"{group}: names must be unique, got {names}")
            for i, f in enumerate(features):
                values = {"min": f.min, "max": f.max, "shift": f.shift, "scale": f.scale}
                for key, value in values.items():
                    if not math.isfinite(value):
                        raise ValueError(f"{group}[{i}].{key} must be finite, got {value}")
                if f.scale == 0:
                    raise ValueError(f"{group}[{i}].scale must be non-zero")
                if f.min > f.max:
                    raise ValueError(f"{group}[{i}]: min {f.min} is above max {f.max}")
        seen = {INPUT_NODE}
        for i, layer in enumerate(self.layers):
            if layer.name in seen:
                raise ValueError(f"layers[{i}].name {layer.name!r} is used twice (or is {INPUT_NODE!r})")
            for src in layer.inputs:
                if src not in seen:
                    raise ValueError(
                        f"layers[{i}].inputs names {src!r}, which is neither {INPUT_NODE!r} "
                        f"nor an earlier layer (earlier nodes: {sorted(seen)})"
                    )
            seen.add(layer.name)
        last = self.layers[-1]
        if last.units != self.n_outputs:
            raise ValueError(
                f"the last layer {last.name!r} has {last.units} units; expected {self.n_outputs}, "
                "the number of outputs"
            )
        if self.kind == "classification":
            if last.activation != "softmax":
                raise ValueError("a classification model's last layer must use 'softmax'")
            if any(f.shift != 0 or f.scale != 1 for f in self.outputs):
                raise ValueError("a classification model's outputs are probabilities: shift 0, scale 1")
        if self.kind == "compression":
            if [f.name for f in self.outputs] != [f.name for f in self.inputs]:
                raise ValueError("a compression model's outputs must be its inputs, in order")
            if self.code_layer not in {layer.name for layer in self.layers[:-1]}:
                raise ValueError(
                    f"code_layer {self.code_layer!r} must name a hidden layer of a compression model"
                )
        elif self.code_layer is not None:
            raise ValueError("code_layer is only meaningful for a compression model")
        return self

    # --- reading and writing -------------------------------------------------------------------

    @classmethod
    def from_json_bytes(cls, data: bytes | str, path: object = "<spec>") -> "ModelSpec":
        """Parse and check a spec; any problem raises ModelFormatError naming the field."""
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFormatError(path, None, f"not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ModelFormatError(path, None, f"expected a JSON object, got {type(raw).__name__}")
        try:
            return cls.model_validate(raw)
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(part) for part in err["loc"]) or None
            problem = err["msg"]
            if err["type"] == "missing":
                problem = "is required but missing"
            elif "input" in err and err["type"] != "value_error":
                problem = f"{err['msg']} (got {err['input']!r})"
            raise ModelFormatError(path, field, problem) from None

    @classmethod
    def read(cls, path: Path) -> "ModelSpec":
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModelFormatError(path, None, f"cannot be read ({exc.strerror})") from None
        return cls.from_json_bytes(data, path)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_defaults=False), indent=2) + "\n"
