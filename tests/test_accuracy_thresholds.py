"""The CI gate: on the real quick-profile model, each method loses no more test accuracy than allowed.

Thresholds (points of accuracy vs FP32 on the same test reviews) come from pyproject.toml
[tool.quantbench.thresholds]. The quick baseline is cached, so this costs the methods' builds and one
evaluation each (fp16 is the slow one on a CPU without FP16 arithmetic).
"""

from __future__ import annotations

import pytest

from quant_impl.config import RunConfig
from quant_impl.hardware import get_hardware
from quant_impl.measure.accuracy import evaluate
from quant_impl.methods import apply, method_names
from quant_impl.train import get_baseline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_baseline():
    return get_baseline(RunConfig.load("quick"))


@pytest.fixture(scope="module")
def built(quick_baseline):
    cache: dict[str, object] = {}

    def build(name: str):
        if name not in cache:
            cache[name] = apply(name, quick_baseline, get_hardware("cpu"))
        return cache[name]

    return build


@pytest.mark.parametrize("name", [m for m in method_names() if m != "fp32"])
def test_accuracy_drop_within_threshold(name: str, quick_baseline, built) -> None:
    fp32 = quick_baseline.eval
    result = evaluate(built(name), quick_baseline.data["test"], quick_baseline.config.eval_batch_size, desc=name)
    drop = 100 * (fp32.accuracy - result.accuracy)
    limit = quick_baseline.config.threshold(name)
    assert drop <= limit, (
        f"{name}: accuracy {result.accuracy:.4f} vs FP32 {fp32.accuracy:.4f} on {result.examples} test reviews: "
        f"drop {drop:.2f} pt > threshold {limit:.2f} pt"
    )


@pytest.mark.parametrize("name", ["dynamic-int8", "static-int8", "qat-int8"])
def test_int8_size_on_the_real_model(name: str, built) -> None:
    ratio = built(name).size_bytes / built("fp32").size_bytes
    # Linear weights shrink 4x; the 47 MB FP32 word-embedding table stays FP32 (about 0.64x in all).
    assert ratio <= 0.66, f"{name}: {ratio:.3f} of FP32 bytes"


def test_half_precision_size_on_the_real_model(built) -> None:
    assert built("bf16").size_bytes <= 0.51 * built("fp32").size_bytes
