"""Fixtures of the client tests."""

from __future__ import annotations

import pytest

from stub_server import StubServer


@pytest.fixture()
def stub(request):
    """A ``StubServer`` acting out the test's parameter (see ``StubServer``)."""
    server = StubServer(request.param)
    yield server
    server.close()
