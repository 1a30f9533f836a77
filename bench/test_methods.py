"""Every method x hardware x batch size x sequence length: latency by pytest-benchmark, the rest in extra_info.

Build, compile, calibration, training and evaluation happen before the timed region (session-cached). Two
untimed calls per cell absorb first-call costs such as compiling for a new batch size, and a third, timed
only to pick the number of rounds, is not recorded; pytest-benchmark's own warm-up is off (``warmup_rounds=0``).
"""

from __future__ import annotations

import time
import warnings

import pytest
import torch

from quant_impl.cells import Cell
from quant_impl.hardware import get_hardware
from quant_impl.measure.contention import OtherLoad, contention_warning
from quant_impl.measure.latency import P99_CALLS, percentiles
from quant_impl.methods import get_method
from quant_impl.session import lifecycle
from quant_impl.session.store import BenchRun

# Rounds are bounded by time, not count: about TARGET_SECONDS of timed calls per cell, at least MIN_ROUNDS (a batch-32
# call takes 1.5 s on an AVX2-only VM: a fixed count there is minutes per cell). Batch 1 is what serving users read
# tail latency at: it gets enough calls for a p99 (P99_CALLS) where they fit in TAIL_SECONDS.
TARGET_SECONDS = 2.0
TAIL_SECONDS = 8.0
MIN_ROUNDS, MAX_ROUNDS = 3, 400


def test_latency(benchmark, bench_run: BenchRun, cell: Cell, request: pytest.FixtureRequest) -> None:
    bench_session = bench_run.start(cell)
    hardware = get_hardware(cell.hardware)
    reason = get_method(cell.method).supports(hardware, "embedding" if bench_session.cfg.embedding else "classification")
    if reason:
        bench_session.skipped.append({**cell.as_dict(), "reason": reason})
        lifecycle.record_skip(request.config, request.node.callspec.id, reason)
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
    rounds = timed_rounds(once, cell.batch_size)
    benchmark.group = cell.group
    # Already warm (the calls above): no warm-up round inside pedantic.
    with OtherLoad() as load:
        benchmark.pedantic(_synchronized(built, hardware.device), args=inputs, rounds=rounds, warmup_rounds=0,
                           iterations=1)
    if benchmark.stats is None:  # --benchmark-disable: the calls ran once, untimed
        return
    calls = list(benchmark.stats.stats.data)
    benchmark.extra_info.update({"timed_calls": len(calls), **percentiles(calls), "other_cores": load.cores})
    lifecycle.record_cell(request.config, benchmark)
    contended = contention_warning(load.cores)
    if contended:
        warnings.warn(f"{cell.label}: {contended}", stacklevel=1)


def timed_rounds(once: float, batch_size: int) -> int:
    """How many calls to time for a cell whose one call took ``once`` seconds."""
    once = max(once, 1e-6)
    wanted = round(TARGET_SECONDS / once)
    if batch_size == 1:
        wanted = max(wanted, min(P99_CALLS, int(TAIL_SECONDS / once)))
    return max(MIN_ROUNDS, min(MAX_ROUNDS, wanted))


def _synchronized(built, device: str):
    """CUDA calls return before the GPU finishes: wait for it inside the timed call."""
    if device != "cuda":
        return built

    def run(*inputs):
        out = built(*inputs)
        torch.cuda.synchronize()
        return out

    return run
