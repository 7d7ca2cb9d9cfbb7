"""The device in use is reported (log line, GET /models, GET /info), the GPU memory settings reach
JAX's environment, and /info tells what runs without telling secrets."""

from __future__ import annotations

import contextlib
import logging
import os

import httpx
import jax
import pytest

from gradserve import device
from gradserve.device import DeviceInfo, log_device, open_device
from gradserve.settings import Settings

CPU = DeviceInfo(platform="cpu", device="cpu:0", kind="cpu", count=1)
GPU = DeviceInfo(platform="gpu", device="cuda:0", kind="NVIDIA H100 80GB HBM3", count=2)


@contextlib.contextmanager
def _platforms(value):
    before = jax.config.jax_platforms
    jax.config.update("jax_platforms", value)
    try:
        yield
    finally:
        jax.config.update("jax_platforms", before)


def _messages(caplog) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gradserve"]


def test_the_cpu_device_is_reported_and_the_reason_said(caplog):
    info = open_device(Settings())
    assert info.platform == jax.default_backend() == "cpu" and info.is_cpu
    with caplog.at_level(logging.INFO, logger="gradserve"):
        with _platforms("cpu"):
            log_device(info)
    assert _messages(caplog) == [(logging.INFO, "computing on the CPU (JAX_PLATFORMS=cpu)")]


def test_falling_back_to_the_cpu_is_a_warning_when_a_cuda_plugin_is_installed(caplog, monkeypatch):
    monkeypatch.setattr(device, "_cuda_plugins", lambda: ["jax-cuda12-plugin"])
    with caplog.at_level(logging.INFO, logger="gradserve"), _platforms(None):
        log_device(CPU)
    [(level, message)] = _messages(caplog)
    assert level == logging.WARNING
    assert message.startswith("no GPU found: falling back to the CPU although jax-cuda12-plugin")
    caplog.clear()
    monkeypatch.setattr(device, "_cuda_plugins", lambda: [])
    with caplog.at_level(logging.INFO, logger="gradserve"), _platforms(None):
        log_device(CPU)
    [(level, message)] = _messages(caplog)
    assert level == logging.INFO and message.startswith("no GPU found: computing on the CPU")


def test_a_gpu_is_named_with_its_memory_policy(caplog, monkeypatch):
    monkeypatch.setenv(device.PREALLOCATE, "false")
    monkeypatch.setenv(device.MEM_FRACTION, "0.3")
    with caplog.at_level(logging.INFO, logger="gradserve"):
        log_device(GPU)
    assert _messages(caplog) == [(logging.INFO, "computing on cuda:0 (NVIDIA H100 80GB HBM3; 2 gpu "
                                  "device(s) visible; GPU memory allocated as needed, at most 0.3 "
                                  "of it)")]


@pytest.mark.parametrize("settings, environ, expected", [
    ({}, {}, {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_PYTHON_CLIENT_MEM_FRACTION": None}),
    ({"gpu_preallocate": True, "gpu_memory_fraction": 0.45}, {},
     {"XLA_PYTHON_CLIENT_PREALLOCATE": "true", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.45"}),
    # JAX's own variables, set explicitly, win
    ({"gpu_memory_fraction": 0.45}, {"XLA_PYTHON_CLIENT_PREALLOCATE": "true",
                                     "XLA_PYTHON_CLIENT_MEM_FRACTION": ".9"},
     {"XLA_PYTHON_CLIENT_PREALLOCATE": "true", "XLA_PYTHON_CLIENT_MEM_FRACTION": ".9"}),
])
def test_gpu_memory_settings_reach_jax_s_environment(monkeypatch, settings, environ, expected):
    for name in expected:  # set, then removed: monkeypatch restores the original either way
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    open_device(Settings(**settings))
    assert {name: os.environ.get(name) for name in expected} == expected


def test_info_and_models_report_the_device(live_server):
    info = httpx.get(f"{live_server.url}/info").json()
    assert info["platform"] == "cpu" and info["device"] == "cpu:0" and info["device_count"] >= 1
    assert info["version"] and info["jax_version"] == jax.__version__
    assert info["ready"] is True and info["draining"] is False
    assert {m["name"] for m in info["models"]} == {"borehole", "classifier", "compression"}
    assert info["settings"]["buckets"] == [1, 8, 64] and info["settings"]["compilation_cache"] is True
    models = httpx.get(f"{live_server.url}/models").json()["models"]
    assert {m["device"] for m in models} == {info["device"]}


def test_info_shows_only_settings_that_are_safe_to_show():
    from gradserve.dataplane import DataPlane

    plane = DataPlane(Settings(models="/srv/secret/path"))
    try:
        shown = plane.info()["settings"]
    finally:
        plane.close()
    assert "models" not in shown and "/srv/secret" not in str(shown)
    assert set(shown) <= set(Settings.model_fields)
    assert not {name for name in shown if "key" in name or "secret" in name or "token" in name}
