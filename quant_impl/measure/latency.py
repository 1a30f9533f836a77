"""Side-by-side latency of several built models, interleaved in one process.

pytest-benchmark times one cell after another, so slow drifts of a shared VM (+-10-15 % here) land on whole
methods. For ratios between methods, ``interleaved_latency`` runs round r of every model before round r + 1
of any, and reports medians: the drift hits all methods alike. Speed lives in ``bench/`` and this command,
never in timed assertions of ``tests/``.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm


# Fewest calls a tail percentile needs to be more than the slowest call or two (nearest rank: the p99 of 99 calls is
# the maximum, one descheduling of the VM).
P90_CALLS, P99_CALLS = 10, 100


@dataclass(frozen=True)
class Latency:
    median_s: float
    min_s: float
    rounds: int
    p90_s: float | None = None
    p99_s: float | None = None
    unit: str = "s"


def percentiles(times: Sequence[float]) -> dict[str, float | None]:
    """p50, p90 and p99 of per-call seconds by nearest rank (a time that was measured, never interpolated); a tail
    percentile is None when there are too few calls for it to differ from the maximum.

    Example:
        >>> percentiles([0.01] * 9 + [0.05])["latency_p90_s"]
        0.01
    """
    if not times:
        raise ValueError("no timed calls")
    ordered = sorted(times)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "latency_p50_s": statistics.median(ordered),
        "latency_p90_s": rank(0.90) if len(ordered) >= P90_CALLS else None,
        "latency_p99_s": rank(0.99) if len(ordered) >= P99_CALLS else None,
    }


def interleaved_latency(
    models: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
    inputs: tuple[torch.Tensor, torch.Tensor],
    rounds: int = 10,
    warmup: int = 2,
) -> dict[str, Latency]:
    """Median and minimum seconds per call of each model, rounds interleaved across models.

    Example:
        >>> lat = interleaved_latency({"a": lambda i, m: i + 1}, (torch.zeros(1), torch.zeros(1)), rounds=3)
        >>> lat["a"].rounds
        3
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    # Each predictor sets its own grad mode (compiled graphs are guarded on it); none is imposed here.
    for model in models.values():
        for _ in range(warmup):
            model(*inputs)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in tqdm(range(rounds), desc="Timing (interleaved)", unit="round", leave=False):
        for name, model in models.items():
            start = time.perf_counter()
            model(*inputs)
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, t in times.items():
        tails = percentiles(t)
        out[name] = Latency(statistics.median(t), min(t), len(t), tails["latency_p90_s"], tails["latency_p99_s"])
    return out
