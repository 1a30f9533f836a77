"""toxfile.py, the tox plugin that hands pip's find-links to uv (without them uv takes torch's CUDA build from PyPI)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toxfile():
    spec = importlib.util.spec_from_file_location("quantbench_toxfile", ROOT / "toxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pip_config(monkeypatch, toxfile, listed: str) -> list[list[str]]:
    calls: list[list[str]] = []

    def run(argv, **_kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=listed, stderr="")

    monkeypatch.setattr(toxfile.subprocess, "run", run)
    return calls


def test_pip_find_links_come_from_pip_config_when_the_variable_is_unset(monkeypatch, toxfile):
    listed = ("global.cert='/etc/ssl/certs/ca.crt'\nglobal.find-links='/opt/wheels /srv/more'\n"
              "install.find-links='/opt/wheels'\nglobal.extra-index-url='file:///opt/pypi/simple'\n")
    calls = _pip_config(monkeypatch, toxfile, listed)
    assert toxfile.pip_find_links({}) == ["/opt/wheels", "/srv/more"]
    assert calls and calls[0][-2:] == ["config", "list"]


def test_pip_find_links_variable_wins_and_no_config_means_none(monkeypatch, toxfile):
    calls = _pip_config(monkeypatch, toxfile, "global.cert='/x'\n")
    assert toxfile.pip_find_links({"PIP_FIND_LINKS": "/a /b"}) == ["/a", "/b"]
    assert not calls  # the variable is what pip uses: its config is not read
    assert toxfile.pip_find_links({}) == []


def test_uv_gets_pip_find_links_unless_it_has_its_own(monkeypatch, toxfile):
    _pip_config(monkeypatch, toxfile, "global.find-links='/opt/wheels /srv/more'\n")
    environ: dict[str, str] = {}
    toxfile.share_find_links(environ)
    assert environ == {"UV_FIND_LINKS": "/opt/wheels,/srv/more"}
    own = {"UV_FIND_LINKS": "/mine"}
    toxfile.share_find_links(own)
    assert own == {"UV_FIND_LINKS": "/mine"}
    nothing: dict[str, str] = {}
    _pip_config(monkeypatch, toxfile, "")
    toxfile.share_find_links(nothing)
    assert nothing == {}  # no find-links anywhere: uv is left to its own defaults


def test_tox_ini_passes_uv_find_links_and_requires_tox_uv():
    ini = (ROOT / "tox.ini").read_text(encoding="utf-8")
    assert "tox-uv" in ini and "UV_FIND_LINKS = {env:UV_FIND_LINKS:}" in ini
