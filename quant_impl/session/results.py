"""What the saved JSON gets after the run: speedups from the run's own medians, and each method's registration."""

from __future__ import annotations

from typing import Any

from quant_impl.config import RunConfig
from quant_impl.methods import get_method, method_names
from quant_impl.schema import COMPILED_REFERENCE, REFERENCE


def methods_metadata(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Each benchmarked method's registration (threshold after pyproject overrides, section, seed expectation,
    engine...), saved with the run so the report and the gate judge it by the rules it ran under."""
    names = list(cfg.methods) or method_names()
    return {
        name: get_method(name).metadata(cfg.thresholds.get(name))
        for name in names
    }


def add_speedups(benchmarks: list[dict[str, Any]]) -> None:
    """Fill throughput and speedups from the run's own medians: same profile (model), task, hardware, batch size and
    length only."""
    medians = {
        (b["extra_info"]["method"], b["extra_info"].get("profile"), b["extra_info"].get("task"), b["extra_info"]["hardware"],
         b["extra_info"]["batch_size"], b["extra_info"]["seq_len"]): b["stats"]["median"]
        for b in benchmarks
        if "method" in b.get("extra_info", {}) and b.get("stats")
    }
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        if "method" not in info or not bench.get("stats"):
            continue
        median = bench["stats"]["median"]
        shape = (info.get("profile"), info.get("task"), info["hardware"], info["batch_size"], info["seq_len"])
        info["throughput_samples_per_s"] = info["batch_size"] / median
        for field, reference in (("speedup_vs_fp32", REFERENCE), ("speedup_vs_fp32_compiled", COMPILED_REFERENCE)):
            ref = medians.get((reference, *shape))
            info[field] = ref / median if ref else None
