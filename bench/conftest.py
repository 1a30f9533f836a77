"""Session fixtures of the benchmarks: one RunConfig per profile, one BenchRun (per profile: shared baseline,
builds, evaluations, memory figures), and the cells as parameters. Options are declared in the top-level
conftest.py; the state lives in ``config.stash`` (quant_impl.session.plugin)."""

from __future__ import annotations

import pytest

from quant_impl.session import plugin
from quant_impl.session.store import BenchRun


def pytest_configure(config: pytest.Config) -> None:
    plugin.hush_third_party(config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    plugin.parametrize_cells(metafunc)


@pytest.fixture(scope="session")
def bench_run(pytestconfig: pytest.Config) -> BenchRun:
    return plugin.start_bench_run(pytestconfig)
