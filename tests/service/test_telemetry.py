"""FastAPI's native OpenTelemetry: on where OpenTelemetry is configured as the app is built, off
(and free per request) otherwise."""

from __future__ import annotations

from opentelemetry import trace

from gradserve.http.app import telemetry_config

OFF = {"tracing": False, "metrics": False, "logs": False}


def test_off_unless_opentelemetry_is_configured(monkeypatch):
    monkeypatch.delenv("FASTAPI_OTEL_AUTO_CONFIGURE", raising=False)
    assert telemetry_config() == OFF


def test_fastapis_own_set_up_from_the_environment_keeps_it_on(monkeypatch):
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    assert telemetry_config() is None  # FastAPI's defaults


def test_a_configured_provider_keeps_it_on(monkeypatch):
    monkeypatch.delenv("FASTAPI_OTEL_AUTO_CONFIGURE", raising=False)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.NoOpTracerProvider())
    assert telemetry_config() is None
