"""Peak memory in a fresh process (quant_impl/measure/memory.py): the child's own figure, whatever the parent holds."""

from __future__ import annotations

import numpy as np
import pytest

from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError
from quant_impl.measure.memory import measure_in_fresh_process, own_peak_kib

PARENT_EXTRA_MB = 2500


@pytest.fixture(scope="module")
def smoke_cfg(tmp_path_factory: pytest.TempPathFactory) -> RunConfig:
    from quant_impl.train import get_baseline

    cfg = RunConfig.load("smoke", {"cache_dir": tmp_path_factory.mktemp("cache")})
    get_baseline(cfg)  # the child only loads a cached baseline
    return cfg


def _fp32_once(cfg: RunConfig):
    return measure_in_fresh_process("quant_impl.session.memory_child:build_and_run_once", config=cfg.to_dict(),
                                    method="fp32", hardware="cpu", batch_size=2, seq_len=16)


def test_child_peak_does_not_inherit_the_parents_size(smoke_cfg: RunConfig) -> None:
    """Linux carries ru_maxrss over fork and exec: a child of a 2.5 GB parent would report >= 2.5 GB. The
    figure must be the child's own: torch plus a tiny model is well under that."""
    before = _fp32_once(smoke_cfg)
    ballast = np.ones(PARENT_EXTRA_MB * 1_000_000 // 8)  # touched: resident in this (the parent) process
    assert own_peak_kib() * 1024 / 1e6 > PARENT_EXTRA_MB
    after = _fp32_once(smoke_cfg)
    del ballast
    assert 100 < after.peak_rss_mb < PARENT_EXTRA_MB
    assert after.peak_rss_mb == pytest.approx(before.peak_rss_mb, rel=0.15)
    # the sampled curve never exceeds the true high-water mark (up to the MiB rounding of the sampler)
    assert after.sampled_peak_mb is None or after.sampled_peak_mb <= after.peak_rss_mb * 1.02


def test_the_child_imports_nothing_of_the_methods_itself() -> None:
    """The caller hands it the work: a call that needs no model measures an interpreter, and a bad call or a
    failing one is one line naming it."""
    import quant_impl.measure.memory as memory

    source = open(memory.__file__, encoding="utf-8").read()
    assert "quant_impl.methods" not in source and "quant_impl.train" not in source
    bare = measure_in_fresh_process("json:dumps", obj=[1, 2])
    assert 5 < bare.peak_rss_mb < 150  # an interpreter and memory-profiler, no torch
    with pytest.raises(QuantbenchError, match="json:nothing.*cannot import it"):
        measure_in_fresh_process("json:nothing")


def test_a_missing_baseline_is_one_line(tmp_path) -> None:
    cfg = RunConfig.load("smoke", {"cache_dir": tmp_path})
    with pytest.raises(QuantbenchError, match="no cached baseline at .*build it first"):
        _fp32_once(cfg)
