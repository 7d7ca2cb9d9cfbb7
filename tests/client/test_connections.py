"""The sync client's standard-library connections: kept alive, renewed when the server closed
them, failing as the client's own errors, and used only where httpx is not needed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

import gradserve_client as gc
from factories import random_inputs
from gradserve_client import _connections
from stub_server import CHUNKED, check_evaluates_on_one_connection, ok


def _client(url, **kwargs) -> gc.Client:
    kwargs.setdefault("encoding", "json")
    return gc.Client(url, **kwargs)


@pytest.mark.parametrize("stub", [lambda conn, req: ok()], indirect=True)
def test_one_connection_serves_many_calls(stub):
    with _client(stub.url, api_key="k") as client:
        for _ in range(5):
            assert client.model("m").evaluate(np.ones((1, 2))).tolist() == [[1.0]]
    check_evaluates_on_one_connection(stub, 5)


@pytest.mark.parametrize("stub", [lambda conn, req: (ok(), "close") if conn == 0 else ok()],
                         indirect=True)
def test_a_connection_the_server_closed_while_idle_is_replaced(stub):
    """The server closes the kept-alive connection after its first answer (an idle timeout):
    the next call sees it closed and opens a new one; nothing is sent twice."""
    with _client(stub.url, retries=0) as client:
        model = client.model("m")
        model.evaluate(np.ones((1, 2)))
        deadline = time.monotonic() + 5
        while stub._threads[0].is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)  # until the server has closed it
        assert model.evaluate(np.ones((1, 2))).tolist() == [[1.0]]
    assert stub.connections == 2 and [conn for conn, _, _ in stub.requests] == [0, 1]


@pytest.mark.parametrize("stub", [lambda conn, req: ok() if req == 0 or conn == 1 else None],
                         indirect=True)
def test_a_reused_connection_closed_unanswered_is_retried_once_on_a_new_one(stub):
    """The server reads the second request on the kept-alive connection and closes it without
    answering (the race with an idle timeout): the request goes again on a new connection."""
    with _client(stub.url, retries=0) as client:
        model = client.model("m")
        model.evaluate(np.ones((1, 2)))
        assert model.evaluate(np.ones((1, 2))).tolist() == [[1.0]]
    assert [conn for conn, _, _ in stub.requests] == [0, 0, 1]


@pytest.mark.parametrize("stub", [lambda conn, req: None], indirect=True)
def test_a_new_connection_closed_unanswered_is_a_transport_error(stub):
    with _client(stub.url, retries=0) as client:
        with pytest.raises(gc.TransportError, match="closed the connection without answering"):
            client.model("m").evaluate(np.ones((1, 2)))
    assert len(stub.requests) == 1


@pytest.mark.parametrize("stub", [lambda conn, req: None if req < 2 else ok()], indirect=True)
def test_transport_errors_are_retried_for_idempotent_calls(stub, monkeypatch):
    monkeypatch.setattr("gradserve_client._client.time.sleep", lambda s: None)
    with _client(stub.url, retries=3) as client:
        assert client.model("m").evaluate(np.ones((1, 2))).tolist() == [[1.0]]
    assert len(stub.requests) == 3


@pytest.mark.parametrize("stub", [lambda conn, req: "hang"], indirect=True)
def test_no_answer_within_the_timeout_is_a_timeout_error(stub):
    started = time.monotonic()
    with _client(stub.url, retries=0, timeout=0.3) as client:
        with pytest.raises(gc.TimeoutError, match="no answer within 0.3 s"):
            client.model("m").evaluate(np.ones((1, 2)))
    assert time.monotonic() - started < 5


def test_nothing_listening_is_a_transport_error_naming_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with _client(f"http://127.0.0.1:{port}", retries=0) as client:
            with pytest.raises(gc.TransportError, match=f"127.0.0.1:{port}/models/m/evaluate"):
                client.model("m").evaluate(np.ones((1, 2)))


@pytest.mark.parametrize("stub", [lambda conn, req: CHUNKED], indirect=True)
def test_chunked_answers_and_connection_close_are_honoured(stub):
    with _client(stub.url) as client:
        for _ in range(3):
            assert client.model("m").evaluate(np.ones((1, 2))).tolist() == [[1.0]]
    assert stub.connections == 3  # each answer said Connection: close


@pytest.mark.parametrize("stub", [lambda conn, req: ok()], indirect=True)
def test_a_base_url_with_a_path_prefix(stub):
    with _client(stub.url + "/gradserve/", api_key="k") as client:
        client.model("a b").evaluate(np.ones((1, 2)))
    assert stub.requests[0][1].startswith(b"POST /gradserve/models/a%20b/evaluate HTTP/1.1\r\n")


@pytest.mark.parametrize("stub", [lambda conn, req: ok(b'{"error": {"type": "ModelNotFound", '
                                                       b'"message": "no model m"}}')
                                  .replace(b"200 OK", b"404 Not Found")], indirect=True)
def test_error_answers_become_the_clients_exceptions(stub):
    with _client(stub.url) as client:
        with pytest.raises(gc.ModelNotFound, match="no model m"):
            client.model("m").evaluate(np.ones((1, 2)))


def test_the_path_is_taken_only_for_plain_http_without_a_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert _connections.usable("http://10.0.0.5:8000")
    assert not _connections.usable("https://models.example")
    assert not _connections.usable("http://user:secret@10.0.0.5:8000")  # httpx sends them
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert not _connections.usable("http://10.0.0.5:8000")
    with gc.Client("http://10.0.0.5:8000") as client:
        assert client._pool is None and client._http is not None  # httpx honours the proxy
    monkeypatch.setenv("NO_PROXY", "10.0.0.5")
    assert _connections.usable("http://10.0.0.5:8000")
    with gc.Client("http://10.0.0.5:8000") as client:
        assert client._pool is not None
    with gc.Client("http://10.0.0.5:8000", transport=httpx.MockTransport(lambda r: None)) as client:
        assert client._pool is None


def test_an_api_key_that_would_break_the_header_is_refused():
    with pytest.raises(ValueError, match="printable ASCII"):
        gc.Client("http://127.0.0.1:1", api_key="k\r\nX-Evil: 1")


def test_threads_share_the_client_each_with_its_own_answers(live_server, demo_models):
    """Eight threads calling one client at once: every answer is its own request's (the pool
    hands a connection to one call at a time)."""
    local = demo_models["borehole"]
    inputs = [random_inputs(local, 3, seed=seed) for seed in range(8)]
    expected = [local.evaluate(x) for x in inputs]
    failures: list[str] = []
    with gc.Client(live_server.url) as client:
        remote = client.model("borehole")

        def work(i):
            for _ in range(15):
                y = remote.evaluate(inputs[i])
                if not np.allclose(y, expected[i], rtol=1e-12, atol=0):
                    failures.append(f"thread {i}: {y.ravel()} != {expected[i].ravel()}")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert client._pool is not None and 1 <= len(client._pool._idle) <= 8
    assert failures == []


def test_an_idle_connection_is_readable_once_the_peer_closed_it():
    """What the pool looks at before reusing a connection."""
    ours, theirs = socket.socketpair()
    with ours:
        assert not _connections._readable(ours)
        theirs.close()
        assert _connections._readable(ours)


def test_head_and_body_go_out_whole_with_or_without_sendmsg():
    """Partial sends are continued where they stopped; without sendmsg (Windows), one sendall."""
    class Trickle:  # takes at most 7 bytes per call
        def __init__(self):
            self.out = b""

        def sendmsg(self, views):
            chunk = b"".join(bytes(v) for v in views)[:7]
            self.out += chunk
            return len(chunk)

    class NoSendmsg:
        def __init__(self):
            self.out = b""

        def sendall(self, data):
            self.out += data

    parts = [b"POST / HTTP/1.1\r\n\r\n", b"", bytes(range(50))]
    for sock in (Trickle(), NoSendmsg()):
        _connections._send_all(sock, parts)
        assert sock.out == b"".join(parts)


FORKING = """
import json, os, sys
import numpy as np
import gradserve_client as gc

with gc.Client(sys.argv[1], encoding="json") as client:
    model = client.model("m")
    first = model.evaluate(np.ones((1, 2))).tolist()   # connection 0, left idle
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one call, its answer through the pipe, then out
        try:
            os.write(write, json.dumps(model.evaluate(np.ones((1, 2))).tolist()).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = json.loads(os.read(read, 1000))
    again = model.evaluate(np.ones((1, 2))).tolist()
    print(json.dumps([first, child, again, status]))
"""


@pytest.mark.parametrize("stub", [lambda conn, req: ok(json.dumps({"y": [[float(conn)]]}).encode())],
                         indirect=True)
def test_a_forked_child_does_not_use_its_parents_connections(stub):
    """A client made before os.fork (multiprocessing's workers): the child opens its own
    connection rather than writing into the parent's. (In a fresh interpreter: this one runs
    JAX's threads, which fork does not take along.)"""
    run = subprocess.run([sys.executable, "-c", FORKING, stub.url], capture_output=True,
                         text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 0, run.stderr
    first, child, again, status = json.loads(run.stdout)
    assert status == 0
    # The answer says which connection carried it: the parent's is 0, the child's its own 1.
    assert (first, child, again) == ([[0.0]], [[1.0]], [[0.0]])
    assert stub.connections == 2
