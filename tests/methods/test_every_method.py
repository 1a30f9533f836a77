"""Every registered method on the tiny model: builds, runs, stays close to FP32, declares its hardware."""

from __future__ import annotations

import json

import pytest
import torch

from quant_impl.errors import QuantbenchError
from quant_impl.hardware import get_hardware
from quant_impl.methods import apply, get_method, method_names
from quant_impl.qmath import sqnr_db as sqnr



@pytest.fixture(scope="module")
def fp32_logits(tiny_baseline, tiny_batch):
    with torch.inference_mode():
        return tiny_baseline.model(input_ids=tiny_batch[0], attention_mask=tiny_batch[1]).logits


def test_every_method_carries_its_rules() -> None:
    """The registration is the one place for a method's threshold, test bound, section and precision."""
    for name in method_names():
        spec = get_method(name)
        assert spec.min_sqnr_db > 0 and spec.section and spec.precision, name
        assert (spec.threshold is None) == (name == "fp32"), f"{name}: only the FP32 reference has no threshold"
        json.dumps(spec.metadata())


@pytest.mark.parametrize("name", method_names())
def test_method_builds_runs_and_stays_close(name, built_on_cpu, tiny_batch, fp32_logits) -> None:
    reason = get_method(name).supports(get_hardware("cpu"))
    if reason:
        pytest.skip(reason)
    built = built_on_cpu(name)
    logits = built(*tiny_batch).float()
    assert logits.shape == fp32_logits.shape
    assert sqnr(fp32_logits, logits) >= get_method(name).min_sqnr_db
    assert built.method == name and built.hardware == "cpu" and built.size_bytes > 0 and built.size_note
    json.dumps(built.settings)  # settings go into benchmark JSON
    assert built.settings["config"]["_type"] == get_method(name).config_cls.__name__
    # batch size 1 works too (the benchmarks use it)
    assert built(tiny_batch[0][:1], tiny_batch[1][:1]).shape == (1, 2)


def test_sizes_shrink_where_they_must(built_on_cpu) -> None:
    sizes = {name: built_on_cpu(name).size_bytes for name in ("fp32", "bf16", "fp16", "dynamic-int8")}
    assert sizes["bf16"] <= 0.51 * sizes["fp32"] and sizes["fp16"] <= 0.51 * sizes["fp32"]
    # The tiny model is mostly embedding table (kept FP32 by int8 Linear methods), so only a shrink is due here;
    # the ratio bounds are checked on the real model in test_accuracy_thresholds.py.
    assert sizes["dynamic-int8"] < sizes["fp32"]


@pytest.mark.parametrize("name", method_names())
def test_cuda_support_is_declared_with_a_reason(name) -> None:
    reason = get_method(name).supports(get_hardware("cuda"))
    if get_method(name).missing_packages():
        assert reason and get_method(name).extra in reason
    elif torch.cuda.is_available() and "cuda" in get_method(name).devices:
        assert reason is None
    else:
        assert reason and ("cuda" in reason.lower() or "gpu" in reason.lower())


def test_unsupported_hardware_is_refused_with_the_reason(tiny_baseline) -> None:
    with pytest.raises(QuantbenchError, match="static-int8 does not run on cuda: X86InductorQuantizer"):
        apply("static-int8", tiny_baseline, get_hardware("cuda"))


def test_unknown_method_lists_close_matches() -> None:
    with pytest.raises(QuantbenchError, match="'static-int' is not registered. Did you mean static-int8"):
        get_method("static-int")


def test_methods_do_not_modify_the_baseline(tiny_baseline, built_on_cpu, tiny_batch, fp32_logits) -> None:
    for name in ("bf16", "dynamic-int8"):
        built_on_cpu(name)
    with torch.inference_mode():
        again = tiny_baseline.model(input_ids=tiny_batch[0], attention_mask=tiny_batch[1]).logits
    assert torch.equal(again, fp32_logits)


def test_a_compiled_method_serves_every_batch_size_with_one_graph(built_on_cpu, tiny_batch) -> None:
    """Batch 1 is not compiled again (backed_size_oblivious): a benchmark's compile time is paid once per thread
    count, not once per batch size."""
    from torch._dynamo.utils import counters

    built = built_on_cpu("fp32-compiled")  # compiled at build time on a batch of 2
    before = counters["stats"]["unique_graphs"]
    for size in (1, 5, len(tiny_batch[0])):
        assert built(tiny_batch[0][:size], tiny_batch[1][:size]).shape == (size, 2)
    assert counters["stats"]["unique_graphs"] == before
