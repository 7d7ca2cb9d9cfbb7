"""The ``gradserve`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from pydantic import ValidationError

from . import __version__

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from .auth import KeyConfigError, KeyRing, exposure_problem
    from .http.server import serve
    from .settings import Settings

    # Flags override GRADSERVE_* variables; passing them on through the environment lets every
    # uvicorn worker process build the same settings.
    for flag in ("models", "host", "port", "default_model", "log_level", "poll_interval",
                 "drain_seconds"):
        value = getattr(args, flag)
        if value is not None:
            os.environ[f"GRADSERVE_{flag.upper()}"] = str(value)
    for switch in ("allow_unauthenticated", "access_log"):  # flags that can only turn on
        if getattr(args, switch):
            os.environ[f"GRADSERVE_{switch.upper()}"] = "1"
    try:
        settings = Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"gradserve serve: setting {err['loc'][0]!r}: {err['msg']}", file=sys.stderr)
        return 2
    if not settings.models.is_dir():
        print(f"gradserve serve: the model repository {settings.models} is not a folder "
              "(--models DIR or GRADSERVE_MODELS)", file=sys.stderr)
        return 2
    try:
        keys = KeyRing.from_settings(settings)
    except KeyConfigError as exc:
        print(f"gradserve serve: API keys: {exc}", file=sys.stderr)
        return 2
    problem = exposure_problem(settings.host, keys, settings.allow_unauthenticated)
    if problem:
        print(f"gradserve serve: {problem}", file=sys.stderr)
        return 2
    return serve(settings, args.workers, args.graceful_timeout)


def _openapi(args: argparse.Namespace) -> int:
    import json

    from .http.app import create_app
    from .settings import Settings

    text = json.dumps(create_app(Settings()).openapi(), indent=2, ensure_ascii=False) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _key(args: argparse.Namespace) -> int:
    from .auth import SCOPES, KeyConfigError, new_key

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    try:
        key, entry = new_key(args.name, scopes)
    except KeyConfigError as exc:
        print(f"gradserve key: {exc} (scopes: {', '.join(SCOPES)})", file=sys.stderr)
        return 2
    print(f"key:   {key}\n"
          f"entry: {entry.entry()}\n\n"
          "Give the key to the client (GRADSERVE_API_KEY or api_key=...); put the entry, which\n"
          "holds only the key's SHA-256 digest, in GRADSERVE_API_KEYS or GRADSERVE_API_KEYS_FILE.\n"
          "The key is not stored anywhere: keep it now.")
    return 0


def _build(args: argparse.Namespace) -> int:
    from .commands import run_build

    return run_build(args)


def _import(args: argparse.Namespace) -> int:
    from .commands import run_import

    return run_import(args)


def _add_build(sub) -> None:
    from . import commands as c

    p = sub.add_parser("build", help="train a compact model on tabular data and store it",
                       description="Train a compact network on a CSV or Parquet file and write "
                       "it as a new version of REPO/NAME. See docs/build-and-import.md.")
    p.add_argument("data", help="a .csv or .parquet file with a header of column names")
    p.add_argument("--inputs", type=c.columns_arg, help="input columns, comma-separated "
                   "(default: every column that is not an output)")
    p.add_argument("--outputs", type=c.columns_arg, help="output columns, comma-separated "
                   "(classification: one label column, or one-hot columns; compression: none)")
    p.add_argument("--out", required=True, help="REPO/NAME: the model folder to add a version to")
    p.add_argument("--kind", choices=["regression", "classification", "compression"],
                   default="regression")
    shifts, scales = "none, min, min_centered, mean or auto", "none, max, max_centered, std or auto"
    for flag, choices in (("input-shift", shifts), ("input-scale", scales),
                          ("output-shift", shifts), ("output-scale", scales)):
        p.add_argument(f"--{flag}", type=c.choice_arg, action="append", metavar="[COL=]CHOICE",
                       help=f"{choices}; for every column, or COL=CHOICE for one "
                       "(repeatable; default auto)")
    p.add_argument("--validation", type=c.validation_arg, default=0.2, metavar="PERCENT",
                   help="share of rows held out for validation, e.g. 20%% (default)")
    p.add_argument("--validation-rows", type=c.rows_arg, metavar="ROWS",
                   help="held-out rows instead, from 0: 0,5,10-19 or @FILE")
    p.add_argument("--hidden", type=c.hidden_arg, action="append", metavar="WIDTHS",
                   help="a candidate's hidden widths, e.g. 16 or 8,8 (repeatable; default: "
                   "a built-in ladder of small networks)")
    p.add_argument("--activation", default="tanh", help="hidden activation (default tanh)")
    p.add_argument("--tolerance", type=float, default=0.25, help="keep the smallest network "
                   "within this share of the best validation error (default 0.25)")
    p.add_argument("--epochs", type=int, default=3000, help="L-BFGS iterations at most (3000)")
    p.add_argument("--patience", type=int, default=300,
                   help="stop after this many iterations without improvement (300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="model name recorded in the spec (default: NAME of --out)")
    p.add_argument("--description", help="free text stored in the spec")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_build)


def _add_import(sub) -> None:
    from . import commands as c

    p = sub.add_parser("import", help="import an ONNX model and store it",
                       description="Translate an ONNX graph of a tabular MLP into a gradserve "
                       "model, check it reproduces the graph's outputs, and write it as a new "
                       "version of REPO/NAME. scikit-learn estimators are imported from Python "
                       "(gradserve.importers.from_sklearn). See docs/build-and-import.md.")
    p.add_argument("source", help="an .onnx file")
    p.add_argument("--out", required=True, help="REPO/NAME: the model folder to add a version to")
    p.add_argument("--inputs", type=c.columns_arg, help="names of the input features")
    p.add_argument("--outputs", type=c.columns_arg, help="names of the outputs (classes)")
    p.add_argument("--kind", choices=["regression", "classification"],
                   help="default: classification when the graph ends in Softmax")
    p.add_argument("--name", help="model name recorded in the spec (default: NAME of --out)")
    p.set_defaults(run=_import)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradserve", description="Serve the derivatives of "
                                     "tabular neural models over HTTP.")
    parser.add_argument("--version", action="version", version=f"gradserve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the REST service",
                           description="Run the REST service. Every flag can also be given as a "
                           "GRADSERVE_<FLAG> environment variable.")
    serve.add_argument("--models", help="model repository (default: the bundled demo models)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--default-model", dest="default_model",
                       help="model of the un-prefixed routes (default: the first by name)")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes sharing the port (default 1); each loads every "
                       "model, and they see each other's weight updates through the repository")
    serve.add_argument("--graceful-timeout", type=float, default=30.0,
                       help="seconds to let in-flight requests finish on SIGTERM (default 30)")
    serve.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--access-log", dest="access_log", action="store_true",
                       help="log a line per answered request (default: off; /metrics counts them)")
    serve.add_argument("--poll-interval", dest="poll_interval", type=float,
                       help="seconds between scans of the repository for versions written by "
                       "other processes (default 2; 0: never)")
    serve.add_argument("--drain-seconds", dest="drain_seconds", type=float,
                       help="on SIGTERM, seconds to keep serving with /readyz answering 503 "
                       "before stopping (default 0)")
    serve.add_argument("--allow-unauthenticated", action="store_true",
                       help="serve without API keys on a non-loopback address (refused otherwise)")
    serve.set_defaults(run=_serve)
    key = sub.add_parser("key", help="make an API key and print its configuration entry",
                         description="Make a random API key. Prints the key (give it to the "
                         "client) and its entry (name:sha256:scopes, for GRADSERVE_API_KEYS).")
    key.add_argument("name", help="a name for the key, shown in logs (e.g. the job using it)")
    key.add_argument("--scopes", default="read,compute",
                     help="comma-separated: read, compute, write (default read,compute)")
    key.set_defaults(run=_key)
    spec = sub.add_parser("openapi", help="print the OpenAPI document of the REST API")
    spec.add_argument("-o", "--output", help="write to this file instead of standard output")
    spec.set_defaults(run=_openapi)
    _add_build(sub)
    _add_import(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
