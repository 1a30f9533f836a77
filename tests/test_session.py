from __future__ import annotations

from pathlib import Path

import pytest

from quant_impl.cells import Cell
from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError
from quant_impl.hardware import get_hardware
from quant_impl.session import plugin
from quant_impl.session.cells import cell_ids, cells
from quant_impl.session.results import add_speedups
from quant_impl.session.store import BenchRun, BenchSession

ROOT = Path(__file__).resolve().parents[1]


def _bench(method: str, hardware: str, batch: int, median: float) -> dict:
    return {"extra_info": {"method": method, "hardware": hardware, "batch_size": batch, "seq_len": 128},
            "stats": {"median": median}}


def test_speedups_compare_only_the_same_cell() -> None:
    benches = [
        _bench("fp32", "cpu", 32, 0.60), _bench("fp32-compiled", "cpu", 32, 0.50),
        _bench("static-int8", "cpu", 32, 0.20), _bench("static-int8", "cpu", 1, 0.01),
        _bench("fp32", "cpu-1t", 32, 1.20), _bench("static-int8", "cpu-1t", 32, 0.40),
        {"extra_info": {}, "stats": {"median": 1.0}},  # a foreign benchmark is left alone
    ]
    add_speedups(benches)
    static = benches[2]["extra_info"]
    assert static["speedup_vs_fp32"] == pytest.approx(3.0)
    assert static["speedup_vs_fp32_compiled"] == pytest.approx(2.5)
    assert static["throughput_samples_per_s"] == pytest.approx(160.0)
    assert benches[3]["extra_info"]["speedup_vs_fp32"] is None  # no fp32 at batch 1 in this run
    assert benches[5]["extra_info"]["speedup_vs_fp32"] == pytest.approx(3.0)
    assert benches[6]["extra_info"] == {}


def test_cells_cover_the_product_and_reject_unknown_methods() -> None:
    cfg = RunConfig.load("smoke", {"methods": "fp32,bf16", "hardware": "cpu,cuda", "batch_sizes": "1,8"})
    run_cells = cells(cfg)
    assert len(run_cells) == 2 * 2 * 2 * 1
    assert Cell("bf16", "cuda", 8, 32, "smoke") in run_cells and run_cells[0].method == "fp32"
    with pytest.raises(QuantbenchError, match="'bf61' is not registered"):
        cells(cfg.replace(methods=("bf61",)))


def test_evaluations_are_cached_on_disk_and_marked(tmp_path) -> None:
    cfg = RunConfig.load("smoke", {"cache_dir": tmp_path})
    cpu = get_hardware("cpu")
    first = BenchSession(cfg)
    result = first.evaluation("bf16", cpu)
    assert ("bf16", "cpu") not in first.cached_evaluations
    second = BenchSession(cfg)
    assert second.evaluation("bf16", cpu) == result
    assert ("bf16", "cpu") in second.cached_evaluations
    info = second.extra_info(Cell("bf16", "cpu", 1, 32, "smoke"), cpu)
    assert info["evaluation_cached"] is True and info["accuracy"] == result.accuracy


def test_speedups_stay_within_one_profile() -> None:
    benches = []
    for profile, scale in (("quick", 1.0), ("base", 4.0)):
        for method, median in (("fp32", 0.4), ("static-int8", 0.1)):
            bench = _bench(method, "cpu", 32, median * scale)
            bench["extra_info"]["profile"] = profile
            benches.append(bench)
    add_speedups(benches)
    # Each model against its own FP32: 4x in both, though base's int8 is slower than quick's FP32.
    assert [b["extra_info"]["speedup_vs_fp32"] for b in benches] == pytest.approx([1.0, 4.0, 1.0, 4.0])


def test_cells_of_several_profiles_get_prefixed_ids() -> None:
    one = {"methods": "fp32", "hardware": "cpu", "batch_sizes": "1"}
    run_cells = cells([RunConfig.load("smoke", one), RunConfig.load("quick", one)])
    assert [c.profile for c in run_cells] == ["smoke", "quick"]
    assert cell_ids(run_cells)[-1] == "quick-fp32-cpu-b1-s128" and cell_ids(run_cells[:1]) == ["fp32-cpu-b1-s32"]


def test_a_run_holds_one_built_method_at_a_time(tmp_path) -> None:
    """Cells run method by method: starting a cell drops the other methods' builds (of every profile), while
    their evaluations and sizes stay for the extra_info of later cells."""
    one = {"methods": "fp32,bf16", "hardware": "cpu", "batch_sizes": "1", "cache_dir": tmp_path}
    run = BenchRun([RunConfig.load("smoke", one), RunConfig.load("smoke", {**one, "seed": 1}).replace(profile="other")])
    cpu = get_hardware("cpu")
    first = run.start(Cell("bf16", "cpu", 1, 32, "smoke"))
    bf16 = first.built("bf16", cpu)
    info = first.extra_info(Cell("bf16", "cpu", 1, 32, "smoke"), cpu)
    assert set(first._built) == {("bf16", "cpu"), ("fp32", "cpu")}
    other = run.start(Cell("bf16", "cpu", 1, 32, "other"))
    assert first._built == {} and other is run["other"]
    assert first.size_bytes("bf16", cpu) == bf16.size_bytes == info["size_bytes"]
    assert first.evaluation("bf16", cpu).accuracy == info["accuracy"]  # kept in memory, no rebuild
    assert first._built == {}
    again = run.start(Cell("fp32", "cpu", 1, 32, "smoke")).extra_info(Cell("fp32", "cpu", 1, 32, "smoke"), cpu)
    assert again["compression_ratio"] == 1.0 and set(first._built) == {("fp32", "cpu")}


class _PytestConfig:
    """The parts of pytest.Config the plugin touches: options and the stash."""

    def __init__(self, **options) -> None:
        self.options = options
        self.stash = pytest.Stash()

    def getoption(self, name: str):
        return self.options.get(name)


def test_plugin_state_lives_in_the_config_stash() -> None:
    config = _PytestConfig(quant_profile="smoke", quant_methods="fp32,bf16")
    cfgs = plugin.run_configs(config)
    assert plugin.run_configs(config) is cfgs is config.stash[plugin.RUN_CONFIGS]
    assert [(c.profile, c.methods) for c in cfgs] == [("smoke", ("fp32", "bf16"))]
    run = plugin.start_bench_run(config)
    assert config.stash[plugin.BENCH_RUN] is run and run["smoke"].cfg is cfgs[0]
    run["smoke"].skipped.append({"method": "bf16", "reason": "stashed"})
    output = {"benchmarks": []}
    plugin.update_json(config, output)
    assert output["quantbench"]["skipped"] == [{"method": "bf16", "reason": "stashed"}]
    assert set(output["quantbench"]["methods"]) == {"fp32", "bf16"}
    assert not [name for name in vars(config) if name.startswith("_quantbench")]


def test_no_conftest_keeps_state_on_private_config_attributes() -> None:
    """pytest owns pytest.Config's attributes; ours go in config.stash under quant_impl.session.plugin's keys."""
    sources = [ROOT / "conftest.py", ROOT / "bench" / "conftest.py", ROOT / "quant_impl" / "config.py",
               *sorted((ROOT / "quant_impl" / "session").glob("*.py"))]
    offenders = [path.relative_to(ROOT).as_posix() for path in sources if "_quantbench_" in path.read_text()]
    assert offenders == []
