"""Public names are listed in __all__, and nothing generic lands in site-packages."""

from __future__ import annotations

import tomllib
from pathlib import Path

import gradserve
import gradserve_client

ROOT = Path(__file__).resolve().parents[1]


def test_all_lists_exactly_the_public_names():
    for module in (gradserve, gradserve_client):
        public = {n for n in dir(module) if not n.startswith("_")}
        submodules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
        assert set(module.__all__) == public - submodules, module.__name__
        assert all(hasattr(module, n) for n in module.__all__)


def test_distributions_install_only_their_own_packages():
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert server["tool"]["setuptools"]["packages"]["find"]["include"] == ["gradserve*"]
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())
    assert client["tool"]["setuptools"]["packages"] == ["gradserve_client"]
    assert sorted(d.split(">")[0] for d in client["project"]["dependencies"]) == ["httpx", "numpy"]
