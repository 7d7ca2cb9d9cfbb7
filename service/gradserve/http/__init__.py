"""The REST front end: an app factory, thin routes, and the one map from domain errors to HTTP."""

from .app import create_app

__all__ = ["create_app"]
