"""``gradserve import`` and the optional-dependency errors."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import gradserve  # noqa: E402
from gradserve.cli import main  # noqa: E402
from gradserve.errors import MissingDependency  # noqa: E402
from gradserve.optional import require  # noqa: E402


def write_graph(path):
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "V"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])],
        [numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 7 - 0.8, "W"),
         numpy_helper.from_array(np.full(4, 0.1, np.float32), "b"),
         numpy_helper.from_array(np.ones((4, 1), np.float32), "V")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_import_writes_a_version_and_prints_the_check(tmp_path, capsys):
    path = write_graph(tmp_path / "net.onnx")
    out = tmp_path / "repo" / "net"
    assert main(["import", str(path), "--out", str(out), "--inputs", "a,b,c", "--outputs", "q"]) == 0
    printed = capsys.readouterr().out
    assert f"-> {out} version 1" in printed and "3 -> 4 relu -> 1 identity, p = 21" in printed
    assert "largest relative difference" in printed
    model = gradserve.load_model(out)
    assert [f.name for f in model.spec.inputs] == ["a", "b", "c"] and model.spec.outputs[0].name == "q"
    assert model.spec.metadata["import"]["precision"] == "float32"


@pytest.mark.parametrize("name, words", [("est.pkl", "pickled estimators are not loaded"),
                                         ("model.h5", "reads .onnx files")])
def test_other_files_are_refused_with_the_reason(tmp_path, capsys, name, words):
    (tmp_path / name).write_bytes(b"x")
    assert main(["import", str(tmp_path / name), "--out", str(tmp_path / "r" / "m")]) == 1
    assert words in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_missing_optional_package_names_its_extra():
    with pytest.raises(MissingDependency, match=r"pip install 'gradserve\[import\]'"):
        require("gradserve_no_such_package", extra="import", purpose="importing things")
    assert issubclass(MissingDependency, ImportError)


def test_importing_gradserve_loads_no_optional_package():
    """Serving never pays for the builder or the importers: they load on first use."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    service = str(Path(gradserve.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": service}

    def loaded(code):
        probe = f"import sys, gradserve; {code}; print(sorted(m for m in ('optax', 'sklearn', " \
                "'onnx', 'pyarrow', 'torch') if m in sys.modules))"
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              env=env, check=True).stdout.strip()

    assert loaded("pass") == "[]"
    # reaching the functions loads their modules, still not the packages they read with
    assert loaded("gradserve.from_onnx, gradserve.from_sklearn, gradserve.build") == "['optax']"
