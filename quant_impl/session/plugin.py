"""The pytest side of a bench run: its state in ``config.stash`` under the keys below, the cells as parameters,
the additions to pytest-benchmark's JSON, and the third-party notices it hushes (quant_impl.quiet).
bench/conftest.py and the top-level conftest.py are thin layers over these functions; the ``--quant-*`` options
themselves are declared by quant_impl.config.add_pytest_options.
"""

from __future__ import annotations

from typing import Any

import pytest

from quant_impl import quiet
from quant_impl.config import RunConfig, configs_from_pytest, machine_tag
from quant_impl.measure.machine import machine_info
from quant_impl.schema import SCHEMA_VERSION
from quant_impl.session import lifecycle
from quant_impl.session.cells import cell_ids, cells
from quant_impl.session.results import add_speedups, methods_metadata
from quant_impl.session.store import BenchRun

# Built from the options once per pytest session: collection, the fixtures and the JSON hook must agree.
RUN_CONFIGS = pytest.StashKey[list[RunConfig]]()
# Set by the bench_run fixture; absent when no benchmark ran (the JSON hook then reports empty sessions).
BENCH_RUN = pytest.StashKey[BenchRun]()


def run_configs(config: pytest.Config) -> list[RunConfig]:
    """The run's RunConfigs, one per profile (see quant_impl.config.configs_from_pytest)."""
    if RUN_CONFIGS not in config.stash:
        config.stash[RUN_CONFIGS] = configs_from_pytest(config)
    return config.stash[RUN_CONFIGS]


def hush_third_party(config: pytest.Config) -> None:
    """Hush the third-party notices of quant_impl.quiet for the run, unless pytest runs with -v."""
    verbose = config.option.verbose > 0
    quiet.install(verbose)
    if verbose:
        return
    # pytest rebuilds the warning filters around each test from its ini lines, deprecations shown first.
    present = config.getini("filterwarnings")
    for line in quiet.pytest_lines():
        if line not in present:
            config.addinivalue_line("filterwarnings", line)


def parametrize_cells(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        run_cells = cells(run_configs(metafunc.config))
        metafunc.parametrize("cell", run_cells, ids=cell_ids(run_cells))


def start_bench_run(config: pytest.Config) -> BenchRun:
    recipe_warnings(run_configs(config))
    run = BenchRun(run_configs(config))
    config.stash[BENCH_RUN] = run  # the JSON hook stores its baselines and skipped cells
    return run


def recipe_warnings(cfgs: list[RunConfig]) -> list[str]:
    """Warn (a pytest warning, in the run's summary) for each saved recipe the run measures on a CPU class other
    than the one it was tuned on; returns the messages."""
    import warnings

    from quant_impl.measure.machine import effective_cpu_class
    from quant_impl.methods import get_method
    from quant_impl.tune.recipes import cpu_class_warning

    messages = []
    for name in dict.fromkeys(name for cfg in cfgs for name in cfg.methods):
        message = cpu_class_warning(get_method(name), effective_cpu_class())
        if message:
            warnings.warn(message, UserWarning, stacklevel=2)
            messages.append(message)
    return messages


def update_machine_info(config: pytest.Config, machine_info_json: dict[str, Any]) -> None:
    machine_info_json["quantbench"] = machine_info()
    if machine_tag(config):
        machine_info_json["quantbench"]["machine_tag"] = machine_tag(config)


def update_json(config: pytest.Config, output_json: dict[str, Any]) -> None:
    lifecycle.merge_resumed(config, output_json)
    add_speedups(output_json["benchmarks"])
    cfgs = run_configs(config)
    # The first profile's RunConfig and methods at the top (what single-model readers take); every profile's
    # under "profiles" (BenchRun.run_summary).
    output_json["quantbench"] = {
        "schema_version": SCHEMA_VERSION,
        "run_config": cfgs[0].to_dict(),
        "methods": methods_metadata(cfgs[0]),
    }
    run = config.stash.get(BENCH_RUN, None) or BenchRun(cfgs)
    output_json["quantbench"].update(run.run_summary())
    lifecycle.mark_partial(config, output_json)
    if lifecycle.resumed_from(config):
        output_json["quantbench"]["resumed_from"] = lifecycle.resumed_from(config)
