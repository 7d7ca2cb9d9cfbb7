"""Who may do what: every route of the app is checked with a missing, a wrong and an
under-scoped key, so a new endpoint cannot be added without a scope (or a reason to be open)."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import numpy as np
import pytest
from fastapi.routing import APIRoute

import gradserve_client as gc
from gradserve.auth import KeyConfigError, KeyRing, digest, exposure_problem, new_key, parse_entry
from gradserve.errors import Forbidden, Unauthorized
from gradserve.http import create_app
from gradserve.http.security import scope_of
from gradserve.settings import Settings
from hardening_kit import KEYS, bearer, secret

# Open on purpose: probes must work without a key, and the API's description is not a secret.
OPEN = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
        "/v2/health/live", "/v2/health/ready"}
PATH_VALUES = {"name": "borehole", "version": "1"}


def _flatten(routes):
    for route in routes:
        included = getattr(route, "original_router", None)  # an included router, unpacked lazily
        if included is not None:
            yield from _flatten(included.routes)
        else:
            yield route


def _routes():
    """(method, path template, scope) of every route the app serves."""
    for route in _flatten(create_app(Settings()).routes):
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, route.path, scope_of(route) if isinstance(route, APIRoute) else None


ROUTES = list(_routes())
SCOPED = [r for r in ROUTES if r[2] is not None]


def test_every_route_has_a_scope_or_is_open_on_purpose():
    assert len(SCOPED) >= 17
    for method, path, scope in ROUTES:
        assert scope is not None or path in OPEN, f"{method} {path} needs a scope (or a reason)"
    scopes = {(m, p): s for m, p, s in SCOPED}
    assert scopes["POST", "/models/{name}/gradient"] == "compute"
    assert scopes["PUT", "/weights"] == "write"
    assert scopes["POST", "/models/{name}/versions/{version}/restore"] == "write"
    assert scopes["GET", "/models/{name}/weights"] == "read"
    assert scopes["GET", "/metrics"] == "read"


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def _error(r: httpx.Response) -> tuple[str, str]:
    """(type, message) of an error body: gradserve's and UM-Bridge's {"error": {"type",
    "message"}}, or the Open Inference Protocol's {"error": "<type>: <message>"}."""
    error = r.json()["error"]
    if isinstance(error, str):
        type_, _, message = error.partition(": ")
        return type_, message
    return error["type"], error["message"]


def _other_scopes_key(scope: str) -> str:
    return {"read": "no-read", "compute": "no-compute", "write": "no-write"}[scope]


@pytest.mark.parametrize("method,path,scope", SCOPED, ids=[f"{m} {p}" for m, p, _ in SCOPED])
def test_scoped_route_refuses_missing_wrong_and_underscoped_keys(secured_server, method, path, scope):
    with httpx.Client(base_url=secured_server.url, timeout=30) as http:
        url = _url(path)
        for headers in ({}, {"Authorization": "Bearer not-a-key"},
                        {"Authorization": f"Basic {secret('all')}"},
                        {"Authorization": f"Bearer {secret('all')}x"}):
            r = http.request(method, url, headers=headers)
            assert r.status_code == 401, (method, url, headers, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert _error(r)[0] == "Unauthorized"
        r = http.request(method, url, headers=bearer(_other_scopes_key(scope)))
        assert r.status_code == 403, (method, url, r.text)
        type_, message = _error(r)
        assert type_ == "Forbidden" and f"lacks the {scope!r} scope" in message
        r = http.request(method, url, headers=bearer(scope))
        assert r.status_code not in (401, 403), (method, url, r.text)


@pytest.mark.parametrize("path", sorted(OPEN - {"/docs/oauth2-redirect"}))
def test_open_routes_need_no_key(secured_server, path):
    assert httpx.get(secured_server.url + path).status_code == 200


def test_unknown_model_is_401_before_404(secured_server):
    """A stranger learns nothing, not even which models exist."""
    r = httpx.get(f"{secured_server.url}/models/no-such-model/weights")
    assert r.status_code == 401


def test_client_sends_its_key_as_a_bearer_token(secured_server, monkeypatch):
    x = [[0.1, 1000, 90000, 1000, 90, 760, 1400, 11000]]
    with gc.Client(secured_server.url, api_key=secret("no-write")) as client:
        assert client.model("borehole").evaluate(x).shape == (1, 1)
        with pytest.raises(gc.Forbidden, match="lacks the 'write' scope"):
            client.model("classifier").set_weights(client.model("classifier").get_weights())
    monkeypatch.delenv("GRADSERVE_API_KEY", raising=False)
    with gc.Client(secured_server.url) as client:
        with pytest.raises(gc.Unauthorized) as info:
            client.model("borehole").evaluate(x)
        assert info.value.status == 401
    monkeypatch.setenv("GRADSERVE_API_KEY", secret("compute"))
    with gc.Client(secured_server.url) as client:
        assert np.isfinite(client.model("borehole").evaluate(x)).all()
        with pytest.raises(gc.Forbidden):
            client.model("borehole").get_weights()


def test_key_ring_parses_checks_and_compares_digests():
    ring = KeyRing.parse(f"a:{digest('s1')}:read\n b : {digest('s2').upper()} : compute, write ;")
    assert [k.name for k in ring.keys] == ["a", "b"]
    assert ring.authorize("s2", "write").name == "b"
    with pytest.raises(Forbidden, match="'a' lacks the 'write' scope"):
        ring.authorize("s1", "write")
    with pytest.raises(Unauthorized, match="not valid"):
        ring.authorize("s3", "read")
    with pytest.raises(Unauthorized, match="required"):
        ring.authorize(None, "read")
    assert KeyRing().authorize(None, "write") is None  # open: no keys configured
    for bad, message in [("a:b", "expected 'name:sha256-hex"), (f"a:{'0' * 63}:read", "not the key itself"),
                         (f"a:{digest('k')}:admin", "scopes must be among"),
                         (f"a b:{digest('k')}:read", "letters, digits"),
                         (f"a:{digest('k')}:", "scopes must be among")]:
        with pytest.raises(KeyConfigError, match=message):
            parse_entry(bad, "test")
    with pytest.raises(KeyConfigError, match="configured twice"):
        KeyRing.parse(f"a:{digest('1')}:read;a:{digest('2')}:read")


def test_key_file_with_comments(tmp_path):
    key, entry = new_key("job-17", ["read", "compute"])
    assert key.startswith("gs_") and len(key) > 40 and key not in entry.entry()
    path = tmp_path / "keys"
    path.write_text(f"# the training jobs\n{entry.entry()}  # added today\n\n")
    ring = KeyRing.parse(None, path)
    assert ring.authorize(key, "compute").name == "job-17"
    with pytest.raises(KeyConfigError, match="line 2"):
        (tmp_path / "bad").write_text("#\nnope\n")
        KeyRing.parse(None, tmp_path / "bad")
    with pytest.raises(KeyConfigError, match="cannot be read"):
        KeyRing.parse(None, tmp_path / "missing")


def test_exposure_policy():
    none, some = KeyRing(), KeyRing.parse(f"a:{digest('s')}:read")
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"):
        assert exposure_problem(host, none, False) is None
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org"):
        assert "refusing to serve" in exposure_problem(host, none, False)
        assert exposure_problem(host, none, True) is None
        assert exposure_problem(host, some, False) is None


def _serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("GRADSERVE_")}
    return subprocess.run([sys.executable, "-m", "gradserve.cli", "serve", *args],
                          env={**environ, **(env or {})}, capture_output=True, text=True, timeout=60)


def test_cli_refuses_a_public_address_without_keys():
    done = _serve("--host", "0.0.0.0")
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without API keys" in done.stderr
    assert "--allow-unauthenticated" in done.stderr


def test_cli_refuses_malformed_keys():
    done = _serve("--host", "127.0.0.1", env={"GRADSERVE_API_KEYS": "trainer:hunter2:read"})
    assert done.returncode == 2 and "not the key itself" in done.stderr


def test_cli_key_prints_a_key_and_its_entry():
    done = subprocess.run([sys.executable, "-m", "gradserve.cli", "key", "ci", "--scopes", "read"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    key = re.search(r"key:\s+(\S+)", done.stdout).group(1)
    entry = re.search(r"entry:\s+(\S+)", done.stdout).group(1)
    assert entry == f"ci:{digest(key)}:read"
