"""API keys over HTTP: one FastAPI dependency per scope, written once.

A route states what it needs with ``dependencies=[require("compute")]``; the dependency reads the
``Authorization: Bearer <key>`` header and asks the data plane's key ring, which raises the domain
errors Unauthorized (401, with ``WWW-Authenticate: Bearer``) or Forbidden (403). The bearer
scheme object also puts the security scheme in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from ..auth import SCOPES

__all__ = ["RequireScope", "require", "scope_of", "bearer_key", "BEARER"]

# Stateless (it only names the scheme); auto_error=False so that a missing key reaches our own
# error body instead of FastAPI's.
BEARER = HTTPBearer(auto_error=False, scheme_name="apiKey",
                    description="An API key: `Authorization: Bearer <key>` (docs/security.md). "
                    "Not needed when the service runs without keys (loopback only).")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


class RequireScope:
    """The dependency that lets a request through only with a key holding ``scope``."""

    def __init__(self, scope: str):
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; scopes: {', '.join(SCOPES)}")
        self.scope = scope

    async def __call__(self, request: Request, credentials: Credentials) -> None:
        key = credentials.credentials if credentials is not None else None
        request.state.api_key = request.app.state.dataplane.keys.authorize(key, self.scope)

    def __repr__(self) -> str:
        return f"RequireScope({self.scope!r})"


def require(scope: str) -> Depends:
    """``Depends`` on a key with ``scope``, for a route's ``dependencies=[...]``."""
    return Depends(RequireScope(scope))


def scope_of(route) -> str | None:
    """The scope a route requires, or None for an open route."""
    for dependency in getattr(route, "dependencies", ()):
        if isinstance(dependency.dependency, RequireScope):
            return dependency.dependency.scope
    return None


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, None otherwise: what ``BEARER``
    hands ``RequireScope``, for a route that reads its headers itself (``ComputeRoute``)."""
    scheme, key = get_authorization_scheme_param(authorization)
    return key if scheme.lower() == "bearer" and key else None
