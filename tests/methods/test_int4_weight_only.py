"""``int4-weight-only``: real int4 packing, the per-group error bound, exact forward, sizes and the tiny model.

Float tolerance of the error bound: as in tests/test_qmath.py, quantization computes ``w * fl(1/s)`` in float32,
so ``|w - w'| <= s/2 + 2 eps32 max(|w|, |w'|)`` (eps32 = 2^-23), with ``s`` the *stored* float16 scale (the
method rounds qmath's float32 scale up to float16, so the bound holds for the scale that is shipped).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from quant_impl import qmath
from quant_impl.errors import QuantbenchError
from quant_impl.hardware import get_hardware
from quant_impl.measure.size import module_size
from quant_impl.methods import apply, get_method
from quant_impl.methods.embedding import Int8RowEmbedding
from quant_impl.methods.int4_weight_only import (
    Int4WeightOnlyConfig,
    Int4WeightOnlyLinear,
    linear_weight_bytes,
    linear_weight_ratio,
)

EPS32 = torch.finfo(torch.float32).eps
INT4_SPEC = qmath.QuantSpec(bits=4, signed=True, symmetric=True, axis=0)
# Logit SQNR vs FP32 on the tiny model: measured 33.2 dB (group 32, encoder + pooler int4, head FP32), 33.5 dB
# with the int8 embedding too; 25 dB leaves 8 dB of margin (int4 weights alone are ~20 dB SQNR per layer).
MIN_TINY_SQNR_DB = 25.0


def _linear(in_features: int, out_features: int, seed: int = 0, bias: bool = True) -> torch.nn.Linear:
    torch.manual_seed(seed)
    layer = torch.nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():  # BERT-like weights (std 0.02) with a few outliers and one all-zero group
        layer.weight.normal_(0.0, 0.02)
        layer.weight[0, 3] = 0.5
        layer.weight[-1, -1] = -0.3
        layer.weight[1, :32] = 0.0
    return layer


def _reference_weight(layer: Int4WeightOnlyLinear) -> torch.Tensor:
    """qmath's own unpack + dequantize of the stored bytes and scales, ``(out, in)``."""
    packed = qmath.PackedInt4(layer.weight_packed.flatten(), torch.Size((layer.out_features, layer.padded_in)), True)
    q = qmath.unpack_int4(packed).reshape(-1, layer.group_size)
    scale = layer.weight_scale.to(torch.float32)
    qp = qmath.QParams(scale, torch.zeros(scale.shape, dtype=torch.int32), INT4_SPEC)
    return qmath.dequantize(q, qp).reshape(layer.out_features, layer.padded_in)[:, : layer.in_features]


@pytest.mark.parametrize("shape", [(64, 48), (96, 5)])
def test_weights_are_really_packed_two_per_byte(shape) -> None:
    in_features, out_features = shape
    layer = Int4WeightOnlyLinear.from_linear(_linear(in_features, out_features), group_size=32)
    state = layer.state_dict()
    assert set(state) == {"weight_packed", "weight_scale", "bias"}
    assert state["weight_packed"].dtype == torch.uint8
    assert state["weight_packed"].numel() == math.ceil(out_features * in_features / 2)
    assert state["weight_scale"].dtype == torch.float16
    assert state["weight_scale"].numel() == out_features * in_features // 32
    assert state["bias"].dtype == torch.float32
    # the bytes are qmath.pack_int4 of qmath.quantize with the stored scales, and unpack back to the same values
    weight = _linear(in_features, out_features).weight.detach().reshape(-1, 32)
    scale = layer.weight_scale.to(torch.float32)
    q = qmath.quantize(weight, qmath.QParams(scale, torch.zeros(scale.shape, dtype=torch.int32), INT4_SPEC))
    assert torch.equal(layer.weight_packed.flatten(), qmath.pack_int4(q).data)
    assert torch.equal(layer.unpacked_weight(), q.reshape(out_features, in_features))


def test_unpadded_layer_without_bias() -> None:
    layer = Int4WeightOnlyLinear.from_linear(_linear(64, 8, bias=False), group_size=64)
    assert set(layer.state_dict()) == {"weight_packed", "weight_scale"}
    x = torch.randn(3, 64)
    assert torch.equal(layer(x), F.linear(x, _reference_weight(layer)))


@pytest.mark.parametrize(("in_features", "group_size"), [(64, 32), (64, 2), (96, 64), (40, 32)])
def test_reconstruction_error_is_at_most_half_a_step_per_group(in_features, group_size) -> None:
    fp32 = _linear(in_features, 24)
    layer = Int4WeightOnlyLinear.from_linear(fp32, group_size=group_size)
    padded = layer.padded_in
    assert padded % group_size == 0 and padded - in_features < group_size  # padded to whole groups (96/64 -> 128)
    weight = F.pad(fp32.weight.detach(), (0, padded - in_features)).double().reshape(-1, group_size)
    approx = layer.dequantized_weight()
    assert approx.shape == (24, in_features) and approx.dtype == torch.float32
    approx = F.pad(approx, (0, padded - in_features)).double().reshape(-1, group_size)
    step = layer.weight_scale.double().unsqueeze(1)
    bound = step / 2 + 2 * EPS32 * torch.maximum(weight.abs(), approx.abs())
    assert bool(((weight - approx).abs() <= bound).all())
    # the float16 scale is qmath's float32 scale rounded up, never down (and at most one float16 ulp up)
    qmath_scale = qmath.qparams_from_tensor(weight.float(), INT4_SPEC).scale.double()
    assert bool((step.squeeze(1) >= qmath_scale).all())
    assert bool((step.squeeze(1) <= qmath_scale * (1 + 2**-10) + 2**-24).all())
    if group_size <= 32:  # row 1 starts with 32 zeros: whole groups of zeros stay exactly zero
        assert not layer.dequantized_weight()[1, :32].any()


def test_forward_equals_linear_with_the_dequantized_weight_exactly() -> None:
    fp32 = _linear(40, 24)  # 40 inputs: padded to 64, so the slice path is covered too
    layer = Int4WeightOnlyLinear.from_linear(fp32, group_size=32)
    for x in (torch.randn(5, 40), torch.randn(2, 7, 40)):
        expected = F.linear(x, _reference_weight(layer), fp32.bias.detach())
        assert torch.equal(layer(x), expected)
        assert torch.equal(layer(x), expected)  # nothing cached: a second call dequantizes again, same bits
    assert set(dict(layer.named_buffers())) == {"weight_packed", "weight_scale", "bias"}
    assert not [name for name, value in vars(layer).items() if isinstance(value, torch.Tensor)]


@pytest.mark.parametrize(("group_size", "ratio"), [(32, 0.125 + 2 / (32 * 4)), (64, 0.125 + 2 / (64 * 4))])
def test_linear_weight_ratio_on_a_minilm_ffn_layer(group_size, ratio) -> None:
    layer = Int4WeightOnlyLinear.from_linear(torch.nn.Linear(384, 1536), group_size=group_size)
    quantized, fp32 = linear_weight_bytes(layer)
    assert fp32 == 384 * 1536 * 4 and quantized == 384 * 1536 // 2 + 384 * 1536 // group_size * 2
    assert linear_weight_ratio(layer) == ratio <= 0.15  # 0.140625 at group 32
    # what torch.save ships (FP32 bias and framing included) stays under 0.15x of the FP32 layer as well
    assert module_size(layer).bytes <= 0.15 * module_size(torch.nn.Linear(384, 1536)).bytes


def test_linear_weight_ratio_needs_int4_layers() -> None:
    with pytest.raises(ValueError, match="no Int4WeightOnlyLinear"):
        linear_weight_ratio(torch.nn.Linear(4, 4))


@pytest.mark.parametrize("group_size", [0, 1, 3, 33, -2, True, 32.0, "32"])
def test_config_rejects_bad_group_sizes(group_size) -> None:
    with pytest.raises(ValueError, match=r"Int4WeightOnlyConfig\.group_size must be an even integer >= 2"):
        Int4WeightOnlyConfig(group_size=group_size)


def test_config_rejects_a_non_bool_embedding_flag_and_accepts_good_values() -> None:
    with pytest.raises(ValueError, match="Int4WeightOnlyConfig.quantize_embedding"):
        Int4WeightOnlyConfig(quantize_embedding="yes")
    assert Int4WeightOnlyConfig(group_size=2).group_size == 2
    with pytest.raises(ValueError, match="group_size must be an even integer"):
        Int4WeightOnlyLinear.from_linear(torch.nn.Linear(8, 8), group_size=5)


def test_scales_too_large_for_float16_are_refused() -> None:
    layer = torch.nn.Linear(32, 2)
    with torch.no_grad():
        layer.weight.fill_(1e6)
    with pytest.raises(ValueError, match="overflows torch.float16"):
        Int4WeightOnlyLinear.from_linear(layer)
    assert Int4WeightOnlyLinear.from_linear(layer, scale_dtype=torch.float32).weight_scale.dtype == torch.float32


@pytest.fixture(scope="module")
def reference_int4(tiny_baseline):
    """The reference kernel (qmath's packing, FP32 activations): what CUDA runs and the property tests check."""
    return apply("int4-weight-only", tiny_baseline, get_hardware("cpu"), Int4WeightOnlyConfig(kernel="reference"))


def test_tiny_model_builds_with_int4_encoder_and_fp32_head(reference_int4, built_on_cpu, tiny_baseline,
                                                            tiny_batch) -> None:
    built = reference_int4
    with torch.inference_mode():
        reference = tiny_baseline.model(input_ids=tiny_batch[0], attention_mask=tiny_batch[1]).logits
    assert qmath.sqnr_db(reference, built(*tiny_batch)) >= MIN_TINY_SQNR_DB
    settings = built.settings
    assert settings["kernel"]["kind"] == "simulated" and "dequantized per call" in settings["kernel"]["name"]
    assert settings["scale_dtype"] == "float16"
    assert settings["group_size"] == 32
    assert settings["linear_weight_ratio"] == 0.140625
    assert settings["fp32_layers"] == ["classifier"] and settings["word_embeddings"] == "fp32"
    assert "bert.encoder.layer.*.intermediate.dense" in settings["quantized_layers"]
    model = built.module
    int4 = [m for m in model.modules() if isinstance(m, Int4WeightOnlyLinear)]
    assert len(int4) == settings["quantized_linear_count"] == 2 * 6 + 1  # 6 per encoder layer + the pooler
    assert [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)] == ["model.classifier"]
    # no FP32 Linear weight is shipped: the only float ".weight" tensors left are LayerNorm, embeddings, head
    floats = [k for k, v in model.state_dict().items() if k.endswith(".weight") and "LayerNorm" not in k]
    assert all("embeddings" in k or "classifier" in k for k in floats), floats
    assert built.size_bytes < built_on_cpu("fp32").size_bytes
    assert "cuda" in get_method("int4-weight-only").devices


def test_cpu_default_runs_torchao_tinygemm_int4(built_on_cpu, tiny_baseline, tiny_batch) -> None:
    """On CPU the default kernel is torchao's tinygemm: every encoder Linear holds an Int4OpaqueTensor (packed
    int4 and per-group scale/zero), activations bf16, the head unquantized; the logits stay close to FP32."""
    from torchao.prototype.quantization.int4.int4_opaque_tensor import Int4OpaqueTensor

    built = built_on_cpu("int4-weight-only")
    with torch.inference_mode():
        reference = tiny_baseline.model(input_ids=tiny_batch[0], attention_mask=tiny_batch[1]).logits
    logits = built(*tiny_batch)
    assert logits.dtype == torch.float32 and qmath.sqnr_db(reference, logits) >= MIN_TINY_SQNR_DB
    settings = built.settings
    assert settings["kernel"]["kind"] == "native" and "tinygemm" in settings["kernel"]["name"]
    assert settings["activations"] == "bf16"
    assert settings["group_size"] == 32  # the tiny model's width 32: 64 does not divide it
    linears = {n: m for n, m in built.module.named_modules() if isinstance(m, torch.nn.Linear)}
    int4 = [n for n, m in linears.items() if isinstance(m.weight, Int4OpaqueTensor)]
    assert len(int4) == settings["quantized_linear_count"] == 2 * 6 + 1
    assert [n for n in linears if n not in int4] == ["model.classifier"] and settings["bf16_layers"] == ["classifier"]
    # int4 values (0.5 byte) + a bf16 scale and zero point per 32 weights (0.125 byte): 0.625 / 4 bytes
    assert settings["linear_weight_ratio"] == pytest.approx(0.15625)
    assert built.size_bytes < 0.6 * built_on_cpu("fp32").size_bytes
    assert built(tiny_batch[0][:1], tiny_batch[1][:1]).shape == (1, 2)


def test_kernel_and_group_choices_are_checked(tiny_baseline) -> None:
    with pytest.raises(ValueError, match="kernel must be one of"):
        Int4WeightOnlyConfig(kernel="marlin")
    with pytest.raises(ValueError, match="for the tinygemm kernel"):
        Int4WeightOnlyConfig(kernel="tinygemm", group_size=16)
    with pytest.raises(QuantbenchError, match="does not divide"):
        apply("int4-weight-only", tiny_baseline, get_hardware("cpu"), Int4WeightOnlyConfig(kernel="tinygemm",
                                                                                         group_size=64))
    with pytest.raises(QuantbenchError, match="CPU only"):
        get_method("int4-weight-only").transform(tiny_baseline, get_hardware("cuda"),
                                                 Int4WeightOnlyConfig(kernel="tinygemm"))
    # the shared baseline is untouched
    assert isinstance(tiny_baseline.model.bert.encoder.layer[0].intermediate.dense, torch.nn.Linear)


def test_int4_with_the_int8_embedding(tiny_baseline, tiny_batch, built_on_cpu, reference_int4) -> None:
    built = apply("int4-weight-only", tiny_baseline, get_hardware("cpu"), Int4WeightOnlyConfig(quantize_embedding=True))
    with torch.inference_mode():
        reference = tiny_baseline.model(input_ids=tiny_batch[0], attention_mask=tiny_batch[1]).logits
    assert qmath.sqnr_db(reference, built(*tiny_batch)) >= MIN_TINY_SQNR_DB
    assert isinstance(built.module.model.get_input_embeddings(), Int8RowEmbedding)
    info = built.settings["word_embeddings"]
    assert info["scheme"] == "int8 per-row symmetric" and info["bytes_ratio"] < 0.3
    # the tiny model is mostly word embeddings (30522 x 32): int8 rows take it well below the int4-only size
    assert built.size_bytes < 0.35 * built_on_cpu("fp32").size_bytes < reference_int4.size_bytes


def test_int4_model_exports(reference_int4, tiny_batch) -> None:
    """Plain torch ops (shifts, casts, F.linear): torch.export traces the unpack into the graph."""
    module = reference_int4.module
    exported = torch.export.export(module, tiny_batch)
    with torch.inference_mode():
        assert torch.allclose(exported.module()(*tiny_batch), module(*tiny_batch), rtol=0, atol=1e-6)
    assert any(v.dtype == torch.uint8 for v in exported.state_dict.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_cuda() -> None:
    layer = Int4WeightOnlyLinear.from_linear(_linear(64, 24), group_size=32)
    x = torch.randn(4, 64)
    on_gpu = Int4WeightOnlyLinear.from_linear(_linear(64, 24).cuda(), group_size=32)
    assert torch.equal(on_gpu.weight_packed.cpu(), layer.weight_packed)
    assert torch.equal(on_gpu.dequantized_weight().cpu(), layer.dequantized_weight())
    torch.testing.assert_close(on_gpu(x.cuda()).cpu(), layer(x), rtol=1e-4, atol=1e-5)
