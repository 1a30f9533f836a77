"""Shared pytest setup for tests/ and bench/: offline by default, and proof of it.

Every test runs with the Hugging Face hubs switched to offline mode and with outbound network connections
refused, so a code path that would download something fails loudly instead of passing on a lucky machine.
"""

from __future__ import annotations

import logging
import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# transformers imports torchao, which logs its missing CUDA-only libraries on every import: harmless here.
logging.getLogger("torchao").setLevel(logging.ERROR)

_LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")


class NetworkAccessError(RuntimeError):
    """Raised when a test tries to reach the network."""


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address, *args, **kwargs):  # type: ignore[no-untyped-def]
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in _LOCAL_HOSTS:
            raise NetworkAccessError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def pytest_addoption(parser: pytest.Parser) -> None:
    from quant_impl.config import add_pytest_options

    add_pytest_options(parser)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Add the CPU's ISA flags, library versions, threads and GPU to pytest-benchmark's machine_info."""
    from quant_impl.session import plugin

    plugin.update_machine_info(config, machine_info)


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    """Derive throughput and speedups from the run's own medians; store the RunConfigs with the results."""
    from quant_impl.session import plugin

    plugin.update_json(config, output_json)
