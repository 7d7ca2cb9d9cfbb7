"""``gradserve build``: the argument forms, the report on stdout, errors on stderr with status 1."""

import argparse
from pathlib import Path

import pytest

import gradserve
from gradserve.cli import main
from gradserve.commands import choice_arg, rows_arg, validation_arg

DATA = Path(__file__).resolve().parents[2] / "service" / "demo" / "data"


def test_the_argument_forms(tmp_path):
    assert validation_arg("20%") == validation_arg("20") == validation_arg("0.2") == 0.2
    with pytest.raises(argparse.ArgumentTypeError):
        validation_arg("100%")
    assert rows_arg("0,5,10-12") == [0, 5, 10, 11, 12]
    (tmp_path / "rows.txt").write_text("3 4\n7\n")
    assert rows_arg(f"@{tmp_path / 'rows.txt'}") == [3, 4, 7]
    assert choice_arg("mean") == (None, "mean") and choice_arg("Tu=min") == ("Tu", "min")


def test_build_writes_a_version_and_prints_the_report(tmp_path, capsys):
    out = tmp_path / "repo" / "bore"
    status = main(["build", str(DATA / "borehole_train.csv"), "--outputs", "flow", "--out", str(out),
                   "--hidden", "3", "--epochs", "20", "--input-shift", "mean",
                   "--input-shift", "Tu=min", "--input-scale", "std", "--validation", "25%"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert f"-> {out} version 1" in captured.out and "flow" in captured.out
    assert "[1/1] 8-3-1 p=31" in captured.err  # the progress line (stderr is not a terminal here)
    spec = gradserve.load_model(out).spec
    shifts = spec.metadata["build"]["normalisation"]["input_shift"]
    assert shifts[2] == "min" and shifts.count("mean") == 7
    assert spec.metadata["build"]["n_validation"] == 500


def test_bad_data_exits_1_with_the_reason(tmp_path, capsys):
    status = main(["build", str(DATA / "borehole_train.csv"), "--inputs", "rw,nope",
                   "--outputs", "flow", "--out", str(tmp_path / "r" / "m"), "--quiet"])
    captured = capsys.readouterr()
    assert status == 1
    assert "gradserve build: input column 'nope' is not in borehole_train.csv" in captured.err
    assert not (tmp_path / "r").exists()
