"""The ``gradserve`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from pydantic import ValidationError

from . import __version__

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from .http.server import serve
    from .settings import Settings

    # Flags override GRADSERVE_* variables; passing them on through the environment lets every
    # uvicorn worker process build the same settings.
    for flag in ("models", "host", "port", "default_model", "log_level", "poll_interval",
                 "drain_seconds"):
        value = getattr(args, flag)
        if value is not None:
            os.environ[f"GRADSERVE_{flag.upper()}"] = str(value)
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
    serve.add_argument("--poll-interval", dest="poll_interval", type=float,
                       help="seconds between scans of the repository for versions written by "
                       "other processes (default 2; 0: never)")
    serve.add_argument("--drain-seconds", dest="drain_seconds", type=float,
                       help="on SIGTERM, seconds to keep serving with /readyz answering 503 "
                       "before stopping (default 0)")
    serve.set_defaults(run=_serve)
    spec = sub.add_parser("openapi", help="print the OpenAPI document of the REST API")
    spec.add_argument("-o", "--output", help="write to this file instead of standard output")
    spec.set_defaults(run=_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
