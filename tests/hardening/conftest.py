"""Fixtures of the hardening tests: servers that demand keys, on loopback, stopped by the fixture.

The tiny model (hardening_kit) and one compiled batch size keep restarts short, which the crash
test needs: it restarts the service dozens of times.
"""

from __future__ import annotations

import pytest

from hardening_kit import key_entries
from live import LiveServer, copy_demo_repository


@pytest.fixture(scope="session")
def secured_server(tmp_path_factory):
    """A server on a writable copy of the demo repository that demands API keys."""
    repo = copy_demo_repository(tmp_path_factory.mktemp("secured") / "models")
    server = LiveServer(repo, env={"GRADSERVE_API_KEYS": key_entries()}).start()
    yield server
    server.stop()
