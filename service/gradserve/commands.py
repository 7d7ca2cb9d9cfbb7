"""The ``build`` and ``import`` subcommands: argument types and the functions they dispatch to.

``cli.py`` registers the arguments; this module turns them into calls of ``gradserve.build`` and
the importers, prints the report, and maps errors to an exit status (1: the data or the model was
refused, with the reason on stderr). Heavy modules are imported inside the run functions, so
``gradserve --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["choice_arg", "columns_arg", "hidden_arg", "rows_arg", "validation_arg",
           "run_build", "run_import"]


def columns_arg(text: str) -> list[str]:
    """``a,b,c`` -> ["a", "b", "c"]."""
    names = [c.strip() for c in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated column names")
    return names


def choice_arg(text: str) -> tuple[str | None, str]:
    """``CHOICE`` (every feature) or ``COLUMN=CHOICE`` (one feature) -> (column or None, choice)."""
    column, sep, choice = text.rpartition("=")
    if sep and not column:
        raise argparse.ArgumentTypeError(f"{text!r}: expected CHOICE or COLUMN=CHOICE")
    return (column or None), choice


def validation_arg(text: str) -> float:
    """``20%`` or ``20`` (a percentage, 1 to 99) or ``0.2`` (a share below 1) -> 0.2."""
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a percentage such as 20%") from None
    share = value / 100 if text.endswith("%") or value >= 1 else value
    if not 0 < share < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the validation share must be above 0% "
                                         "and below 100%")
    return share


def rows_arg(text: str) -> list[int]:
    """``0,5,10-19`` or ``@FILE`` (integers separated by commas, spaces or lines) -> row indices."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"{text[1:]}: {exc.strerror}") from None
    rows: list[int] = []
    for part in text.replace("\n", ",").replace(" ", ",").split(","):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        try:
            rows.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: expected a row index or a range "
                                             "such as 10-19") from None
    return rows


def hidden_arg(text: str) -> tuple[int, ...]:
    """``16`` or ``16,16`` -> hidden widths of one candidate."""
    try:
        widths = tuple(int(u) for u in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected widths such as 16 or 8,8") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: widths must be positive")
    return widths


def _choices(pairs: list[tuple[str | None, str]] | None) -> str | dict[str, str]:
    """Repeated ``--input-shift`` values -> a build choice: one for all, or per column."""
    if not pairs:
        return "auto"
    if len(pairs) == 1 and pairs[0][0] is None:
        return pairs[0][1]
    return {("*" if column is None else column): choice for column, choice in pairs}


def _fail(command: str, exc: Exception) -> int:
    print(f"gradserve {command}: {exc}", file=sys.stderr)
    return 1


def run_build(args: argparse.Namespace) -> int:
    from .builder import build
    from .errors import GradserveError

    try:
        result = build(
            args.data, args.inputs, args.outputs, out=args.out, kind=args.kind,
            input_shift=_choices(args.input_shift), input_scale=_choices(args.input_scale),
            output_shift=_choices(args.output_shift), output_scale=_choices(args.output_scale),
            validation=(args.validation_rows if args.validation_rows is not None
                        else args.validation),
            architectures=args.hidden, activation=args.activation, tolerance=args.tolerance,
            epochs=args.epochs, patience=args.patience, seed=args.seed, name=args.name,
            description=args.description, progress=not args.quiet)
    except (GradserveError, ValueError) as exc:
        return _fail("build", exc)
    print(result.report)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from .errors import GradserveError
    from .importers import import_file

    try:
        result = import_file(args.source, out=args.out, input_names=args.inputs,
                             output_names=args.outputs, kind=args.kind, name=args.name)
    except (GradserveError, ValueError) as exc:
        return _fail("import", exc)
    print(result.summary())
    return 0
