"""Session fixtures of the benchmarks: one RunConfig per profile, one BenchRun (per profile: shared baseline,
builds, evaluations, memory figures), and the cells as parameters. Options are declared in the top-level
conftest.py; the state lives in ``config.stash`` (quant_impl.session.plugin)."""

from __future__ import annotations

from typing import Any

import pytest

from quant_impl.session import lifecycle, plugin
from quant_impl.session.store import BenchRun


def pytest_configure(config: pytest.Config) -> None:
    plugin.hush_third_party(config)
    lifecycle.install_sigterm(config)


def pytest_sessionstart(session: pytest.Session) -> None:
    lifecycle.recover(session.config)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    lifecycle.resume(config, items)


def pytest_collection_finish(session: pytest.Session) -> None:
    lifecycle.start(session.config, session.items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    lifecycle.after_cell(item, outcome.get_result())


def pytest_sessionfinish(session: pytest.Session) -> None:
    lifecycle.finish(session.config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    plugin.parametrize_cells(metafunc)


@pytest.fixture(scope="session")
def bench_run(pytestconfig: pytest.Config) -> BenchRun:
    return plugin.start_bench_run(pytestconfig)
