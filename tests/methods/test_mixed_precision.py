"""Mixed precision on the tiny model: per-layer sensitivity, the seed preset, the selection loop, the engines."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from quant_impl.errors import QuantbenchError
from quant_impl.hardware import get_hardware
from quant_impl.measure.size import module_size
from quant_impl.methods import apply, get_method
from quant_impl.methods._common import LogitsModel, calibration_batches, fp32_copy
from quant_impl.methods.mixed import (
    HalfLinear,
    Int8WeightOnlyLinear,
    MixedPrecisionConfig,
    build_mixed,
    dynamic_int8_linear,
    seed_layer_map,
)
from quant_impl.methods.sensitivity import encoder_linears, fake_quantized_weight, layer_sensitivity, swapped
from quant_impl.qmath import sqnr_db

CPU = get_hardware("cpu")
# The tiny model: 2 BERT layers x (query, key, value, attention output, intermediate, output); pooler and head apart.
TINY_ENCODER_LINEARS = 12
HEAD = ("bert.pooler.dense", "classifier")


@pytest.fixture(scope="module")
def reference(tiny_baseline):
    return fp32_copy(tiny_baseline)


@pytest.fixture(scope="module")
def feed(tiny_baseline):
    return list(calibration_batches(tiny_baseline, batch_size=8, limit=2))


@pytest.fixture(scope="module")
def build(tiny_baseline):
    """``build(**config_fields)``: mixed-int8-bf16 on CPU with that config, built once per module."""
    cache: dict[tuple, object] = {}

    def get(**fields):
        key = tuple(sorted(fields.items()))
        if key not in cache:
            cache[key] = apply("mixed-int8-bf16", tiny_baseline, CPU, MixedPrecisionConfig(**fields))
        return cache[key]

    return get


def _logits(model: torch.nn.Module, batch) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=batch[0], attention_mask=batch[1]).logits


def _role(name: str) -> str:
    return "attention" if ".attention." in name else "ffn"


# ------------------------------------------------------------------------------------------------ sensitivity


def test_candidates_are_the_encoder_linears(reference) -> None:
    names = encoder_linears(reference)
    assert len(names) == TINY_ENCODER_LINEARS and not set(HEAD) & set(names)
    assert all(name.startswith("bert.encoder.layer.") for name in names)


@pytest.mark.parametrize("quantize_one", [dynamic_int8_linear, fake_quantized_weight], ids=["dynamic", "weight-only"])
def test_sensitivity_ranks_every_encoder_linear_once(reference, feed, tiny_batch, quantize_one) -> None:
    before = _logits(reference, tiny_batch)
    ranked = layer_sensitivity(reference, feed, quantize_one, progress=False)
    assert sorted(s.name for s in ranked) == sorted(encoder_linears(reference))
    sqnrs = [s.sqnr_db for s in ranked]
    assert all(math.isfinite(x) for x in sqnrs) and sqnrs == sorted(sqnrs)  # most sensitive (lowest) first
    assert all(0.0 <= s.agreement <= 1.0 and s.examples == 16 for s in ranked)
    json.dumps([s.to_dict() for s in ranked], allow_nan=False)
    # every layer was put back: same module types, same logits
    assert all(type(reference.get_submodule(n)) is torch.nn.Linear for n in encoder_linears(reference))
    assert torch.equal(_logits(reference, tiny_batch), before)


def test_quantizing_one_layer_changes_only_that_layer(reference, tiny_batch) -> None:
    names = encoder_linears(reference)
    name, original = names[4], reference.get_submodule(names[4])
    state = {key: value.clone() for key, value in reference.state_dict().items()}
    fp32 = _logits(reference, tiny_batch)
    with swapped(reference, name, dynamic_int8_linear(original)) as model:
        assert [n for n in names if type(model.get_submodule(n)) is not torch.nn.Linear] == [name]
        assert isinstance(model.get_submodule(name), DynamicQuantizedLinear)
        inside = model.state_dict()
        assert all(torch.equal(inside[key], state[key]) for key in state if not key.startswith(f"{name}."))
        assert not torch.equal(_logits(model, tiny_batch), fp32)
    assert reference.get_submodule(name) is original
    assert all(torch.equal(value, state[key]) for key, value in reference.state_dict().items())


def test_fake_quantized_weight_lies_on_the_per_channel_int8_grid() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    weight = linear.weight.detach().clone()
    fake = fake_quantized_weight(linear)
    assert torch.equal(linear.weight, weight)  # the original is untouched
    scale = weight.abs().amax(dim=1, keepdim=True) / 127.5  # torch/torchao's symmetric int8 scale
    steps = fake.weight.detach() / scale
    assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= 128
    assert (fake.weight - weight).abs().max() <= scale.max() / 2 + 1e-6


# ------------------------------------------------------------------------------------------------ layer modules


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_linear_is_f_linear_in_half_precision(dtype) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    x = torch.randn(3, 5, 16)
    half = HalfLinear.from_linear(linear, dtype)
    expected = F.linear(x.to(dtype), linear.weight.to(dtype), linear.bias.to(dtype)).float()
    out = half(x)
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    assert half.weight.dtype == dtype and linear.weight.dtype == torch.float32
    assert all(t.dtype == dtype for t in half.state_dict().values())


def test_int8_weight_only_linear_matches_its_fake_quantized_proxy() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    q = Int8WeightOnlyLinear.from_linear(linear, torch.float32)
    assert q.weight_int8.dtype == torch.int8
    assert torch.allclose(q(x), fake_quantized_weight(linear)(x), atol=1e-5)
    fp16 = Int8WeightOnlyLinear.from_linear(linear, torch.float16)
    assert fp16(x).dtype == torch.float32 and sqnr_db(linear(x), fp16(x)) > 30


# ------------------------------------------------------------------------------------------------ presets and selection


def test_seed_preset_puts_ffn_int8_and_attention_in_bf16(build, tiny_baseline, tiny_batch) -> None:
    built = build(preset="seed")
    model = built.module.model
    names = encoder_linears(tiny_baseline.model)
    for name in names:
        module = model.get_submodule(name)
        if _role(name) == "ffn":
            assert isinstance(module, DynamicQuantizedLinear), name
        else:
            assert isinstance(module, HalfLinear) and module.weight.dtype == torch.bfloat16, name
    assert all(type(model.get_submodule(name)) is torch.nn.Linear for name in HEAD)
    expected = {name: ("int8" if _role(name) == "ffn" else "bf16") for name in names} | dict.fromkeys(HEAD, "fp32")
    assert built.settings["layer_map"] == expected
    assert built.settings["layer_counts"] == {"int8": 4, "bf16": 8, "fp32": 2}
    assert "sensitivity" not in built.settings and "selection" not in built.settings
    assert sqnr_db(_logits(tiny_baseline.model, tiny_batch), built(*tiny_batch)) >= 20.0
    assert built.size_bytes < module_size(LogitsModel(fp32_copy(tiny_baseline))).bytes


def test_huge_budget_keeps_every_encoder_linear_int8(build, tiny_baseline) -> None:
    built = build(accuracy_budget_pts=1000.0)
    selection = built.settings["selection"]
    assert selection["half_layers"] == [] and selection["budget_met"] and len(selection["steps"]) == 1
    assert built.settings["layer_counts"] == {"int8": TINY_ENCODER_LINEARS, "bf16": 0, "fp32": 2}
    model = built.module.model
    names = encoder_linears(tiny_baseline.model)
    assert all(isinstance(model.get_submodule(n), DynamicQuantizedLinear) for n in names)


def test_unmeetable_budget_moves_the_most_sensitive_layers_until_the_cap(build) -> None:
    built = build(accuracy_budget_pts=-1.0, max_half_layers=3)
    selection, ranking = built.settings["selection"], built.settings["sensitivity"]["layers"]
    assert selection["half_layers"] == [layer["name"] for layer in ranking[:3]]
    assert not selection["budget_met"] and selection["max_half_layers"] == 3
    assert [step["half_layers"] for step in selection["steps"]] == [0, 1, 2, 3]
    model = built.module.model
    for name, kind in built.settings["layer_map"].items():
        module = model.get_submodule(name)
        expected = {"bf16": HalfLinear, "int8": DynamicQuantizedLinear, "fp32": torch.nn.Linear}[kind]
        assert type(module) is expected, name
        assert (kind == "bf16") == (name in selection["half_layers"])


def test_a_second_build_reuses_the_cached_selection(build, tiny_baseline, tiny_batch) -> None:
    """The analysis and the selection are cached by checkpoint, config and code: the second build reads them
    back (same layer map, same logits) and says so; another config is its own entry."""
    config = MixedPrecisionConfig(accuracy_budget_pts=-1.0, max_half_layers=2)
    first = apply("mixed-int8-bf16", tiny_baseline, CPU, config)
    second = apply("mixed-int8-bf16", tiny_baseline, CPU, config)
    assert second.settings["selection"]["cached"] is True
    assert second.settings["layer_map"] == first.settings["layer_map"]
    assert second.settings["sensitivity"] == first.settings["sensitivity"]
    with torch.inference_mode():
        assert torch.equal(first(*tiny_batch), second(*tiny_batch))
    other = apply("mixed-int8-bf16", tiny_baseline, CPU, MixedPrecisionConfig(accuracy_budget_pts=-1.0, max_half_layers=1))
    assert other.settings["selection"]["cached"] is False and len(other.settings["selection"]["half_layers"]) == 1
    entries = list((tiny_baseline.config.cache_dir / "mixed").glob("*.json"))
    assert len(entries) >= 2


def test_without_a_cap_every_encoder_linear_can_go_back_to_half(build) -> None:
    built = build(accuracy_budget_pts=-1.0)
    assert len(built.settings["selection"]["half_layers"]) == TINY_ENCODER_LINEARS
    assert built.settings["layer_counts"] == {"int8": 0, "bf16": TINY_ENCODER_LINEARS, "fp32": 2}


def test_default_choice_is_recorded_as_strict_json(build, tiny_baseline, tiny_batch) -> None:
    built = build()
    settings = json.loads(json.dumps(built.settings, allow_nan=False))
    selection = settings["selection"]
    assert selection["budget_pts"] == pytest.approx(0.5 * tiny_baseline.config.threshold("mixed-int8-bf16"))
    assert "thresholds['mixed-int8-bf16']" in selection["budget_source"]
    assert selection["split"] == "calibration" and selection["examples"] == len(tiny_baseline.data["calibration"])
    assert selection["steps"][-1]["drop_pts"] <= selection["budget_pts"] or not selection["budget_met"]
    linears = {n for n, m in tiny_baseline.model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(settings["layer_map"]) == linears
    assert settings["sensitivity"]["examples"] == 16 and len(settings["sensitivity"]["layers"]) == TINY_ENCODER_LINEARS
    assert "no compile" in settings["engine"] and settings["half_dtype"] == "bfloat16"
    assert settings["config"]["_type"] == "MixedPrecisionConfig"
    assert sqnr_db(_logits(tiny_baseline.model, tiny_batch), built(*tiny_batch)) >= 20.0


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "field, value",
    [
        ("preset", "fast"),
        ("calibration_batches", 0),
        ("calibration_batch_size", True),
        ("accuracy_budget_pts", float("nan")),
        ("accuracy_budget_pts", "0.7"),
        ("threshold_share", 0.0),
        ("threshold_share", 1.5),
        ("max_half_layers", -1),
        ("max_half_layers", 2.5),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value) -> None:
    with pytest.raises(ValueError, match=f"MixedPrecisionConfig.{field} must be"):
        MixedPrecisionConfig(**{field: value})


def test_config_names_the_allowed_presets() -> None:
    with pytest.raises(ValueError, match=r"one of \('sensitivity', 'seed'\), got 'fast'"):
        MixedPrecisionConfig(preset="fast")


# ------------------------------------------------------------------------------------------------ CUDA


def test_cuda_variant_is_declared_with_reasons(tiny_baseline) -> None:
    fp16, bf16 = get_method("mixed-int8-fp16"), get_method("mixed-int8-bf16")
    assert fp16.devices == ("cuda",) and bf16.devices == ("cpu",)
    assert "mixed-int8-bf16 is the CPU method" in fp16.supports(CPU)
    assert "CPU kernels only" in bf16.supports(get_hardware("cuda"))
    with pytest.raises(QuantbenchError, match="mixed-int8-fp16 does not run on cpu"):
        apply("mixed-int8-fp16", tiny_baseline, CPU)


def test_cuda_engine_layers_run_on_cpu_too(reference, tiny_batch) -> None:
    """The CUDA engine is plain torch ops: its layer modules are checked here without a GPU."""
    model = build_mixed(reference, seed_layer_map(reference, "fp16"), "mixed-int8-fp16")
    for name in encoder_linears(reference):
        module = model.get_submodule(name)
        if _role(name) == "ffn":
            assert type(module) is Int8WeightOnlyLinear and module.weight_int8.dtype == torch.int8, name
            assert module.scale.dtype == torch.float16
        else:
            assert type(module) is HalfLinear and module.weight.dtype == torch.float16, name
    assert sqnr_db(_logits(reference, tiny_batch), _logits(model, tiny_batch)) >= 20.0
    with pytest.raises(ValueError, match="layer maps take"):
        build_mixed(reference, seed_layer_map(reference, "bf16"), "mixed-int8-fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_mixed_int8_fp16_on_cuda(tiny_baseline, tiny_batch) -> None:
    built = apply("mixed-int8-fp16", tiny_baseline, get_hardware("cuda"), MixedPrecisionConfig(max_half_layers=2))
    logits = built(*tiny_batch).float().cpu()
    assert sqnr_db(_logits(tiny_baseline.model, tiny_batch), logits) >= 20.0
    assert built.settings["half_dtype"] == "float16"
