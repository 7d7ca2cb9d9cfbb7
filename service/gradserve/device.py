"""Which device JAX computes on, and how this process shares a GPU with others.

JAX reads its GPU memory settings from the environment once, when it first opens a device, so
:func:`open_device` sets them and only then asks JAX for its devices. Left alone, JAX reserves
75% of a GPU's memory at start-up; gradserve does not by default
(``XLA_PYTHON_CLIENT_PREALLOCATE=false``): its kernels are small, and several workers, or other
programs, often share one GPU. A variable set explicitly in the environment wins over the
settings, so JAX's own documentation keeps applying.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from importlib import metadata

import jax

from .settings import Settings

__all__ = ["DeviceInfo", "open_device", "log_device"]

log = logging.getLogger("gradserve")

PREALLOCATE = "XLA_PYTHON_CLIENT_PREALLOCATE"
MEM_FRACTION = "XLA_PYTHON_CLIENT_MEM_FRACTION"


@dataclass(frozen=True)
class DeviceInfo:
    """The device that runs the compiled kernels (the first one JAX lists)."""

    platform: str
    """JAX's backend: "cpu", "gpu" (CUDA or ROCm) or "tpu"."""
    device: str
    """The device's name in JAX, e.g. "cuda:0" or "cpu:0"."""
    kind: str
    """What the hardware is, e.g. "NVIDIA H100 80GB HBM3" or "cpu"."""
    count: int
    """Devices of that platform visible to this process."""

    @property
    def is_cpu(self) -> bool:
        return self.platform == "cpu"

    def as_dict(self) -> dict:
        return {"platform": self.platform, "device": self.device, "device_kind": self.kind,
                "device_count": self.count}


def _configure_memory(settings: Settings) -> None:
    os.environ.setdefault(PREALLOCATE, "true" if settings.gpu_preallocate else "false")
    if settings.gpu_memory_fraction is not None:
        os.environ.setdefault(MEM_FRACTION, f"{settings.gpu_memory_fraction:g}")


def open_device(settings: Settings) -> DeviceInfo:
    """Apply the GPU memory settings, then open JAX's default device and describe it."""
    _configure_memory(settings)
    devices = jax.devices()
    return DeviceInfo(platform=jax.default_backend(), device=str(devices[0]),
                      kind=devices[0].device_kind, count=len(devices))


def _cuda_plugins() -> list[str]:
    """Installed JAX CUDA plugins (``jax-cuda12-plugin``...): a GPU was meant to be used."""
    names = {re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
             for dist in metadata.distributions()}
    return sorted(n for n in names if re.fullmatch(r"jax-cuda\d+-plugin", n))


def log_device(info: DeviceInfo) -> None:
    """Say at start-up which device computes, and say it loudly when a GPU was expected."""
    if not info.is_cpu:
        memory = ("preallocated" if os.environ.get(PREALLOCATE, "").lower() in ("1", "true")
                  else "allocated as needed")
        fraction = os.environ.get(MEM_FRACTION)
        log.info("computing on %s (%s; %d %s device(s) visible; GPU memory %s%s)", info.device,
                 info.kind, info.count, info.platform, memory,
                 f", at most {fraction} of it" if fraction else "")
        return
    requested = (jax.config.jax_platforms or "").strip()
    if requested and "cpu" in requested and not re.search(r"cuda|gpu|rocm", requested):
        log.info("computing on the CPU (JAX_PLATFORMS=%s)", requested)
        return
    plugins = _cuda_plugins()
    if plugins:
        log.warning("no GPU found: falling back to the CPU although %s is installed; is the GPU "
                    "visible to this process (container: a GPU reservation or --gpus; "
                    "CUDA_VISIBLE_DEVICES)?", ", ".join(plugins))
    else:
        log.info("no GPU found: computing on the CPU (this installation has no JAX CUDA plugin; "
                 "install with 'scripts/install.sh --cuda' for GPUs)")
