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
    assert sqnr(fp32_logits, logits) >= get_method(name).sqnr_bar(built.settings)
    assert built.method == name and built.hardware == "cpu" and built.size_bytes > 0 and built.size_note
    json.dumps(built.settings)  # settings go into benchmark JSON
    assert built.settings["config"]["_type"] == get_method(name).config_cls.__name__
    # batch size 1 works too (the benchmarks use it)
    assert built(tiny_batch[0][:1], tiny_batch[1][:1]).shape == (1, 2)


# Bytes one stored element takes at each precision a method registers.
_ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
# Torch methods of one precision throughout, so what they store follows from the registration alone. Mixed and
# int4 choose per layer (and int4 keeps a bf16 model); peer engines choose their own ops: their files check those.
# Weight-only methods (a scale per group, not per row; embeddings kept) check their own bytes.
_UNIFORM = [n for n in method_names() if get_method(n).engine == "torch" and get_method(n).precision in _ELEMENT_BYTES
            and get_method(n).weight_bits is None]


@pytest.mark.parametrize("name", _UNIFORM)
def test_size_is_the_fp32_bytes_at_the_registered_precision(name, built_on_cpu, tiny_baseline) -> None:
    """fp16/bf16 store every tensor in 2 bytes; int8 methods store every Linear weight, and the word-embedding table
    where their config quantizes it, in 1 byte plus a float32 scale per row (output channel), the rest as FP32."""
    spec = get_method(name)
    reason = spec.supports(get_hardware("cpu"))
    if reason:
        pytest.skip(reason)
    model = tiny_baseline.model
    fp32 = built_on_cpu("fp32").size_bytes
    if name == "fp32":  # the reference itself: 4 bytes a parameter, plus torch.save's framing (0.4 % here)
        assert fp32 == pytest.approx(4 * sum(p.numel() for p in model.state_dict().values()), rel=0.01)
        return
    width = _ELEMENT_BYTES[spec.precision]
    if spec.precision == "int8":
        quantized = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
        if getattr(spec.config_cls(), "quantize_embedding", False):
            quantized.append(model.get_input_embeddings().weight)
        saved = sum((4 - width) * t.numel() - 4 * t.shape[0] for t in quantized)
    else:
        saved = sum((4 - width) * t.numel() for t in model.state_dict().values() if t.is_floating_point())
    # 3 %: torch.save's framing of the scale and zero-point tensors an int8 graph adds (1.5 % on this model), far
    # below what a table left in FP32 (3x) or int8 values stored in 2 bytes (1.8x) would add.
    assert built_on_cpu(name).size_bytes == pytest.approx(fp32 - saved, rel=0.03)


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


def test_a_compiled_method_called_in_inference_mode_reuses_its_graph(built_on_cpu, tiny_batch) -> None:
    """evaluate() runs under torch.inference_mode, whose tensors fail Dynamo's dispatch-key guard: without the copy
    in compiled_predictor every compiled method was compiled twice (12-15 s more per int8 method on the real model)."""
    from torch._dynamo.utils import counters

    built = built_on_cpu("fp32-compiled")
    plain = built(*tiny_batch)
    before = counters["stats"]["unique_graphs"]
    with torch.inference_mode():
        inside = built(*tiny_batch)
        sliced = built(tiny_batch[0][:3], tiny_batch[1][:3])  # made in inference mode: inference tensors
    assert counters["stats"]["unique_graphs"] == before
    assert torch.equal(inside, plain) and sliced.shape == (3, 2)
