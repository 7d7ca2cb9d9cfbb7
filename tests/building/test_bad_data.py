"""Unusable data is refused before any training, with a BadData naming the column and the row."""

from pathlib import Path

import numpy as np
import pytest

import gradserve
from gradserve.errors import BadData, GradserveError, InvalidInput

HEADER = "a,b,y"


def good_rows(n=12):
    return [f"{i},{(i * 7) % 5},{i * 0.5}" for i in range(n)]


def write(tmp_path: Path, lines, name="data.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def refused(data, match, **kw):
    kw = {"outputs": ["y"], "progress": False, **kw}
    with pytest.raises(BadData, match=match) as info:
        gradserve.build(data, **kw)
    return info.value


def test_bad_data_is_a_gradserve_error_and_an_invalid_input():
    assert issubclass(BadData, GradserveError) and issubclass(BadData, InvalidInput)


def test_a_missing_column_is_named_with_the_columns_there_are(tmp_path):
    path = write(tmp_path, [HEADER, *good_rows()])
    refused(path, r"input column 'c' is not in data.csv; its columns are \['a', 'b', 'y'\]",
            inputs=["a", "c"])
    refused(path, r"output column 'z' is not in data.csv", outputs=["z"])


def test_a_value_that_is_not_a_number_is_named_by_column_and_line(tmp_path):
    rows = good_rows()
    rows[4] = "4,oops,2.0"
    refused(write(tmp_path, [HEADER, *rows]), r"column 'b' of data.csv, line 6: 'oops' is not a number")


@pytest.mark.parametrize("cell, words", [("", "the value is missing"), ("NA", "the value is missing"),
                                         ("nan", "the value is NaN"), ("inf", "the value is inf")])
def test_missing_nan_and_infinite_values_are_named(tmp_path, cell, words):
    rows = good_rows()
    rows[7] = f"7,{cell},3.5"
    refused(write(tmp_path, [HEADER, *rows]), f"column 'b' of data.csv, line 9: {words}")


def test_a_constant_column_is_refused(tmp_path):
    rows = [f"{i},3,{i * 0.5}" for i in range(12)]
    refused(write(tmp_path, [HEADER, *rows]), r"input column 'b' of data.csv is constant \(every row is 3\)")
    rows = [f"{i},{i % 3},1.5" for i in range(12)]
    refused(write(tmp_path, [HEADER, *rows]), r"output column 'y' of data.csv is constant")


def test_too_few_rows_are_refused(tmp_path):
    refused(write(tmp_path, [HEADER, *good_rows(6)]), "data.csv has 6 rows; building a model needs at least 10")


def test_malformed_files_are_refused(tmp_path):
    refused(write(tmp_path, [HEADER, *good_rows()[:3], "1,2", *good_rows()[3:]]),
            "data.csv, line 5: 2 fields, but the header has 3")
    refused(write(tmp_path, ["a,a,y", *good_rows()]), "the header names column 'a' twice")
    refused(write(tmp_path, [""]), "data.csv is empty")
    refused(tmp_path / "absent.csv", "is not a file")


def test_arrays_are_checked_the_same_way():
    x = np.random.default_rng(0).normal(size=(20, 2))
    y = x[:, :1] * 2
    x[13, 1] = np.nan
    refused((x, y), r"column 'x1' of arrays, row 13: the value is NaN", outputs=None)
    refused({"p": [1.0] * 20, "q": np.arange(20.0), "y": np.arange(20.0) ** 2},
            r"input column 'p' of data is constant")
    refused((x, y), "3 input names for the 2 columns of x", inputs=["a", "b", "c"], outputs=None)
    with pytest.raises(BadData, match="y must have 20 rows"):
        gradserve.build((x, y[:5]), progress=False)


def test_roles_and_the_split_are_checked(tmp_path):
    path = write(tmp_path, [HEADER, *good_rows()])
    refused(path, "column 'a' is both an input and an output", inputs=["a", "b"], outputs=["a", "y"])
    refused(path, "a regression model needs outputs", outputs=None)
    refused(path, "compression model's outputs are its inputs", kind="compression")
    refused(path, r"validation row 12 is outside data.csv's rows \(0 to 11\)", validation=[1, 12])
    refused(path, "between 0 and 1", validation=1.5)
    refused(path, "'median' is not one of", input_shift="median")


def test_classification_labels_are_checked(tmp_path):
    one_class = write(tmp_path, ["a,b,label", *[f"{i},{i % 4},cat" for i in range(12)]])
    refused(one_class, "holds a single class 'cat'", outputs=["label"], kind="classification")
    missing = write(tmp_path, ["a,b,label", *[f"{i},{i % 4},{'cat' if i != 5 else ''}" if i else
                                               f"{i},{i % 4},dog" for i in range(12)]], "m.csv")
    refused(missing, "label column 'label' of m.csv, line 7: the label is missing",
            outputs=["label"], kind="classification")
    hot = write(tmp_path, ["a,b,p,q", *[f"{i},{i % 4},1,{int(i == 3)}" for i in range(12)]], "h.csv")
    refused(hot, r"line 5: a one-hot row needs one 1 and zeros, got \[1.0, 1.0\]",
            outputs=["p", "q"], kind="classification")


def test_parquet_nulls_and_strings_are_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    n = 12
    table = pa.table({"a": list(range(n)), "b": [float(i % 5) if i != 8 else None for i in range(n)],
                      "s": [str(i) if i != 2 else "x" for i in range(n)], "y": [i * 0.5 for i in range(n)]})
    path = tmp_path / "data.parquet"
    pq.write_table(table, path)
    refused(path, "column 'b' of data.parquet, row 8: the value is missing", inputs=["a", "b"])
    refused(path, "column 's' of data.parquet, row 2: 'x' is not a number", inputs=["a", "s"])
