"""The async client's asyncio connections: kept alive, renewed when the server closed them,
bounded, failing as the client's own errors, and used only where httpx is not needed."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest

import gradserve_client as gc
from factories import random_inputs
from stub_server import ANSWER, CHUNKED, check_evaluates_on_one_connection, ok

X = np.ones((1, 2))


def _client(url, **kwargs) -> gc.AsyncClient:
    kwargs.setdefault("encoding", "json")
    return gc.AsyncClient(url, **kwargs)


async def _evaluate(url, calls=1, **kwargs) -> list:
    async with _client(url, **kwargs) as client:
        model = client.model("m")
        return [(await model.evaluate(X)).tolist() for _ in range(calls)]


@pytest.mark.parametrize("stub", [lambda conn, req: ok()], indirect=True)
def test_one_connection_serves_many_calls(stub):
    assert asyncio.run(_evaluate(stub.url, calls=5, api_key="k")) == [[[1.0]]] * 5
    check_evaluates_on_one_connection(stub, 5)


@pytest.mark.parametrize("stub", [lambda conn, req: (ok(), "close") if conn == 0 else ok()],
                         indirect=True)
def test_a_connection_the_server_closed_while_idle_is_replaced(stub):
    async def run():
        async with _client(stub.url, retries=0) as client:
            model = client.model("m")
            await model.evaluate(X)
            deadline = time.monotonic() + 5
            while stub._threads[0].is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # until the server has closed it
            return (await model.evaluate(X)).tolist()

    assert asyncio.run(run()) == [[1.0]]
    assert stub.connections == 2 and [conn for conn, _, _ in stub.requests] == [0, 1]


@pytest.mark.parametrize("stub", [lambda conn, req: ok() if req == 0 or conn == 1 else None],
                         indirect=True)
def test_a_reused_connection_closed_unanswered_is_retried_once_on_a_new_one(stub):
    assert asyncio.run(_evaluate(stub.url, calls=2, retries=0)) == [[[1.0]]] * 2
    assert [conn for conn, _, _ in stub.requests] == [0, 0, 1]


@pytest.mark.parametrize("stub", [lambda conn, req: None], indirect=True)
def test_a_new_connection_closed_unanswered_is_a_transport_error(stub):
    with pytest.raises(gc.TransportError, match="closed the connection without answering"):
        asyncio.run(_evaluate(stub.url, retries=0))
    assert len(stub.requests) == 1


@pytest.mark.parametrize("stub", [lambda conn, req: None if req < 2 else ok()], indirect=True)
def test_transport_errors_are_retried_for_idempotent_calls(stub, monkeypatch):
    async def no_wait(seconds):
        pass

    monkeypatch.setattr("gradserve_client._async.asyncio.sleep", no_wait)
    assert asyncio.run(_evaluate(stub.url, retries=3)) == [[[1.0]]]
    assert len(stub.requests) == 3


@pytest.mark.parametrize("stub", [lambda conn, req: "hang"], indirect=True)
def test_no_answer_within_the_timeout_is_a_timeout_error(stub):
    started = time.monotonic()
    with pytest.raises(gc.TimeoutError, match="no answer within 0.3 s"):
        asyncio.run(_evaluate(stub.url, retries=0, timeout=0.3))
    assert time.monotonic() - started < 5


def test_nothing_listening_is_a_transport_error_naming_the_url():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(gc.TransportError, match=f"127.0.0.1:{port}/models/m/evaluate"):
            asyncio.run(_evaluate(f"http://127.0.0.1:{port}", retries=0))


@pytest.mark.parametrize("stub", [lambda conn, req: CHUNKED], indirect=True)
def test_chunked_answers_and_connection_close_are_honoured(stub):
    assert asyncio.run(_evaluate(stub.url, calls=3)) == [[[1.0]]] * 3
    assert stub.connections == 3  # each answer said Connection: close


TRAILERS = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"\r\n4;note=split\r\n" + ANSWER[:4] + b"\r\n" + f"{len(ANSWER) - 4:x}\r\n".encode()
            + ANSWER[4:] + b"\r\n0\r\nX-Trailer: 1\r\n\r\n")
HTTP10 = (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + ANSWER, "close")


@pytest.mark.parametrize("stub", [lambda conn, req: TRAILERS], indirect=True)
def test_chunks_with_extensions_and_trailers_keep_the_connection(stub):
    assert asyncio.run(_evaluate(stub.url, calls=3)) == [[[1.0]]] * 3
    assert stub.connections == 1


@pytest.mark.parametrize("stub", [lambda conn, req: HTTP10], indirect=True)
def test_an_answer_without_length_is_read_to_the_end_of_its_connection(stub):
    assert asyncio.run(_evaluate(stub.url, calls=2)) == [[[1.0]]] * 2
    assert stub.connections == 2  # HTTP/1.0 without keep-alive: one answer per connection


@pytest.mark.parametrize("stub", [lambda conn, req: ok()[:-3]], indirect=True)
def test_an_answer_that_stalls_is_a_timeout_error(stub):
    # The body is 3 bytes short and the connection stays open: the read waits for the timeout.
    started = time.monotonic()
    with pytest.raises(gc.TimeoutError):
        asyncio.run(_evaluate(stub.url, retries=0, timeout=0.3))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("stub", [lambda conn, req: (ok()[:-3], "close")], indirect=True)
def test_an_answer_broken_off_is_a_transport_error(stub):
    with pytest.raises(gc.TransportError, match="broke off"):
        asyncio.run(_evaluate(stub.url, retries=0))


@pytest.mark.parametrize("stub", [lambda conn, req: b"SSH-2.0-OpenSSH\r\n\r\n"], indirect=True)
def test_an_answer_that_is_not_http_is_a_transport_error(stub):
    with pytest.raises(gc.TransportError, match="not an HTTP/1.x answer"):
        asyncio.run(_evaluate(stub.url, retries=0))


@pytest.mark.parametrize("stub", [lambda conn, req: ok()], indirect=True)
def test_a_base_url_with_a_path_prefix(stub):
    async def run():
        async with _client(stub.url + "/gradserve/", api_key="k") as client:
            await client.model("a b").evaluate(X)

    asyncio.run(run())
    assert stub.requests[0][1].startswith(b"POST /gradserve/models/a%20b/evaluate HTTP/1.1\r\n")


@pytest.mark.parametrize("stub", [lambda conn, req: ok(b'{"error": {"type": "ModelNotFound", '
                                                       b'"message": "no model m"}}')
                                  .replace(b"200 OK", b"404 Not Found")], indirect=True)
def test_error_answers_become_the_clients_exceptions(stub):
    with pytest.raises(gc.ModelNotFound, match="no model m"):
        asyncio.run(_evaluate(stub.url))


def test_the_path_is_taken_only_for_plain_http_without_a_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert gc.AsyncClient("http://10.0.0.5:8000")._pool is not None
    assert gc.AsyncClient("https://models.example")._pool is None
    assert gc.AsyncClient("http://10.0.0.5:8000",
                          transport=httpx.MockTransport(lambda r: None))._pool is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    client = gc.AsyncClient("http://10.0.0.5:8000")
    assert client._pool is None and client._http is not None  # httpx honours the proxy


GATE = {"open": None}


def _slow_ok(conn, req):
    GATE["open"].wait(10)
    return ok()


@pytest.mark.parametrize("stub", [_slow_ok], indirect=True)
def test_calls_in_flight_are_bounded_and_share_connections(stub):
    """Eight calls at once through a pool of two: the others wait for a free connection, and
    only two are ever opened."""
    import threading

    GATE["open"] = threading.Event()

    async def run():
        async with _client(stub.url) as client:
            client._pool.max_connections = 2
            model = client.model("m")
            calls = asyncio.gather(*(model.evaluate(X) for _ in range(8)))
            await asyncio.sleep(0.3)
            in_flight = len(stub.requests)
            GATE["open"].set()
            return in_flight, await calls

    in_flight, answers = asyncio.run(run())
    assert in_flight == 2 and len(answers) == 8
    assert stub.connections == 2 and len(stub.requests) == 8


@pytest.mark.parametrize("stub", [lambda conn, req: "hang" if req == 0 else ok()], indirect=True)
def test_a_cancelled_call_does_not_leave_its_connection_to_the_next(stub):
    async def run():
        async with _client(stub.url, retries=0) as client:
            model = client.model("m")
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await model.evaluate(X)
            return (await model.evaluate(X)).tolist()

    assert asyncio.run(run()) == [[1.0]]
    assert [conn for conn, _, _ in stub.requests] == [0, 1]


@pytest.mark.parametrize("stub", [lambda conn, req: ok()], indirect=True)
def test_one_client_under_two_event_loops(stub):
    """Connections opened under one loop are not reused under the next (another asyncio.run)."""
    client = _client(stub.url)

    async def call():
        return (await client.model("m").evaluate(X)).tolist()

    assert asyncio.run(call()) == [[1.0]]
    assert asyncio.run(call()) == [[1.0]]
    asyncio.run(client.aclose())
    assert stub.connections == 2


def test_concurrent_calls_each_get_their_own_answer(live_server, demo_models):
    """Sixteen calls in flight at once on one client against the real server: every answer is
    its own request's, bitwise the engine's."""
    local = demo_models["borehole"]
    inputs = [random_inputs(local, 3, seed=seed) for seed in range(16)]
    w = local.get_weights()
    expected = [local.gradient(w, x, np.ones((3, 1))) for x in inputs]

    async def run():
        async with gc.AsyncClient(live_server.url) as client:
            assert client._pool is not None
            model = client.model("borehole")
            for _ in range(3):
                answers = await asyncio.gather(*(model.gradient(w, x, np.ones((3, 1)))
                                                 for x in inputs))
                for (pw, px), (pw0, px0) in zip(answers, expected):
                    np.testing.assert_array_equal(pw, pw0)
                    np.testing.assert_array_equal(px, px0)
            return len(client._pool._idle)

    assert 1 <= asyncio.run(run()) <= 16
