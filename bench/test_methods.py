"""Every method x hardware x batch size x sequence length: latency by pytest-benchmark, the rest in extra_info.

Build, compile, calibration, training and evaluation happen before the timed region (session-cached). Two
untimed calls per cell absorb first-call costs such as compiling for a new batch size, and a third, timed
only to pick the number of rounds, is not recorded; pytest-benchmark's own warm-up is off (``warmup_rounds=0``).
"""

from __future__ import annotations

import time

import pytest
import torch

from quant_impl.cells import Cell
from quant_impl.hardware import get_hardware
from quant_impl.methods import get_method
from quant_impl.session.store import BenchRun

# Aim for about this many seconds of timed calls per cell, within [MIN_ROUNDS, MAX_ROUNDS] rounds.
TARGET_SECONDS = 2.0
MIN_ROUNDS, MAX_ROUNDS = 5, 50


def test_latency(benchmark, bench_run: BenchRun, cell: Cell) -> None:
    bench_session = bench_run.start(cell)
    hardware = get_hardware(cell.hardware)
    reason = get_method(cell.method).supports(hardware)
    if reason:
        bench_session.skipped.append({**cell.as_dict(), "reason": reason})
        pytest.skip(reason)
    benchmark.extra_info.update(bench_session.extra_info(cell, hardware))
    built = bench_session.built(cell.method, hardware)
    inputs = bench_session.batch(cell.batch_size, cell.seq_len, hardware.device)
    hardware.activate()
    for _ in range(2):  # compile for this shape, fill caches
        built(*inputs)
    start = time.perf_counter()
    built(*inputs)
    once = time.perf_counter() - start
    rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, round(TARGET_SECONDS / max(once, 1e-6))))
    benchmark.group = cell.group
    # Already warm (the calls above): no warm-up round inside pedantic.
    benchmark.pedantic(_synchronized(built, hardware.device), args=inputs, rounds=rounds, warmup_rounds=0, iterations=1)


def _synchronized(built, device: str):
    """CUDA calls return before the GPU finishes: wait for it inside the timed call."""
    if device != "cuda":
        return built

    def run(*inputs):
        out = built(*inputs)
        torch.cuda.synchronize()
        return out

    return run
