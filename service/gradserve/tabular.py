"""Tabular data for ``build``: read a CSV or Parquet file (or take arrays), pick and check columns.

A :class:`Table` holds the columns as read: strings from a CSV, native values from Parquet or
numpy. Nothing is converted until a column is picked for a role (input, output, label), and every
problem found then raises :class:`~gradserve.errors.BadData` naming the column and the row: a
missing column, a value that is not a number, a missing value, NaN or infinity, a constant column,
too few rows. CSV rows are named by their line in the file (the header is line 1), other rows by
their index from 0.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import BadData
from .optional import require

__all__ = ["Table", "read_table", "table_from_columns", "MIN_ROWS"]

# Below this a validation split and a fit of even the smallest network mean little.
MIN_ROWS = 10
_MISSING = ("", "na", "n/a", "null", "none")  # spellings of an empty cell, lower-cased


@dataclass(frozen=True)
class Table:
    """Named columns of equal length n: ``columns[name]`` is an (n,) array.

    source: how messages name the data (a file name, or "data"). lines: for a CSV, the file line
    of each row, so messages point into the file.
    """

    columns: dict[str, np.ndarray]
    source: str = "data"
    lines: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def where(self, row: int) -> str:
        """Where row ``row`` (an index from 0) is, in words."""
        return f"line {int(self.lines[row])}" if self.lines is not None else f"row {row}"

    def require_columns(self, names: Sequence[str], role: str) -> None:
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise BadData(f"{role} column {missing[0]!r} is not in {self.source}; "
                          f"its columns are {self.names}")

    def check_rows(self, minimum: int = MIN_ROWS) -> None:
        if self.n_rows < minimum:
            raise BadData(f"{self.source} has {self.n_rows} rows; building a model needs at "
                          f"least {minimum}")

    def numeric(self, names: Sequence[str], role: str) -> np.ndarray:
        """The named columns as one float64 matrix (n, len(names)), every value a finite number."""
        self.require_columns(names, role)
        return np.column_stack([self._number_column(n) for n in names]) if names else \
            np.empty((self.n_rows, 0))

    def check_not_constant(self, data: np.ndarray, names: Sequence[str], role: str) -> None:
        """Refuse a constant column: it carries no information, and its scale would be 0."""
        for j, name in enumerate(names):
            col = data[:, j]
            if col.min() == col.max():
                raise BadData(f"{role} column {name!r} of {self.source} is constant (every row "
                              f"is {col[0]:.6g}): it carries no information; leave it out")

    def labels(self, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Class targets: (one-hot (n, k) float64, class names).

        One column: its values are the labels (strings or numbers), classes in sorted order
        (numerically when all are numbers). Several columns: already one-hot, one per class,
        named after the columns; every row must hold one 1 and zeros.
        """
        self.require_columns(names, "output")
        if len(names) > 1:
            hot = self.numeric(names, "output")
            bad = np.flatnonzero(~np.all((hot == 0) | (hot == 1), axis=1) | (hot.sum(axis=1) != 1))
            if bad.size:
                raise BadData(f"output columns {list(names)} of {self.source}, "
                              f"{self.where(bad[0])}: "
                              f"a one-hot row needs one 1 and zeros, got {hot[bad[0]].tolist()}")
            classes = list(names)
        else:
            name = names[0]
            values = [self._label(name, i, v) for i, v in enumerate(self.columns[name])]
            classes = sorted(set(values), key=_label_order(set(values)))
            index = {c: j for j, c in enumerate(classes)}
            hot = np.eye(len(classes))[[index[v] for v in values]]
        if len(classes) < 2:
            raise BadData(f"output {list(names)} of {self.source} holds a single class "
                          f"{classes[0]!r}: a classifier needs at least two")
        return hot, classes

    # --- one column -------------------------------------------------------------------------

    def _number_column(self, name: str) -> np.ndarray:
        col = self.columns[name]
        if col.dtype.kind in "fiub":
            out = col.astype(np.float64)
        else:
            try:
                out = col.astype(np.float64)
            except (ValueError, TypeError):
                out = self._find_bad_value(name, col)
        bad = np.flatnonzero(~np.isfinite(out))
        if bad.size:
            i = int(bad[0])
            raw = col[i]
            if raw is None or (isinstance(raw, str) and raw.strip().lower() in _MISSING):
                problem = "the value is missing"
            else:
                shown = "NaN" if np.isnan(out[i]) else out[i]
                problem = f"the value is {shown}, not a finite number"
            raise BadData(f"column {name!r} of {self.source}, {self.where(i)}: {problem}")
        return out

    def _find_bad_value(self, name: str, col: np.ndarray) -> np.ndarray:
        """Convert value by value, to name the first that is not a number."""
        out = np.empty(len(col))
        for i, value in enumerate(col):
            if value is None or (isinstance(value, str) and value.strip().lower() in _MISSING):
                raise BadData(f"column {name!r} of {self.source}, {self.where(i)}: "
                              "the value is missing")
            try:
                out[i] = float(value)
            except (ValueError, TypeError):
                raise BadData(f"column {name!r} of {self.source}, {self.where(i)}: {value!r} "
                              "is not a number") from None
        return out

    def _label(self, name: str, i: int, value: object) -> str:
        if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)) or \
                (isinstance(value, str) and value.strip().lower() in _MISSING):
            raise BadData(f"label column {name!r} of {self.source}, {self.where(i)}: "
                          "the label is missing")
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)  # 1.0 and 1 are one class, named "1"
        return str(value).strip()


def _label_order(values: set[str]):
    try:
        for v in values:
            float(v)
    except ValueError:
        return lambda v: v
    return float


# --- sources -----------------------------------------------------------------------------------

def read_table(path: str | os.PathLike) -> Table:
    """Read a ``.csv`` (or ``.txt``/``.tsv``; delimiter guessed from the header: comma, semicolon
    or tab) or a ``.parquet`` file. The first CSV line is the header."""
    path = Path(path)
    if not path.is_file():
        raise BadData(f"{path} is not a file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(path)
    return _read_csv(path)


def _read_csv(path: Path) -> Table:
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: drop a spreadsheet's BOM
        first = f.readline()
        delimiter = max(",;\t", key=first.count) if first.strip() else ","
        f.seek(0)
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise BadData(f"{path.name} is empty: expected a header line naming the columns")
        names = [h.strip() for h in header]
        for j, name in enumerate(names):
            if not name:
                raise BadData(f"{path.name}: column {j + 1} of the header has no name")
            if names.index(name) != j:
                raise BadData(f"{path.name}: the header names column {name!r} twice")
        rows, lines = [], []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if len(row) != len(names):
                raise BadData(f"{path.name}, line {reader.line_num}: {len(row)} fields, but the "
                              f"header has {len(names)}")
            rows.append(row)
            lines.append(reader.line_num)
    cells = np.array(rows, dtype=object).reshape(len(rows), len(names))
    columns = {name: cells[:, j] for j, name in enumerate(names)}
    return Table(columns, source=path.name, lines=np.array(lines, dtype=np.int64))


def _read_parquet(path: Path) -> Table:
    pq = require("pyarrow.parquet", extra="build", purpose="reading Parquet files",
                 package="pyarrow")
    try:
        arrow = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise BadData(f"{path.name} is not a readable Parquet file ({exc})") from None
    columns = {}
    for name in arrow.column_names:
        col = arrow.column(name)
        # Nulls become None in an object column, so they read as "missing", not as NaN.
        columns[name] = np.array(col.to_pylist(), dtype=object) if col.null_count else \
            np.asarray(col.to_numpy())
    return Table(columns, source=path.name)


def table_from_columns(columns: Mapping[str, object], source: str = "data") -> Table:
    """A table from arrays by name; each must be one-dimensional (or (n, 1)), all of one length."""
    out, n = {}, None
    for name, values in columns.items():
        arr = np.asarray(values)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise BadData(f"column {name!r} of {source} must be one-dimensional; "
                          f"got shape {arr.shape}")
        if n is not None and len(arr) != n:
            raise BadData(f"column {name!r} of {source} has {len(arr)} rows; the others have {n}")
        n = len(arr)
        out[str(name)] = arr
    if not out:
        raise BadData(f"{source} has no columns")
    return Table(out, source=source)
