"""docker-compose.yml: valid against the Compose Specification's JSON schema, and it wires what a
GPU host needs (GPU reservation, volumes, key, health, restart) with a CPU-only service beside."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys

import jsonschema
import pytest
import yaml

from container_files import COMPOSE, COMPOSE_SCHEMA, ROOT, interpolate
from gradserve.settings import Settings

def _load(environ: dict[str, str] | None = None) -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), environ)


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("environ", [None, {"GRADSERVE_WORKERS": "2", "GRADSERVE_GPUS": "all",
                                            "GRADSERVE_PUBLISHED_PORT": "127.0.0.1:9000"}])
def test_the_file_is_valid_against_the_compose_specification(environ):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in _validator().iter_errors(_load(environ))]
    assert errors == []


def test_the_schema_check_is_not_vacuous():
    broken = copy.deepcopy(_load())
    broken["services"]["gradserve"]["restart"] = ["always"]
    broken["services"]["gradserve"]["deploy"]["resources"]["reservations"]["gpus"] = 1
    broken["servics"] = {}
    assert len(list(_validator().iter_errors(broken))) >= 3


def test_the_gpu_service_reserves_a_gpu_and_the_cpu_one_does_not():
    services = _load()["services"]
    gpu, cpu = services["gradserve"], services["gradserve-cpu"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert gpu["build"]["args"]["DEVICE"] == "cuda" and "profiles" not in gpu  # the default
    assert cpu["build"]["args"]["DEVICE"] == "cpu" and cpu["profiles"] == ["cpu"]
    assert "deploy" not in cpu
    assert gpu["image"] != cpu["image"]


@pytest.mark.parametrize("name", ["gradserve", "gradserve-cpu"])
def test_each_service_keeps_its_state_and_its_key_outside_the_container(name):
    doc = _load()
    service = doc["services"][name]
    env = service["environment"]
    mounts = dict(reversed(v.split(":")[:2]) for v in service["volumes"])
    # the repository and the compilation cache live in named volumes
    assert mounts[env["GRADSERVE_MODELS"]] in doc["volumes"]
    cache_root = "/" + env["GRADSERVE_COMPILATION_CACHE"].strip("/").split("/")[0]
    assert mounts[cache_root] in doc["volumes"]
    # the API key comes from the environment as a secret, never written in the file
    [secret] = service["secrets"]
    assert env["GRADSERVE_API_KEYS_FILE"] == f"/run/secrets/{secret}"
    assert doc["secrets"][secret] == {"environment": "GRADSERVE_API_KEYS"}
    assert "GRADSERVE_API_KEYS" not in env  # not in the environment, where inspect shows it
    # every GRADSERVE_* variable is a setting (a typo would be silently ignored)
    settings = {f"GRADSERVE_{field.upper()}" for field in Settings.model_fields}
    assert set(env) <= settings
    assert env["GRADSERVE_ALLOW_UNAUTHENTICATED"] == "false"  # keys unless said otherwise
    assert service["restart"] == "unless-stopped"
    assert service["command"][:1] == ["serve"]


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", duration))


def test_stopping_leaves_time_to_drain_and_finish_requests():
    service = _load()["services"]["gradserve"]
    graceful = 30.0  # gradserve serve --graceful-timeout's default
    drain = float(service["environment"]["GRADSERVE_DRAIN_SECONDS"])
    assert _seconds(service["stop_grace_period"]) > graceful + drain


def test_the_healthcheck_passes_when_ready_and_fails_when_not(live_server, tmp_path):
    check = _load()["services"]["gradserve"]["healthcheck"]
    assert check["test"][0] == "CMD" and check["test"][1] == "python"
    code = check["test"][-1]
    assert "http://127.0.0.1:8000/readyz" in code  # the port the image listens on
    ok = subprocess.run([sys.executable, "-c", code.replace(":8000/", f":{live_server.port}/")],
                        capture_output=True, timeout=30, env=dict(os.environ))
    assert ok.returncode == 0, ok.stderr
    dead = subprocess.run([sys.executable, "-c", code.replace(":8000/", ":9/")],
                          capture_output=True, timeout=30)
    assert dead.returncode != 0
    assert _seconds(check["start_period"]) >= 60


def test_the_readme_documents_compose_up():
    readme = (ROOT / "README.md").read_text()
    assert "docker compose up" in readme and "docs/deployment.md" in readme
