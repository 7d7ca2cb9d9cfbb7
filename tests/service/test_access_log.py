"""The access log: off unless asked for, and never formatted only to be dropped."""

from __future__ import annotations

import httpx
import pytest

from gradserve import cli
from gradserve.http import server
from gradserve.settings import Settings


class _Started:
    """Stands in for uvicorn's server: keeps the config it was given, serves nothing."""

    config = None

    def __init__(self, config):
        _Started.config = config
        self.started = True

    def run(self):
        pass


@pytest.fixture
def started(monkeypatch):
    monkeypatch.setattr(server, "_Server", _Started)
    _Started.config = None
    return _Started


@pytest.mark.parametrize("access_log, level, expected", [
    (False, "info", False),   # the default
    (True, "info", True),
    (True, "debug", True),
    (True, "warning", False),  # uvicorn logs its lines at info: they would only be dropped
])
def test_uvicorn_gets_the_access_log_setting(started, tmp_path, access_log, level, expected):
    assert server.serve(Settings(models=tmp_path, access_log=access_log, log_level=level)) == 0
    assert started.config.access_log is expected


def test_cli_flag_turns_it_on(started, monkeypatch):
    # The CLI passes its flags on as variables (for uvicorn's worker processes); setting them
    # here first makes the test restore them afterwards.
    monkeypatch.setenv("GRADSERVE_ACCESS_LOG", "false")
    monkeypatch.setenv("GRADSERVE_LOG_LEVEL", "info")
    assert cli.main(["serve"]) == 0 and started.config.access_log is False
    assert cli.main(["serve", "--access-log"]) == 0 and started.config.access_log is True


def test_a_default_server_logs_no_line_per_request(live_server):
    for _ in range(3):
        assert httpx.post(f"{live_server.url}/evaluate", json={"x": [[0.5] * 8]}).status_code == 200
    assert '"POST /evaluate HTTP/1.1" 200' not in live_server.logs()
