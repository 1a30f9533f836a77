"""Session fixtures of the benchmarks: one RunConfig, one BenchSession (shared baseline, builds, evaluations,
memory figures), and the cells as parameters. Options are declared in the top-level conftest.py."""

from __future__ import annotations

import pytest

from quant_impl.bench_session import BenchSession, cells
from quant_impl.config import config_from_pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        run_cells = cells(config_from_pytest(metafunc.config))
        metafunc.parametrize("cell", run_cells, ids=[c.id for c in run_cells])


@pytest.fixture(scope="session")
def bench_session(pytestconfig: pytest.Config) -> BenchSession:
    session = BenchSession(config_from_pytest(pytestconfig))
    # pytest_benchmark_update_json (top-level conftest.py) stores the baseline and skipped cells from it.
    pytestconfig._quantbench_session = session
    return session
