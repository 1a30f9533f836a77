from __future__ import annotations

from pathlib import Path

import pytest

from quant_impl.config import RunConfig


@pytest.fixture(scope="session", autouse=True)
def one_kernel_build(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every private cache of this session, child runs included, shares one build of the fused-bf16 attention kernel:
    it depends on the machine and torch only, and compiling it again for each fresh cache cost ~30 s a child run."""
    import os

    from quant_impl.methods.fused_attention import KERNEL_CACHE_ENV

    if not os.environ.get(KERNEL_CACHE_ENV):
        os.environ[KERNEL_CACHE_ENV] = str(tmp_path_factory.mktemp("kernels"))


@pytest.fixture
def smoke_cfg(tmp_path: Path) -> RunConfig:
    """The smoke profile (tiny model, a few dozen real reviews) with a private cache."""
    return RunConfig.load("smoke", {"cache_dir": tmp_path / "cache"})


# Hypothesis profiles for the property tests: HYPOTHESIS_PROFILE=ci (the default; 200 derandomized examples per
# property, reproducible) or HYPOTHESIS_PROFILE=deep (5000 fresh random examples per property, a local soak).
def _load_hypothesis_profiles() -> None:
    import os

    from hypothesis import settings

    settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, database=None)
    settings.register_profile("deep", max_examples=5000, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_load_hypothesis_profiles()
