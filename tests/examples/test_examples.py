"""The examples run against a live server and reach their targets."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_inverse_design_reaches_the_target_flow(live_server):
    result = _run([sys.executable, str(EXAMPLES / "inverse_design.py"), "--url", live_server.url,
                   "--target", "100"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reached the target" in result.stdout


def test_weight_fit_recovers_the_weights(live_server):
    result = _run([sys.executable, str(EXAMPLES / "weight_fit.py"), "--url", live_server.url])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reached the target" in result.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="the curl example needs curl")
def test_curl_example_runs(live_server):
    result = _run(["bash", str(EXAMPLES / "curl.sh"), live_server.url], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "px =" in result.stdout and "InvalidInput" in result.stdout
