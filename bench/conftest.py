"""Session fixtures of the benchmarks: one RunConfig per profile, one BenchRun (per profile: shared baseline,
builds, evaluations, memory figures), and the cells as parameters. Options are declared in the top-level
conftest.py."""

from __future__ import annotations

import pytest

from quant_impl.bench_session import BenchRun, cell_ids, cells
from quant_impl.config import configs_from_pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        run_cells = cells(configs_from_pytest(metafunc.config))
        metafunc.parametrize("cell", run_cells, ids=cell_ids(run_cells))


@pytest.fixture(scope="session")
def bench_run(pytestconfig: pytest.Config) -> BenchRun:
    run = BenchRun(configs_from_pytest(pytestconfig))
    # pytest_benchmark_update_json (top-level conftest.py) stores the baselines and skipped cells from it.
    pytestconfig._quantbench_session = run
    return run
