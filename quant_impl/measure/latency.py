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


@dataclass(frozen=True)
class Throughput:
    """Texts per second over batches of real lengths (``texts`` timed), and what the warm-up cost: ``graphs`` is
    how many graphs TorchDynamo compiled in the model's calls after its build (0 for a model it never compiles or
    one dynamic graph already built; one per distinct length for a model that recompiled per length)."""

    texts_per_s: float
    texts: int
    batches: int
    distinct_lengths: int
    warmup_s: float
    graphs: int


def trimmed_batches(input_ids: torch.Tensor, attention_mask: torch.Tensor, batch_size: int,
                    count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` consecutive batches of ``batch_size`` rows (wrapping around), each cut to its longest text: what a
    server that pads per batch feeds the model."""
    rows = input_ids.shape[0]
    batches = []
    for b in range(count):
        index = torch.tensor([(b * batch_size + i) % rows for i in range(batch_size)])
        ids, mask = input_ids[index], attention_mask[index]
        longest = max(1, int(mask.sum(dim=1).max()))
        batches.append((ids[:, :longest].contiguous(), mask[:, :longest].contiguous()))
    return batches


def interleaved_throughput(
    models: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    rounds: int = 3,
) -> dict[str, Throughput]:
    """Texts per second of each model over ``batches`` of varying lengths, interleaved per batch across models.

    Warm-up runs each model on the shortest and the longest batch (a compiler that specialises on the first
    length recompiles at the second: that cost is ``warmup_s``, apart); then every round feeds every batch to
    every model in turn, and the figure is all texts over all timed seconds. A call during which TorchDynamo
    compiled a graph counts as warm-up, never as speed; ``graphs`` counts the graphs compiled in each model's
    own calls."""
    import torch._dynamo.utils as dynamo_utils

    if rounds < 1 or not batches:
        raise ValueError(f"need rounds >= 1 and batches, got {rounds} and {len(batches)}")
    seconds = {name: 0.0 for name in models}
    warmup = {name: 0.0 for name in models}
    graphs = {name: 0 for name in models}
    texts = {name: 0 for name in models}

    def call(name: str, ids: torch.Tensor, mask: torch.Tensor, timed: bool) -> None:
        before = dynamo_utils.counters["stats"]["unique_graphs"]
        start = time.perf_counter()
        models[name](ids, mask)
        elapsed = time.perf_counter() - start
        compiled = dynamo_utils.counters["stats"]["unique_graphs"] - before
        graphs[name] += compiled
        if timed and not compiled:
            seconds[name] += elapsed
            texts[name] += ids.shape[0]
        else:
            warmup[name] += elapsed

    by_length = sorted(batches, key=lambda b: b[0].shape[1])
    for name in models:
        for ids, mask in (by_length[0], by_length[-1]):
            call(name, ids, mask, timed=False)
    for _ in tqdm(range(rounds), desc="Timing real lengths (interleaved)", unit="round", leave=False):
        for ids, mask in batches:
            for name in models:
                call(name, ids, mask, timed=True)
    lengths = len({b[0].shape[1] for b in batches})
    return {name: Throughput(texts[name] / seconds[name] if seconds[name] else math.nan, texts[name], len(batches),
                             lengths, warmup[name], graphs[name]) for name in models}
