"""The model repository on disk: ``<root>/<name>/<version>/{model.json, weights.safetensors}``.

Versions are positive integers; the highest complete one is the latest. A new version is written
into a hidden temporary folder beside the others, flushed to disk, then renamed into place, so a
reader sees a whole version or none, and a crash mid-write leaves the previous version. The rename
is also the lock between writers: two that race for the same number cannot both win.

Old versions are pruned the same way in reverse: renamed out of sight first (atomic), then
deleted, so a crash mid-delete leaves a hidden temporary folder, never a half version.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy

from .errors import ModelFormatError, ModelNotFound, WeightsConflict
from .network import join_weights, split_weights
from .spec import ModelSpec

__all__ = ["ModelRepository", "read_version", "write_version_files", "SPEC_FILE", "WEIGHTS_FILE"]

SPEC_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TMP_PREFIX = ".tmp-"


def check_name(name: str) -> str:
    """Model names are plain folder names: no separators, no leading dot, nothing to traverse."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ModelNotFound(
            f"no model named {name!r}: names are 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def read_weights(path: Path, spec: ModelSpec) -> np.ndarray:
    """Read a weight file and check every tensor against the spec; returns the flat (p,) vector."""
    try:
        tensors = safetensors.numpy.load_file(str(path))
    except FileNotFoundError:
        raise ModelFormatError(path, None, "is missing") from None
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(path, None, f"is not a readable safetensors file ({exc})") from None
    expected = dict(spec.weight_shapes())
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ModelFormatError(path, extra[0], f"is not a tensor of this spec (expected {sorted(expected)})")
    for name, shape in expected.items():
        if name not in tensors:
            raise ModelFormatError(path, name, f"is missing (expected a {spec.dtype} tensor of shape {shape})")
        t = tensors[name]
        if t.shape != shape:
            raise ModelFormatError(path, name, f"has shape {t.shape}; expected {shape}")
        if t.dtype != np.dtype(spec.dtype):
            raise ModelFormatError(path, name, f"has dtype {t.dtype}; expected {spec.dtype}")
        if not np.isfinite(t).all():
            raise ModelFormatError(path, name, "has a non-finite entry")
    return join_weights(spec, tensors)


def read_version(folder: Path) -> tuple[ModelSpec, np.ndarray]:
    """Read one version folder: (spec, flat weights (p,))."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFormatError(folder, None, "is not a folder")
    spec = ModelSpec.read(folder / SPEC_FILE)
    return spec, read_weights(folder / WEIGHTS_FILE, spec)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_version_files(folder: Path, spec: ModelSpec, weights: np.ndarray) -> None:
    """Write spec and weights into ``folder`` (which must exist) and flush both to disk."""
    spec_path, weights_path = folder / SPEC_FILE, folder / WEIGHTS_FILE
    spec_path.write_text(spec.to_json())
    tensors = {k: np.ascontiguousarray(v) for k, v in split_weights(spec, weights).items()}
    safetensors.numpy.save_file(tensors, str(weights_path), metadata={"format": "gradserve"})
    for path in (spec_path, weights_path, folder):
        _fsync(path)


class ModelRepository:
    """A folder of models, each a folder of numbered versions."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def model_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and _NAME.match(p.name) and self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        """Complete versions of a model, oldest first (a folder without its spec is ignored)."""
        folder = self.root / check_name(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir()
                      if p.name.isdigit() and (p / SPEC_FILE).is_file() and int(p.name) > 0)

    def version_times(self, name: str) -> dict[int, float]:
        """{version: the time it was stored (Unix seconds)}, oldest first."""
        times = {}
        for v in self.versions(name):
            try:
                times[v] = (self.root / name / str(v) / SPEC_FILE).stat().st_mtime
            except FileNotFoundError:  # pruned meanwhile
                pass
        return times

    def prune(self, name: str, keep: int, protect: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """Delete all but the ``keep`` newest versions, never one in ``protect`` nor the latest;
        returns the versions deleted, oldest first."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        versions = self.versions(name)
        doomed = [v for v in versions[:-keep] if v not in protect]
        folder = self.root / name
        for v in doomed:
            trash = _temporary(folder)
            try:
                os.rename(folder / str(v), trash)
            except FileNotFoundError:  # another writer pruned it first
                continue
            shutil.rmtree(trash, ignore_errors=True)
        if doomed:
            _fsync(folder)
        return doomed

    def latest_version(self, name: str) -> int:
        versions = self.versions(name)
        if not versions:
            raise ModelNotFound(f"no model named {name!r} in {self.root}"
                                f" (models: {', '.join(self.model_names()) or 'none'})")
        return versions[-1]

    def read(self, name: str, version: int | None = None) -> tuple[ModelSpec, np.ndarray, int]:
        """(spec, weights (p,), version) of a version, the latest by default."""
        if version is None:
            version = self.latest_version(name)
        elif version not in self.versions(name):
            raise ModelNotFound(f"model {name!r} has no version {version} "
                                f"(versions: {self.versions(name)})")
        spec, weights = read_version(self.root / name / str(version))
        return spec, weights, version

    def write(self, name: str, spec: ModelSpec, weights: np.ndarray,
              if_version: int | None = None) -> int:
        """Store a new version and return its number.

        With ``if_version``, the write succeeds only if that is still the latest version
        (else WeightsConflict); without, it takes the next free number.
        """
        folder = self.root / check_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = _temporary(folder)
        tmp.mkdir()
        try:
            write_version_files(tmp, spec, weights)
            while True:
                current = self.versions(name)
                latest = current[-1] if current else 0
                if if_version is not None and latest != if_version:
                    raise WeightsConflict(
                        f"model {name!r} is at version {latest}, not {if_version}: "
                        "read the current weights and retry")
                target = folder / str(latest + 1)
                try:
                    _rename_new(tmp, target)
                except FileExistsError:
                    if if_version is not None:
                        raise WeightsConflict(
                            f"model {name!r} moved past version {if_version} while writing: "
                            "read the current weights and retry") from None
                    continue
                _fsync(folder)
                return latest + 1
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def remove_stale_temporaries(self, name: str, older_than: float = 600.0) -> int:
        """Delete temporary folders left by writers that died mid-write; returns how many.

        Another process sharing the repository (a second worker) may be writing one right now,
        so a folder whose name shows a live process of this host as its writer is left alone,
        as is one of another host, unless untouched for ``older_than`` seconds (a write takes
        milliseconds). A folder of a process that is gone, or of unknown origin, is stale now.
        """
        folder = self.root / check_name(name)
        cutoff = time.time() - older_than
        stale = []
        for p in folder.glob(f"{_TMP_PREFIX}*") if folder.is_dir() else []:
            try:
                if p.is_dir() and (_writer_alive(p.name) is False or p.stat().st_mtime < cutoff):
                    stale.append(p)
            except FileNotFoundError:  # its writer just renamed or removed it
                continue
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        return len(stale)


def _temporary(folder: Path) -> Path:
    """A hidden temporary folder in ``folder``, named after its writer: host, process, nonce."""
    return folder / f"{_TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"


def _writer_alive(name: str) -> bool | None:
    """Whether the process that named a temporary folder still runs: True or False for one of
    this host, None for another host's (it cannot be told from here). A name of unknown form
    is no live writer's: False."""
    match = re.fullmatch(re.escape(_TMP_PREFIX) + r"(.+)-(\d+)-[0-9a-f]{32}", name)
    if match is None:
        return False
    if match.group(1) != socket.gethostname():
        return None
    try:
        os.kill(int(match.group(2)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _rename_new(src: Path, dst: Path) -> None:
    """Rename src to dst; FileExistsError if dst is already a version.

    rename(2) onto a non-empty folder fails, so of two writers racing for one number exactly one
    wins; an empty folder (left by nothing we write) is simply replaced.
    """
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise FileExistsError(str(dst)) from None
        raise
