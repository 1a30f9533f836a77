from __future__ import annotations

import pytest

from quant_impl.config import RunConfig
from quant_impl.hardware import get_hardware
from quant_impl.session.store import BenchSession


@pytest.fixture(scope="session")
def tiny_session(tmp_path_factory: pytest.TempPathFactory) -> BenchSession:
    """Shared builds on the smoke-profile baseline (tiny random BERT briefly fine-tuned on real reviews)."""
    return BenchSession(RunConfig.load("smoke", {"cache_dir": tmp_path_factory.mktemp("cache")}))


@pytest.fixture(scope="session")
def tiny_baseline(tiny_session: BenchSession):
    return tiny_session.baseline


@pytest.fixture(scope="session")
def tiny_batch(tiny_baseline):
    rows = tiny_baseline.data["test"][:8]
    return rows["input_ids"], rows["attention_mask"]


@pytest.fixture(scope="session")
def built_on_cpu(tiny_session: BenchSession):
    """``built_on_cpu(name)``: each method built once per session on the tiny baseline (compiles are slow)."""
    return lambda name: tiny_session.built(name, get_hardware("cpu"))
