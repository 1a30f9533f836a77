from __future__ import annotations

import pytest

from quant_impl.config import RunConfig
from quant_impl.train import get_baseline


@pytest.fixture(scope="session")
def tiny_baseline(tmp_path_factory: pytest.TempPathFactory):
    """The smoke-profile baseline (tiny random BERT briefly fine-tuned on real reviews), built once."""
    return get_baseline(RunConfig.load("smoke", {"cache_dir": tmp_path_factory.mktemp("cache")}))


@pytest.fixture(scope="session")
def tiny_batch(tiny_baseline):
    rows = tiny_baseline.data["test"][:8]
    return rows["input_ids"], rows["attention_mask"]


@pytest.fixture(scope="session")
def built_on_cpu(tiny_baseline):
    """``built_on_cpu(name)``: each method built once per session on the tiny baseline (compiles are slow)."""
    from quant_impl.hardware import get_hardware
    from quant_impl.methods import apply

    cache: dict[str, object] = {}

    def build(name: str):
        if name not in cache:
            cache[name] = apply(name, tiny_baseline, get_hardware("cpu"))
        return cache[name]

    return build
