"""Peak memory in a fresh process (quant_impl/measure/memory.py): the child's own figure, whatever the parent holds."""

from __future__ import annotations

import numpy as np
import pytest

from quant_impl.config import RunConfig
from quant_impl.measure.memory import measure_in_fresh_process, own_peak_kib

PARENT_EXTRA_MB = 2500


@pytest.fixture(scope="module")
def smoke_cfg(tmp_path_factory: pytest.TempPathFactory) -> RunConfig:
    from quant_impl.train import get_baseline

    cfg = RunConfig.load("smoke", {"cache_dir": tmp_path_factory.mktemp("cache")})
    get_baseline(cfg)  # the child only loads a cached baseline
    return cfg


def test_child_peak_does_not_inherit_the_parents_size(smoke_cfg: RunConfig) -> None:
    """Linux carries ru_maxrss over fork and exec: a child of a 2.5 GB parent would report >= 2.5 GB. The
    figure must be the child's own: torch plus a tiny model is well under that."""
    before = measure_in_fresh_process(smoke_cfg, "fp32", "cpu", 2, 16)
    ballast = np.ones(PARENT_EXTRA_MB * 1_000_000 // 8)  # touched: resident in this (the parent) process
    assert own_peak_kib() * 1024 / 1e6 > PARENT_EXTRA_MB
    after = measure_in_fresh_process(smoke_cfg, "fp32", "cpu", 2, 16)
    del ballast
    assert 100 < after.peak_rss_mb < PARENT_EXTRA_MB
    assert after.peak_rss_mb == pytest.approx(before.peak_rss_mb, rel=0.15)
    # the sampled curve never exceeds the true high-water mark (up to the MiB rounding of the sampler)
    assert after.sampled_peak_mb is None or after.sampled_peak_mb <= after.peak_rss_mb * 1.02
