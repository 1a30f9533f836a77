"""Side-by-side latency of several built models, interleaved in one process.

pytest-benchmark times one cell after another, so slow drifts of a shared VM (+-10-15 % here) land on whole
methods. For ratios between methods, ``interleaved_latency`` runs round r of every model before round r + 1
of any, and reports medians: the drift hits all methods alike. Speed lives in ``bench/`` and this command,
never in timed assertions of ``tests/``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Latency:
    median_s: float
    min_s: float
    rounds: int
    unit: str = "s"


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
    return {name: Latency(statistics.median(t), min(t), len(t)) for name, t in times.items()}
