"""Several workers on one repository: a weight update through one is served by the others within
the documented delay (GRADSERVE_POLL_INTERVAL plus the time to read the version)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import httpx
import numpy as np
import pytest

import gradserve
import gradserve_client as gc
from gradserve.repository import ModelRepository
from live import LiveServer, copy_demo_repository

pytestmark = pytest.mark.slow

POLL = 0.5
# docs/deployment.md: "within GRADSERVE_POLL_INTERVAL seconds plus the time to read the
# version"; reading is milliseconds, the rest is slack for a loaded test machine.
DELAY = POLL + 2.0


def _wait_for(predicate, timeout: float, step: float = 0.05) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not seen within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


@pytest.fixture()
def two_servers(tmp_path):
    repo = copy_demo_repository(tmp_path / "models")
    env = {"GRADSERVE_POLL_INTERVAL": str(POLL)}
    servers = [LiveServer(repo, env=env, log=tmp_path / f"server-{i}.log") for i in range(2)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def test_each_worker_serves_the_other_one_s_weight_update(two_servers):
    a, b = (gc.Client(s.url, retries=0).model("borehole") for s in two_servers)
    w = a.get_weights()
    assert b.get_weights().shape == w.shape and a.version == b.version == 1

    assert a.set_weights(w * 1.01) == 0 and a.version == 2
    seen = _wait_for(lambda: b.get_weights() is not None and b.version == 2, DELAY)
    np.testing.assert_array_equal(b.get_weights(), w * 1.01)

    assert b.set_weights(w * 0.99) == 0 and b.version == 3
    _wait_for(lambda: a.get_weights() is not None and a.version == 3, DELAY)
    # both compute with the new weights, exactly as the engine does with version 3 from disk
    x = np.tile(np.array([[0.1, 1000, 90000, 1000, 90, 760, 1400, 11000]]), (5, 1))
    on_disk = gradserve.load_model(two_servers[0].models / "borehole")
    assert on_disk.version == 3
    np.testing.assert_array_equal(a.evaluate(x), on_disk.evaluate(x))
    np.testing.assert_array_equal(b.evaluate(x), on_disk.evaluate(x))
    # a stale If-Match through the worker that did not write is refused too
    with pytest.raises(gc.WeightsConflict):
        b.set_weights(w, if_match=2)
    assert seen <= DELAY


def test_a_model_added_on_disk_is_served_by_every_worker(two_servers):
    repo = two_servers[0].models
    shutil.copytree(repo / "classifier", repo / ".incoming-classifier2")
    (repo / ".incoming-classifier2").rename(repo / "classifier2")  # appears whole

    def served_everywhere():
        return all("classifier2" in httpx.get(f"{s.url}/readyz").json()["models"]
                   for s in two_servers)

    _wait_for(served_everywhere, POLL + 60, step=0.2)  # compiling takes seconds
    for server in two_servers:
        model = gc.Client(server.url, retries=0).model("classifier2")
        assert model.evaluate(np.array([[0.1, 0.2]])).shape == (1, 3)


def test_uvicorn_workers_share_weight_updates(tmp_path):
    """``gradserve serve --workers 2``: the same, through one port, and SIGTERM exits 0."""
    server = LiveServer(copy_demo_repository(tmp_path / "models"), args=["--workers", "2"],
                        env={"GRADSERVE_POLL_INTERVAL": str(POLL)}).start(timeout=240)
    try:
        _wait_for(lambda: server.logs().count("ready: 3 model(s)") == 2, 120, step=0.2)
        model = gc.Client(server.url, retries=0).model("compression")
        w = model.get_weights()
        assert model.set_weights(w * 1.5) == 0 and model.version == 2
        no_keepalive = httpx.Limits(max_keepalive_connections=0)  # each GET may reach either

        def all_at_version_2():
            with httpx.Client(limits=no_keepalive) as http:
                return all(http.get(f"{server.url}/models/compression/weights").headers["etag"]
                           == '"2"' for _ in range(20))

        _wait_for(all_at_version_2, DELAY)
        # the worker that did not write picked the version up from the repository
        assert server.logs().count("serving model compression version 2 (new weights)") == 1
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0, server.logs()
    finally:
        server.stop()


def test_a_starting_worker_leaves_a_live_writer_s_temporary_alone(tmp_path):
    """At start-up a worker removes what dead writers left, never what a live one is writing."""
    repo = ModelRepository(copy_demo_repository(tmp_path / "models"))
    folder = repo.root / "borehole"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    host = socket.gethostname()

    def temporary(owner: str) -> str:
        (folder / f".tmp-{owner}-{uuid.uuid4().hex}").mkdir()
        return owner

    live = temporary(f"{host}-{os.getpid()}")  # this process: a sibling writing right now
    elsewhere = temporary(f"another-host-{os.getpid()}")  # cannot be told: kept while fresh
    temporary(f"{host}-{int(dead.stdout)}")  # its writer has exited: stale
    (folder / ".tmp-crashed").mkdir()  # of no known writer: stale
    assert repo.remove_stale_temporaries("borehole") == 2
    left = sorted(p.name for p in folder.glob(".tmp-*"))
    assert [name.rsplit("-", 1)[0] for name in left] == sorted([f".tmp-{elsewhere}", f".tmp-{live}"])
    assert repo.remove_stale_temporaries("borehole", older_than=0) == 2  # too old: stale
