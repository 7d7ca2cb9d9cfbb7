"""Fixtures shared by every test: models built once per session (compiling is the slow part)."""

from __future__ import annotations

import pytest

import gradserve
from factories import random_model


@pytest.fixture(scope="session")
def graph_models() -> list[gradserve.Model]:
    return [random_model(seed) for seed in range(4)]


@pytest.fixture(scope="session")
def demo_models() -> dict[str, gradserve.Model]:
    repo = gradserve.ModelRepository(gradserve.demo_repository())
    return {name: gradserve.load_model(f"{repo.root}/{name}") for name in repo.model_names()}



@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """One real server on a writable copy of the demo repository, shared by the session."""
    from live import LiveServer, copy_demo_repository

    repo = copy_demo_repository(tmp_path_factory.mktemp("live") / "models")
    # A small answer limit (2^17 numbers, 1 MiB of float64), so that a test can cross it with a
    # modest Jacobian.
    server = LiveServer(repo, env={"GRADSERVE_MAX_ANSWER_ELEMENTS": str(2**17)}).start()
    yield server
    server.stop()

