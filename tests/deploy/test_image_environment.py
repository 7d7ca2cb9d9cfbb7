"""The image's environment, built here: a fresh virtual environment (no system site-packages),
installed by the Dockerfile's own install command for the CPU image, then the service run from it.

It installs from the package index through pip's cache with the pinned constraints, about a
minute here; the GPU image adds only the 'cuda' extra (3.3 GB of CUDA wheels, left to the image
build). What it proves: the install script, the constraints and the package metadata are enough
on their own, every installed distribution is pinned, and the installed service (not this
checkout) starts, gets ready and computes a gradient.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import numpy as np
import pytest

import gradserve
from container_files import ROOT, stages
from live import LiveServer, copy_demo_repository

pytestmark = pytest.mark.slow

INSTALL_TIMEOUT = 540  # seconds: a cold pip cache on a slow link; about a minute when warm
TOOLS = {"pip", "setuptools", "wheel", "gradserve"}  # the venv's own, and the project itself


def _image_install_command(device: str) -> list[str]:
    """The build stage's install command, as the image with ``DEVICE=device`` runs it."""
    [run] = [v for k, v in stages()["build"] if k == "RUN" and "scripts/install.sh" in v]
    command = run[run.index("bash scripts/install.sh"):]
    return command.replace('"${DEVICE}"', device).split()


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[_normal(name)] = version.strip()
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _outside_env() -> dict[str, str]:
    """This environment without the PYTHONPATH that puts this checkout on the path."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    venv = tmp_path_factory.mktemp("image-env") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {**_outside_env(), "PYTHON": str(venv / "bin" / "python")}
    result = subprocess.run(_image_install_command("cpu"), cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=INSTALL_TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return venv


def test_every_installed_distribution_is_pinned(venv):
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json",
                             "--disable-pip-version-check"], capture_output=True, text=True,
                            check=True, timeout=120, env=_outside_env())
    pins = _pins()
    installed = {_normal(d["name"]): d["version"] for d in json.loads(listed.stdout)}
    loose = {name: version for name, version in installed.items()
             if name not in TOOLS and pins.get(name) != version}
    assert loose == {}, "installed but not pinned (or pinned at another version)"
    assert "jax" in installed and not any(name.startswith("jax-cuda") for name in installed)
    check = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "check"],
                           capture_output=True, text=True, timeout=120, env=_outside_env())
    assert check.returncode == 0, check.stdout


def test_the_installed_service_starts_and_computes(venv, tmp_path):
    env_python = str(venv / "bin" / "python")
    where = subprocess.run([env_python, "-c", "import gradserve; print(gradserve.__file__)"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path,
                           env=_outside_env())
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    server = LiveServer(copy_demo_repository(tmp_path / "models"),
                        command=[str(venv / "bin" / "gradserve")])
    server.env.pop("PYTHONPATH", None)
    with server:
        assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"
        x = [[0.1, 1000, 90000, 1000, 90, 760, 1400, 11000]]
        r = httpx.post(f"{server.url}/models/borehole/gradient", json={"x": x, "py": [[1.0]]})
        assert r.status_code == 200, r.text
        local = gradserve.load_model(server.models / "borehole")
        pw, px = local.gradient(None, np.array(x), np.ones((1, 1)))
        np.testing.assert_allclose(r.json()["px"], px, rtol=1e-12)
        np.testing.assert_allclose(r.json()["pw"], pw, rtol=1e-12)
        assert httpx.get(f"{server.url}/info").json()["platform"] == "cpu"
