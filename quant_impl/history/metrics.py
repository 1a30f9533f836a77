"""What ``quantbench compare`` can gate and show: each metric's key, direction and unit."""

from __future__ import annotations

from dataclasses import dataclass

from quant_impl.schema import FIELDS

# ---------------------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metric:
    """One quantity a rule can gate and the report shows.

    ``key`` is an ``extra_info`` key, or a ``stats`` key (seconds) when ``in_stats``. ``points`` marks a
    fraction gated in percentage points, where only absolute rules make sense. ``machine_bound`` marks
    timing and memory, which are only comparable on one machine; ``timing`` marks the latency figures, which are not
    comparable across CPU classes even when forced (int8 that pays on VNNI is slower than fp32 on AVX2).
    """

    name: str
    key: str
    higher_is_better: bool
    machine_bound: bool
    in_stats: bool = False
    points: bool = False
    timing: bool = False


def _better_up(key: str) -> bool:
    """The schema's direction of an extra_info key (the one place it is defined)."""
    direction = FIELDS[key].higher_is_better
    assert direction is not None, f"schema field {key} has no direction"
    return direction


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy_drop", "accuracy", _better_up("accuracy"), machine_bound=False, points=True),
        Metric("f1_drop", "f1", _better_up("f1"), machine_bound=False, points=True),
        # The task's primary metric (accuracy, macro-F1 or one class's F1: the cell's primary_metric says which).
        Metric("primary_drop", "primary_value", _better_up("primary_value"), machine_bound=False, points=True),
        # Latency comes from pytest-benchmark's stats, not the schema: lower is better.
        Metric("median", "median", False, machine_bound=True, in_stats=True, timing=True),
        Metric("mean", "mean", False, machine_bound=True, in_stats=True, timing=True),
        Metric("min", "min", False, machine_bound=True, in_stats=True, timing=True),
        # Tail latency as serving users read it (MLPerf's single-stream figure is the p90); from the bench's calls.
        Metric("p90", "latency_p90_s", _better_up("latency_p90_s"), machine_bound=True, timing=True),
        Metric("p99", "latency_p99_s", _better_up("latency_p99_s"), machine_bound=True, timing=True),
        Metric("size", "size_bytes", _better_up("size_bytes"), machine_bound=False),
        Metric("peak_rss", "peak_rss_mb", _better_up("peak_rss_mb"), machine_bound=True),
        Metric("speedup", "speedup_vs_fp32", _better_up("speedup_vs_fp32"), machine_bound=True, timing=True),
        Metric("throughput", "throughput_samples_per_s", _better_up("throughput_samples_per_s"), machine_bound=True,
               timing=True),
    )
}
_BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS.values()}
# The report's columns: (value key, label).
_SHOWN: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("f1", "f1"),
    ("size_bytes", "size MB"),
    ("peak_rss_mb", "peak_rss MB"),
    ("median", "median ms"),
    ("speedup_vs_fp32", "speedup"),
)

