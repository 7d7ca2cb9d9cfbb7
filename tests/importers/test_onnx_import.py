"""from_onnx against real ONNX files exported in the test from PyTorch modules: outputs match
torch's, gradients agree with torch's autograd, and unsupported graphs are refused by name.

torch is a test-only dependency (a 192 MB CPU wheel); without it the torch-based tests skip and
the hand-built graphs below still run.
"""

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import gradserve  # noqa: E402
from gradserve.errors import ImportCheckFailed, UnsupportedModel  # noqa: E402
from gradserve.importers import from_onnx  # noqa: E402
from gradserve.importers.check import self_check  # noqa: E402


def torch_or_skip():
    return pytest.importorskip("torch", reason="torch (test extra) is needed to export ONNX files")


def export(module, m, path, dynamo=True):
    """Export as users do: the default (dynamo) exporter, a batch dimension left free."""
    torch = torch_or_skip()
    if dynamo:
        pytest.importorskip("onnxscript", reason="torch.onnx's default exporter needs onnxscript")
    x = torch.randn(3, m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, (x,), str(path), dynamo=True, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("n")},))
        else:
            torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "n"}})
    return path


def torch_double(module):
    """A float64 copy with the same (float32) weights: what the imported model computes."""
    import copy

    return copy.deepcopy(module).double()


def sequential():
    torch = torch_or_skip()
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.fixture(scope="module", params=[True, False], ids=["dynamo", "torchscript"])
def imported_sequential(request, tmp_path_factory):
    net = sequential()
    path = export(net, 5, tmp_path_factory.mktemp("onnx") / "seq.onnx", dynamo=request.param)
    return net, from_onnx(path, input_range=(-2.0, 2.0))


def test_a_sequential_matches_torch(imported_sequential):
    torch = torch_or_skip()
    net, result = imported_sequential
    spec = result.model.spec
    assert [layer.activation for layer in spec.layers] == ["tanh", "relu", "identity"]
    assert result.model.n_weights == sum(p.numel() for p in net.parameters())
    assert result.tolerance == 1e-5 and result.max_error < 1e-6  # float32 graph
    x = np.random.default_rng(0).uniform(-2, 2, (20, 5))
    with torch.no_grad():
        want32 = net(torch.tensor(x, dtype=torch.float32)).numpy()
        want64 = torch_double(net)(torch.tensor(x)).numpy()
    got = result.model.evaluate(x)
    assert np.abs(got - want32).max() < 1e-5 * max(1, np.abs(want32).max())
    np.testing.assert_allclose(got, want64, rtol=1e-12, atol=1e-13)


def test_gradients_agree_with_torch_autograd(imported_sequential):
    """pw and px of the imported model = torch's autograd of <py, net(x)>, in float64."""
    torch = torch_or_skip()
    net, result = imported_sequential
    model = result.model
    rng = np.random.default_rng(1)
    x, py = rng.uniform(-2, 2, (9, 5)), rng.normal(size=(9, 3))
    pw, px = model.gradient(None, x, py)
    double = torch_double(net)
    xt = torch.tensor(x, requires_grad=True)
    (double(xt) * torch.tensor(py)).sum().backward()
    np.testing.assert_allclose(px, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    # The flat weight order: per layer W (fan_in x units, row-major) then b; W = Linear.weight.T.
    torch_pw = np.concatenate([
        g for lin in double if isinstance(lin, torch.nn.Linear)
        for g in (lin.weight.grad.numpy().T.reshape(-1), lin.bias.grad.numpy())])
    np.testing.assert_allclose(pw[:, 0], torch_pw, rtol=1e-10, atol=1e-12)
    # and forward mode agrees with the reverse mode (the dot-product test)
    dw, dx = rng.normal(size=(model.n_weights, 1)), rng.normal(size=x.shape)
    dy = model.forward_derivative(None, dw, x, dx)
    assert abs(np.sum(py * dy) - (np.sum(pw * dw) + np.sum(px * dx))) < 1e-10 * np.sum(np.abs(py * dy))


class _Graph:
    """A module with what exporters produce beyond a chain: normalisation as Sub/Div, a skip
    connection (Add of two branches), a Concat, GELU, SiLU and Softplus."""

    @staticmethod
    def make():
        torch = torch_or_skip()
        nn = torch.nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("mu", torch.tensor([1.0, -2.0, 3.0, 0.5]))
                self.register_buffer("sd", torch.tensor([2.0, 0.5, 1.5, 4.0]))
                self.l1, self.l2 = nn.Linear(4, 6), nn.Linear(6, 6)
                self.l3, self.l4 = nn.Linear(4, 6), nn.Linear(12, 2)
                self.gelu, self.silu, self.softplus = nn.GELU(), nn.SiLU(), nn.Softplus()

            def forward(self, x):
                z = (x - self.mu) / self.sd
                h = torch.tanh(self.l1(z))
                g = torch.sigmoid(self.l2(h)) + self.l3(z)
                return self.l4(torch.cat([self.gelu(h) + self.silu(h), self.softplus(g)], dim=1))

        torch.manual_seed(3)
        return Net()


def test_a_graph_with_skip_connections_matches_torch_values_and_input_gradients(tmp_path):
    torch = torch_or_skip()
    net = _Graph.make()
    result = from_onnx(export(net, 4, tmp_path / "graph.onnx"), input_range=(-5.0, 5.0),
                       input_names=["a", "b", "c", "d"], output_names=["u", "v"])
    model = result.model
    assert {layer.activation for layer in model.spec.layers} >= {"gelu", "silu", "softplus", "sigmoid"}
    assert any(len(layer.inputs) > 1 for layer in model.spec.layers)  # the skip connection
    x = np.random.default_rng(2).uniform(-5, 5, (11, 4))
    double = torch_double(net)
    xt = torch.tensor(x, requires_grad=True)
    out = double(xt)
    np.testing.assert_allclose(model.evaluate(x), out.detach().numpy(), rtol=1e-12, atol=1e-13)
    py = np.random.default_rng(3).normal(size=(11, 2))
    (out * torch.tensor(py)).sum().backward()
    np.testing.assert_allclose(model.gradient(None, x, py)[1], xt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_a_softmax_classifier_imports_as_classification(tmp_path):
    torch = torch_or_skip()
    nn = torch.nn
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 4), nn.Softmax(dim=-1))
    result = from_onnx(export(net, 3, tmp_path / "cls.onnx"),
                       output_names=["w", "x", "y", "z"], out=tmp_path / "repo" / "cls")
    assert result.model.spec.kind == "classification" and result.version == 1
    loaded = gradserve.load_model(tmp_path / "repo" / "cls")
    x = np.random.default_rng(0).uniform(-1, 1, (6, 3))
    with torch.no_grad():
        want = torch_double(net)(torch.tensor(x)).numpy()
    np.testing.assert_allclose(loaded.evaluate(x), want, rtol=1e-12, atol=1e-14)


def test_an_unsupported_torch_layer_is_refused_naming_its_op(tmp_path):
    torch = torch_or_skip()
    nn = torch.nn
    net = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(), nn.Linear(4, 1))
    with pytest.raises(UnsupportedModel, match="operator 'LeakyRelu' .* is not supported"):
        from_onnx(export(net, 3, tmp_path / "leaky.onnx"))


# --- hand-built graphs (no torch needed) --------------------------------------------------------

def graph(nodes, inputs=None, initializers=(), out_units=2):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", 3])]
    output = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", out_units])
    g = helper.make_graph(nodes, "g", inputs, [output],
                          [numpy_helper.from_array(np.asarray(v, dtype=np.float64), k)
                           for k, v in initializers])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


W = np.arange(6.0).reshape(3, 2) / 10


def test_a_float64_graph_is_reproduced_to_rounding():
    model = graph([helper.make_node("MatMul", ["x", "W"], ["h"]),
                   helper.make_node("Add", ["h", "b"], ["z"]),
                   helper.make_node("Tanh", ["z"], ["y"])],
                  initializers=[("W", W), ("b", [0.5, -0.5])])
    result = from_onnx(model)
    assert result.tolerance == 1e-10 and result.max_error < 1e-14
    x = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(result.model.evaluate(x), np.tanh(x @ W + [0.5, -0.5]), rtol=1e-15)


@pytest.mark.parametrize("nodes, inputs, words", [
    ([helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Sin", ["h"], ["y"])], None,
     r"operator 'Sin' \(Sin node 's1'\) is not supported"),
    ([helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Mul", ["h", "h"], ["y"])], None,
     "a product of two computed values"),
    ([helper.make_node("MatMul", ["x", "W"], ["y"])],
     [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", 3]),
      helper.make_tensor_value_info("x2", TensorProto.DOUBLE, ["n", 3])], "2 inputs and 1 outputs"),
    ([helper.make_node("MatMul", ["x", "W"], ["y"])],
     [helper.make_tensor_value_info("x", TensorProto.INT64, ["n", 3])], "element type INT64"),
    ([helper.make_node("MatMul", ["x", "W"], ["y"])],
     [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", "m"])], "fixed number of features"),
])
def test_unsupported_graphs_are_refused_by_name(nodes, inputs, words):
    for i, node in enumerate(nodes):
        node.name = f"s{i}"
    with pytest.raises(UnsupportedModel, match=words):
        from_onnx(graph(nodes, inputs, initializers=[("W", W)]))


def test_an_unreadable_file_is_refused(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00not a protobuf\xff" * 10)
    with pytest.raises(UnsupportedModel, match="junk.onnx is not a"):
        from_onnx(path)


def test_the_self_check_refuses_a_model_that_does_not_reproduce_its_source(tmp_path):
    model = from_onnx(graph([helper.make_node("MatMul", ["x", "W"], ["y"])],
                            initializers=[("W", W)])).model
    x = np.ones((4, 3))
    with pytest.raises(ImportCheckFailed, match="output 'y1' at check input 0 .* nothing was written"):
        self_check(model, lambda xx: model.evaluate(xx) + [0.0, 1e-6], x, "float64", "a test")
