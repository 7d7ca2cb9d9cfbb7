"""Import an ONNX graph of a tabular MLP as a gradserve model.

The graph is read with the ``onnx`` package (protobuf) and interpreted symbolically, node by
node. Every value is either a constant or an affine function ``concat(nodes) @ K + c`` of
gradserve nodes (the input, or layers made so far). Affine operators only compose K and c:

    Gemm, MatMul (by a constant), Add, Sub, Mul / Div (by a constant), Neg, Concat (on features),
    Identity, Dropout (inference: identity), Flatten (of a matrix), Constant

and an activation turns the affine value into a new dense layer of the spec:

    Relu, Tanh, Sigmoid, Softplus, Gelu (exact), Softmax (over features)

so ``Linear -> ReLU -> Linear`` becomes two layers, skip connections (Add of two branches) and
Concat become layers with several inputs, and normalisation written as Sub/Div in the graph
folds into the first kernel. Two idioms of exporters are recognised as the activation they spell:

    Mul(v, Sigmoid(v))                                  silu (PyTorch's SiLU)
    Where(Greater(v, t), v, Softplus(v))                softplus (PyTorch's Softplus, whose
                                                        linear tail beyond t = 20 differs from
                                                        softplus by < 3e-9)

Any other operator, or these operators used otherwise, raises UnsupportedModel naming it and its
node; so do graphs with more than one input or output, inputs that are not (n, m) matrices, and
operators from other domains.

Weights are upcast to float64 exactly, so the model serves float64 derivatives of the graph's
function. The check compares the model with the graph run by ``onnx.reference`` (the package's
own evaluator) in the graph's precision.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pydantic

from ..engine import Model
from ..errors import UnsupportedModel
from ..network import join_weights
from ..spec import FORMAT_VERSION, INPUT_NODE, Feature, Layer, ModelSpec
from .affine import Above, Affine, combine
from .check import ImportResult, check_inputs, self_check, store

__all__ = ["from_onnx", "SUPPORTED_OPS"]

_AFFINE_OPS = ("Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Concat", "Identity",
               "Dropout", "Flatten", "Constant")
_ACTIVATION_OPS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Softplus": "softplus",
                   "Gelu": "gelu", "Softmax": "softmax"}
_IDIOM_OPS = ("Greater", "Where")
SUPPORTED_OPS = tuple(sorted((*_AFFINE_OPS, *_ACTIVATION_OPS, *_IDIOM_OPS)))


def _onnx():
    from ..optional import require

    return require("onnx", extra="import", purpose="importing ONNX models")


class _Translator:
    """Walks the graph once, in its (topological) order, building the spec's layers."""

    def __init__(self, graph, numpy_helper):
        self.graph = graph
        self.numpy_helper = numpy_helper
        self.values: dict[str, object] = {}  # ONNX tensor name -> Affine or np.ndarray
        self.layers: list[tuple[Layer, np.ndarray, np.ndarray]] = []
        self.made_from: dict[str, Affine] = {}  # layer name -> the value it activates
        for init in graph.initializer:
            self.values[init.name] = self._array(init)

    def _array(self, tensor) -> np.ndarray:
        return np.asarray(self.numpy_helper.to_array(tensor), dtype=np.float64)

    def _where(self, node) -> str:
        return f"{node.op_type} node {node.name!r}" if node.name else f"a {node.op_type} node"

    def add_layer(self, value: Affine, activation: str) -> Affine:
        name = f"layer{len(self.layers)}"
        layer = Layer(name=name, inputs=[n for n, _ in value.parts], units=value.units,
                      activation=activation)
        self.layers.append((layer, value.kernel, value.bias))
        self.made_from[name] = value
        return Affine.node(name, value.units)

    def _layer_of(self, value) -> Layer | None:
        """The layer a value is exactly the output of, if any."""
        if isinstance(value, Affine) and value.plain and value.parts[0][0] in self.made_from:
            return next(layer for layer, _, _ in self.layers if layer.name == value.parts[0][0])
        return None

    def run(self, input_name: str, m: int) -> Affine:
        self.values[input_name] = Affine.node(INPUT_NODE, m)
        for node in self.graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise UnsupportedModel(f"operator {node.domain}.{node.op_type} "
                                       f"({self._where(node)}) is not supported: only standard "
                                       "ONNX operators are")
            if node.op_type not in SUPPORTED_OPS:
                raise UnsupportedModel(
                    f"operator {node.op_type!r} ({self._where(node)}) is not supported; "
                    f"supported: {', '.join(SUPPORTED_OPS)}")
            result = self.apply(node)
            self.values[node.output[0]] = result
        return self.values[self.graph.output[0].name]

    # --- one node ----------------------------------------------------------------------------

    def _input(self, node, i: int):
        if i >= len(node.input) or not node.input[i]:
            return None
        name = node.input[i]
        if name not in self.values:
            raise UnsupportedModel(f"{self._where(node)} reads {name!r}, which nothing computes")
        return self.values[name]

    def _attrs(self, node) -> dict:
        onnx = _onnx()
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def apply(self, node):
        op, attrs = node.op_type, self._attrs(node)
        args = [self._input(node, i) for i in range(len(node.input))]
        if any(isinstance(a, Above) for a in args) and op != "Where":
            raise UnsupportedModel(f"{self._where(node)} reads a comparison: Greater is supported "
                                   "only as the threshold of a Softplus")
        if op == "Constant":
            if "value" not in attrs:
                raise UnsupportedModel(f"{self._where(node)}: only tensor constants are supported")
            return self._array(attrs["value"])
        if all(isinstance(a, np.ndarray) or a is None for a in args):
            raise UnsupportedModel(f"{self._where(node)} computes on constants only; fold "
                                   "constants before export (onnx optimizers do)")
        if op in _ACTIVATION_OPS:
            return self._activation(node, op, attrs, args[0])
        if op in ("Identity", "Dropout"):
            return args[0]
        if op == "Flatten":
            if attrs.get("axis", 1) != 1:
                raise UnsupportedModel(f"{self._where(node)}: only Flatten(axis=1) of a matrix")
            return args[0]
        if op in ("Gemm", "MatMul"):
            return self._dense(node, op, attrs, args)
        if op in _IDIOM_OPS:
            return self._idiom(node, op, args)
        if op == "Concat":
            if attrs.get("axis") not in (1, -1):
                raise UnsupportedModel(f"{self._where(node)}: only Concat over features (axis 1)")
            return combine([self._as_affine(node, a) for a in args], stack=True)
        return self._elementwise(node, op, args)

    def _as_affine(self, node, value) -> Affine:
        if isinstance(value, Affine):
            return value
        row = np.asarray(value).reshape(-1) if np.ndim(value) <= 1 or np.shape(value)[0] == 1 \
            else None
        if row is None:
            raise UnsupportedModel(f"{self._where(node)}: a constant must be the same for every "
                                   f"row; got shape {np.shape(value)}")
        return Affine((), np.zeros((0, row.size)), row.astype(np.float64))

    def _per_unit(self, node, c: np.ndarray, units: int) -> np.ndarray:
        """A constant broadcast over the rows of a (n, units) value -> (units,)."""
        shape = np.shape(c)
        if len(shape) > 2 or (len(shape) == 2 and shape[0] != 1) or \
                (shape and shape[-1] not in (1, units)):
            raise UnsupportedModel(f"{self._where(node)}: constant of shape {shape} does not "
                                   f"broadcast over rows of {units} features")
        return np.broadcast_to(np.asarray(c, dtype=np.float64).reshape(-1), (units,)).copy()

    def _activation(self, node, op, attrs, value) -> Affine:
        if op == "Softmax" and attrs.get("axis", -1) not in (1, -1):
            raise UnsupportedModel(f"{self._where(node)}: only Softmax over features (axis -1)")
        if op == "Gelu" and attrs.get("approximate", b"none") not in (b"none", "none"):
            raise UnsupportedModel(f"{self._where(node)}: Gelu(approximate='tanh') is not "
                                   "supported; the spec's gelu is the exact (erf) form")
        return self.add_layer(value, _ACTIVATION_OPS[op])

    def _dense(self, node, op, attrs, args) -> Affine:
        a, b = args[0], args[1]
        if not isinstance(a, Affine) or not isinstance(b, np.ndarray):
            raise UnsupportedModel(f"{self._where(node)}: only (computed value) x (constant "
                                   "matrix) products are supported")
        if attrs.get("transA", 0):
            raise UnsupportedModel(f"{self._where(node)}: Gemm with transA is not supported")
        if b.ndim != 2:
            raise UnsupportedModel(f"{self._where(node)}: the weight must be a matrix; got shape "
                                   f"{b.shape}")
        matrix = b.T if attrs.get("transB", 0) else b
        if matrix.shape[0] != a.units:
            raise UnsupportedModel(f"{self._where(node)}: weight of shape {b.shape} does not "
                                   f"apply to {a.units} features")
        matrix = attrs.get("alpha", 1.0) * matrix
        bias = 0.0
        if op == "Gemm" and len(args) > 2 and args[2] is not None:
            if not isinstance(args[2], np.ndarray):
                raise UnsupportedModel(f"{self._where(node)}: the bias C must be a constant")
            bias = attrs.get("beta", 1.0) * self._per_unit(node, args[2], matrix.shape[1])
        return a.then(matrix, bias)

    def _idiom(self, node, op, args):
        if op == "Greater":
            value, threshold = args
            if not isinstance(value, Affine) or not isinstance(threshold, np.ndarray) or \
                    threshold.size != 1:
                raise UnsupportedModel(f"{self._where(node)}: Greater is supported only as "
                                       "(value > scalar constant), the threshold of a Softplus")
            return Above(value, float(threshold.reshape(-1)[0]))
        cond, above, below = args
        soft = self._layer_of(below)
        if not (isinstance(cond, Above) and above is cond.value and soft is not None
                and soft.activation == "softplus" and self.made_from[soft.name] is cond.value):
            raise UnsupportedModel(f"{self._where(node)}: Where is supported only as "
                                   "Where(v > t, v, Softplus(v)), a Softplus with a linear tail")
        return below

    def _silu(self, node, x, y) -> Affine | None:
        """Mul(v, Sigmoid(v)) -> a silu layer on v (the sigmoid layer is pruned if unused)."""
        for value, gate in ((x, y), (y, x)):
            layer = self._layer_of(gate)
            if layer is not None and layer.activation == "sigmoid" and \
                    self.made_from[layer.name] is value:
                return self.add_layer(value, "silu")
        return None

    def _elementwise(self, node, op, args) -> Affine:
        if op == "Neg":
            return args[0].scaled(-1.0)
        x, y = args
        if op == "Mul" and isinstance(x, Affine) and isinstance(y, Affine):
            silu = self._silu(node, x, y)
            if silu is not None:
                return silu
        if op in ("Add", "Sub"):
            sign = 1.0 if op == "Add" else -1.0
            if isinstance(x, Affine) and isinstance(y, Affine):
                return combine([x, y.scaled(sign)], stack=False)
            if isinstance(x, Affine):
                return Affine(x.parts, x.kernel, x.bias + sign * self._per_unit(node, y, x.units))
            return Affine(y.parts, sign * y.kernel,
                          self._per_unit(node, x, y.units) + sign * y.bias)
        # Mul, Div: only by a constant, or it is not affine
        if isinstance(x, Affine) and isinstance(y, Affine):
            raise UnsupportedModel(f"{self._where(node)}: a product of two computed values is "
                                   "not a dense layer")
        if op == "Div" and not isinstance(x, Affine):
            raise UnsupportedModel(f"{self._where(node)}: dividing by a computed value is not "
                                   "supported")
        value, c = (x, y) if isinstance(x, Affine) else (y, x)
        factor = self._per_unit(node, c, value.units)
        return value.scaled(1.0 / factor if op == "Div" else factor)


def _load(source):
    onnx = _onnx()
    if isinstance(source, onnx.ModelProto):
        return source, "an ONNX model"
    if isinstance(source, (bytes, bytearray)):
        proto, label = onnx.load_from_string(bytes(source)), "an ONNX model"
    else:
        path = Path(source)
        if not path.is_file():
            raise UnsupportedModel(f"{path} is not a file")
        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
            raise UnsupportedModel(f"{path.name} is not a readable ONNX file ({exc})") from None
        label = path.name
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise UnsupportedModel(f"{label} is not a valid ONNX model: {exc}") from None
    return proto, label


def _signature(graph, onnx) -> tuple[str, int, str]:
    """(input name, number of features, precision) of the graph's single matrix input."""
    constant = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in constant]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise UnsupportedModel(f"the graph has {len(inputs)} inputs and {len(graph.output)} "
                               "outputs; a tabular model has one of each")
    tensor = inputs[0].type.tensor_type
    dims = tensor.shape.dim
    precision = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64"}.get(
        tensor.elem_type)
    if precision is None:
        raise UnsupportedModel(f"input {inputs[0].name!r} has element type "
                               f"{onnx.TensorProto.DataType.Name(tensor.elem_type)}; expected "
                               "FLOAT or DOUBLE")
    if len(dims) != 2 or not dims[1].HasField("dim_value"):
        raise UnsupportedModel(f"input {inputs[0].name!r} must be a matrix (n, m) with a fixed "
                               "number of features m")
    return inputs[0].name, int(dims[1].dim_value), precision


def _prune(layers, last: str):
    """Keep only the layers the output depends on (an exporter may leave dead branches); they
    all come before ``last``, which therefore ends the list."""
    needed = {last}
    for layer, _, _ in reversed(layers):
        if layer.name in needed:
            needed.update(layer.inputs)
    return [entry for entry in layers if entry[0].name in needed]


def _features(names, count: int, prefix: str, lo, hi) -> list[Feature]:
    names = list(names) if names is not None else [f"{prefix}{j}" for j in range(count)]
    if len(names) != count:
        raise UnsupportedModel(f"{len(names)} names given for {count} "
                               f"{'inputs' if prefix == 'x' else 'outputs'}")
    lo, hi = np.broadcast_to(lo, (count,)), np.broadcast_to(hi, (count,))
    return [Feature(name=n, min=float(a), max=float(b)) for n, a, b in zip(names, lo, hi)]


def from_onnx(source, *, input_names: Sequence[str] | None = None,
              output_names: Sequence[str] | None = None, kind: str | None = None,
              input_range=None, name: str = "model", out: str | os.PathLike | None = None,
              n_check: int = 256, seed: int = 0) -> ImportResult:
    """Translate an ONNX model (a path, its bytes or a ``ModelProto``), check it against the
    graph on ``n_check`` random inputs, and with ``out`` (``REPO/NAME``) store it.

    kind: default "classification" when the graph ends in Softmax, else "regression".
    input_range: (min, max) per feature (or scalars) recorded in the spec and used to draw the
    check inputs; default (-1, 1).
    """
    onnx = _onnx()
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    proto, label = _load(source)
    input_name, m, precision = _signature(proto.graph, onnx)
    translator = _Translator(proto.graph, numpy_helper)
    value = translator.run(input_name, m)
    if not isinstance(value, Affine):
        raise UnsupportedModel("the graph's output is a constant")
    if not value.plain or value.parts[0][0] == INPUT_NODE:
        value = translator.add_layer(value, "identity")  # a final linear map is a layer too
    layers = _prune(translator.layers, value.parts[0][0])
    k = value.units
    kind = kind or ("classification" if layers[-1][0].activation == "softmax" else "regression")
    lo, hi = (np.asarray(v, dtype=np.float64) for v in
              (input_range if input_range is not None else (-1.0, 1.0)))
    out_lo, out_hi = (0.0, 1.0) if kind == "classification" else (-1.0, 1.0)
    try:
        spec = ModelSpec(
            format_version=FORMAT_VERSION, kind=kind, dtype="float64",
            inputs=_features(input_names, m, "x", lo, hi),
            outputs=_features(output_names, k, "y", out_lo, out_hi),
            layers=[layer for layer, _, _ in layers],
            metadata={"import": {"source": "onnx", "file": label, "producer":
                                 f"{proto.producer_name} {proto.producer_version}".strip(),
                                 "opset": max((o.version for o in proto.opset_import
                                               if o.domain in ("", "ai.onnx")), default=None),
                                 "precision": precision}})
    except pydantic.ValidationError as exc:
        raise UnsupportedModel(f"{label}: {exc.errors()[0]['msg']}") from None
    tensors = {}
    for layer, kernel, bias in layers:
        tensors[f"{layer.name}.weight"], tensors[f"{layer.name}.bias"] = kernel, bias
    model = Model(spec, join_weights(spec, tensors), name=name)

    evaluator = ReferenceEvaluator(proto)
    x = check_inputs(np.broadcast_to(lo, (m,)), np.broadcast_to(hi, (m,)), n_check, seed)
    error, tolerance = self_check(
        model, lambda xx: evaluator.run(None, {input_name: xx.astype(precision)})[0], x,
        precision, label)
    return store(ImportResult(model, label, error, tolerance, n_check), out)
