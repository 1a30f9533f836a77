"""``int4-weight-only``: Linear weights in 4 bits per group of input features, dequantized on the fly.

Every ``nn.Linear`` of the base model (the encoder's attention and FFN projections and the pooler) becomes an
:class:`Int4WeightOnlyLinear`; the 2-way classifier head stays FP32 (768 weights on MiniLM: nothing to gain,
and it is the layer every logit goes through). Weights are symmetric signed int4 (``[-8, 7]``, zero point 0,
scale ``amax / 7.5`` as torch/torchao) with one scale per ``group_size`` consecutive input features of a row,
packed two per byte by ``qmath.pack_int4``; scales are stored as float16 (rounded up from qmath's float32
scale, so the ``|w - w'| <= s/2`` bound holds for the stored scale). Symmetric rather than affine: BERT weight
groups are centred on zero, and a zero point would add storage and a subtraction for little gain.

Two kernels (``Int4WeightOnlyConfig.kernel``):

- ``tinygemm`` (``auto`` on CPU): torchao's ``PrototypeInt4WeightOnlyConfig`` (``Int4OpaqueTensor``, the
  tinygemm CPU int4 kernel, which takes bf16 activations) on a bf16 copy, compiled by Inductor without freezing
  (freezing may fold a dequantized weight back into the graph as a dense constant). Its weights are torchao's
  asymmetric per-group int4 with a bf16 scale and zero point per group; the size is those tensors. Measured on
  the quick checkpoint (one process, interleaved): 12.6 ms at batch 1 vs 20.8 for FP32 eager and 24.7 for the
  reference kernel; batch 32 about FP32's time. Group 64 keeps the Linear weights within 0.15x of FP32 (group
  32's bf16 scale+zero pairs make 0.156x).
- ``reference`` (``auto`` elsewhere, e.g. CUDA): :class:`Int4WeightOnlyLinear`, qmath's packing, FP32
  activations; the forward unpacks and dequantizes the whole weight on every call and runs ``F.linear``.
  Honest reference speed, slower than FP32; plain torch ops, so it runs on CUDA as well. Its packing is the one
  the property tests check.

An ``in_features`` that ``group_size`` does not divide is zero-padded up to a whole number of groups (the pad
is stored, quantizes to 0 and is sliced off after dequantization); ``linear_weight_ratio`` counts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from quant_impl import qmath
from quant_impl.hardware import Hardware
from quant_impl.measure.size import module_size
from quant_impl.errors import QuantbenchError
from quant_impl.methods._common import LogitsModel, compiled_predictor, eager_predictor, example_inputs, fp32_copy
from quant_impl.methods.embedding import word_embeddings
from quant_impl.methods.options import check_bool, check_choice
from quant_impl.methods.kernels import Kernel
from quant_impl.methods.registry import QuantizedModel, register_method

SCALE_DTYPE = torch.float16
KERNELS = ("auto", "tinygemm", "reference")
TINYGEMM_GROUPS = (32, 64, 128, 256)  # the group sizes torchao's Int4OpaqueTensor accepts


@dataclass(frozen=True)
class Int4WeightOnlyConfig:
    # None: 64 for tinygemm (within 0.15x of the FP32 Linear bytes), 32 for the reference kernel
    group_size: int | None = None
    quantize_embedding: bool = False
    kernel: str = "auto"  # tinygemm on CPU, reference elsewhere (see the module docstring)
    version: int = 2

    def __post_init__(self) -> None:
        check_choice(self, "kernel", KERNELS)
        if self.group_size is not None:
            _check_group_size(self.group_size, "Int4WeightOnlyConfig.group_size")
        if self.kernel == "tinygemm":
            check_choice(self, "group_size", (None, *TINYGEMM_GROUPS), " for the tinygemm kernel")
        check_bool(self, "quantize_embedding")


def _check_group_size(group_size: Any, what: str) -> None:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2 or group_size % 2:
        raise ValueError(
            f"{what} must be an even integer >= 2 (two 4-bit values share a byte), got {group_size!r}"
        )


class Int4WeightOnlyLinear(torch.nn.Module):
    """A Linear whose weight is packed int4 with one scale per group of ``group_size`` input features.

    State: ``weight_packed`` (uint8, ``(out_features, padded_in // 2)``: row-major int4 values, element ``2i``
    in the low nibble, as ``qmath.pack_int4``), ``weight_scale`` (``(out_features * padded_in // group_size,)``,
    float16 by default) and ``bias`` (FP32, absent when the Linear had none). Nothing else is kept.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        group_size: int,
        weight_packed: torch.Tensor,
        weight_scale: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> None:
        super().__init__()
        _check_group_size(group_size, "group_size")
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.padded_in = -(-in_features // group_size) * group_size
        if weight_packed.dtype != torch.uint8 or tuple(weight_packed.shape) != (out_features, self.padded_in // 2):
            raise ValueError(
                f"weight_packed must be uint8 of shape {(out_features, self.padded_in // 2)}, got "
                f"{weight_packed.dtype} {tuple(weight_packed.shape)}"
            )
        if tuple(weight_scale.shape) != (out_features * self.padded_in // group_size,):
            raise ValueError(f"weight_scale needs one scale per group, got shape {tuple(weight_scale.shape)}")
        self.register_buffer("weight_packed", weight_packed)
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(
        cls, linear: torch.nn.Linear, group_size: int = 32, scale_dtype: torch.dtype = SCALE_DTYPE
    ) -> Int4WeightOnlyLinear:
        """Quantize ``linear.weight`` per group with ``quant_impl.qmath`` and pack it; the bias stays FP32."""
        _check_group_size(group_size, "group_size")
        weight = linear.weight.detach().to("cpu", torch.float32)
        out_features, in_features = weight.shape
        pad = -in_features % group_size
        groups = F.pad(weight, (0, pad)).reshape(-1, group_size)
        qp = group_qparams(groups, scale_dtype)
        q = qmath.quantize(groups, qp)
        packed = qmath.pack_int4(q, signed=True).data.reshape(out_features, -1)
        device = linear.weight.device
        bias = None if linear.bias is None else linear.bias.detach().to(torch.float32).clone()
        return cls(in_features, out_features, group_size, packed.to(device), qp.scale.to(scale_dtype).to(device), bias)

    def unpacked_weight(self) -> torch.Tensor:
        """The int4 values as int8, ``(out_features, padded_in)`` (the same as ``qmath.unpack_int4``)."""
        data = self.weight_packed
        # Arithmetic right shifts of the int8 view sign-extend each nibble: low = (b << 4) >> 4, high = b >> 4.
        low = torch.bitwise_left_shift(data, 4).view(torch.int8) >> 4
        high = data.view(torch.int8) >> 4
        return torch.stack([low, high], dim=-1).reshape(self.out_features, self.padded_in)

    def dequantized_weight(self) -> torch.Tensor:
        """``q * scale`` per group in float32, ``(out_features, in_features)``: what forward multiplies with."""
        q = self.unpacked_weight().reshape(-1, self.group_size).to(torch.float32)
        weight = (q * self.weight_scale.to(torch.float32).unsqueeze(1)).reshape(self.out_features, self.padded_in)
        return weight if self.padded_in == self.in_features else weight[:, : self.in_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.dequantized_weight()
        bias = self.bias
        if x.dtype != torch.float32:
            weight, bias = weight.to(x.dtype), None if bias is None else bias.to(x.dtype)
        return F.linear(x, weight, bias)

    def weight_bytes(self) -> int:
        """Raw bytes of the packed weight plus its scales (the bias is not counted: it is FP32 either way)."""
        return sum(t.numel() * t.element_size() for t in (self.weight_packed, self.weight_scale))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
                f"scale_dtype={str(self.weight_scale.dtype).removeprefix('torch.')}, bias={self.bias is not None}")


def group_qparams(groups: torch.Tensor, scale_dtype: torch.dtype = SCALE_DTYPE) -> qmath.QParams:
    """Symmetric int4 parameters, one per row of ``groups``, with each scale representable in ``scale_dtype``.

    qmath's float32 scale (``amax / 7.5``) is rounded *up* to ``scale_dtype``: a scale rounded down would clip
    ``+-amax`` by a little more than half a step, so rounding up keeps ``|w - w'| <= s/2`` for the stored ``s``.
    """
    spec = qmath.QuantSpec(bits=4, signed=True, symmetric=True, axis=0)
    scale = qmath.qparams_from_tensor(groups, spec).scale
    if scale_dtype != torch.float32:
        stored = scale.to(scale_dtype)
        low = stored.to(torch.float32) < scale
        stored = torch.where(low, torch.nextafter(stored, torch.tensor(float("inf"), dtype=scale_dtype)), stored)
        if not bool(torch.isfinite(stored).all()):
            raise ValueError(f"a weight group's scale overflows {scale_dtype}; its weights are too large for it")
        scale = stored.to(torch.float32)
    return qmath.QParams(scale, torch.zeros(scale.shape, dtype=torch.int32), spec)


def quantize_linears(model: torch.nn.Module, group_size: int = 32, scale_dtype: torch.dtype = SCALE_DTYPE) -> list[str]:
    """Replace every ``nn.Linear`` inside ``model`` by an :class:`Int4WeightOnlyLinear`, in place; their names."""
    names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    for name in names:
        owner, _, attr = name.rpartition(".")
        parent = model.get_submodule(owner) if owner else model
        setattr(parent, attr, Int4WeightOnlyLinear.from_linear(getattr(parent, attr), group_size, scale_dtype))
    return names


def linear_weight_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """``(packed + scale bytes, FP32 bytes)`` of the weights of every :class:`Int4WeightOnlyLinear` in ``model``.

    Example:
        >>> layer = Int4WeightOnlyLinear.from_linear(torch.nn.Linear(384, 1536), group_size=32)
        >>> linear_weight_bytes(layer)
        (331776, 2359296)
    """
    layers = [m for m in model.modules() if isinstance(m, Int4WeightOnlyLinear)]
    quantized = sum(layer.weight_bytes() for layer in layers)
    fp32 = sum(layer.out_features * layer.in_features * 4 for layer in layers)
    return quantized, fp32


def linear_weight_ratio(model: torch.nn.Module) -> float:
    """Bytes of the quantized Linear weights (packed int4 + scales) over their FP32 bytes; biases excluded.

    4 bits are 0.125 of FP32; float16 scales add ``2 / (4 * group_size)`` (0.0156 at group 32: 0.1406 in all).
    """
    quantized, fp32 = linear_weight_bytes(model)
    if fp32 == 0:
        raise ValueError("the model holds no Int4WeightOnlyLinear layers")
    return quantized / fp32


def _layer_patterns(names: list[str]) -> list[str]:
    """Layer names with the repeated block index replaced by ``*``, deduplicated, in order (short for settings)."""
    return list(dict.fromkeys(re.sub(r"\.\d+\.", ".*.", name) for name in names))


# int4 per-group weights (group 32, fp16 scales) are ~20 dB SQNR per weight matrix (16 levels, RTN); the tiny model's
# logits measured 33.2 dB (33.5 with the int8 embedding), so 25 dB leaves 8 dB of margin.
TINYGEMM_KERNEL = Kernel("native", "aten _weight_int4pack_mm_for_cpu (torchao tinygemm, Int4OpaqueTensor), bf16 math")
REFERENCE_KERNEL = Kernel("simulated", "int4 unpacked and dequantized per call, then F.linear in fp32 (reference)")


def _int4_kernel(hardware: Any) -> Kernel:
    """The default kernel option's: tinygemm on CPU, the reference unpack + dequantize on CUDA."""
    return TINYGEMM_KERNEL if hardware.device == "cpu" else REFERENCE_KERNEL


@register_method("int4-weight-only", Int4WeightOnlyConfig, devices=("cpu", "cuda"), threshold=2.0, min_sqnr_db=25.0,
                 section="4.5", precision="int4", order=60, kernel=_int4_kernel, weight_bits=4,
                 # an int8 word-embedding table (the smallest torch build) and groups of 128 (fewer scales)
                 tunable=({"quantize_embedding": True}, {"group_size": 128}))
def _int4_weight_only_transform(baseline: Any, hardware: Hardware, config: Int4WeightOnlyConfig) -> QuantizedModel:
    """Int4 per-group Linear weights, the head unquantized; the kernel picks the activations' dtype."""
    kernel = config.kernel if config.kernel != "auto" else ("tinygemm" if hardware.device == "cpu" else "reference")
    if kernel == "tinygemm" and hardware.device != "cpu":
        raise QuantbenchError(f"int4-weight-only: the tinygemm kernel runs on CPU only, not {hardware.id}; "
                              "use --method-options int4-weight-only.kernel=reference")
    if kernel == "tinygemm" and config.group_size not in (None, *TINYGEMM_GROUPS):
        raise QuantbenchError(f"int4-weight-only: the tinygemm kernel takes group_size {TINYGEMM_GROUPS}, "
                              f"got {config.group_size}")
    model = fp32_copy(baseline)
    embedding = word_embeddings(model, config.quantize_embedding, "Int4WeightOnlyConfig")
    prefix = model.base_model_prefix
    if kernel == "tinygemm":
        group_size = config.group_size or tinygemm_group(model.base_model)
        names = [f"{prefix}.{name}" for name in tinygemm_linears(model, group_size)]
        module = LogitsModel(model)
        predict = bf16_compiled_predictor(module, example_inputs(baseline))
        settings = {"weights": "int4 asymmetric per-group (torchao Int4OpaqueTensor, bf16 scale and zero point)",
                    "activations": "bf16",
                    "kernel": TINYGEMM_KERNEL.as_dict(),
                    "engine": "inductor (no freezing)", "linear_weight_ratio": tinygemm_weight_ratio(model)}
    else:
        group_size = config.group_size or 32
        names = [f"{prefix}.{name}" for name in quantize_linears(model.base_model, group_size)]
        module = LogitsModel(model)
        predict = eager_predictor(module, hardware.device)
        settings = {"weights": "int4 symmetric per-group, packed 2 per byte",
                    "scale_dtype": str(SCALE_DTYPE).removeprefix("torch."), "activations": "fp32",
                    "kernel": REFERENCE_KERNEL.as_dict(), "engine": "eager",
                    "linear_weight_ratio": linear_weight_ratio(module)}
    kept = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and
            not isinstance(getattr(m, "weight", None), _int4_opaque_type())]
    size = module_size(module)
    settings.update({
        "group_size": group_size,
        "quantized_layers": _layer_patterns(names),
        "quantized_linear_count": len(names),
        ("bf16_layers" if kernel == "tinygemm" else "fp32_layers"): kept,
        "word_embeddings": embedding,
    })
    return QuantizedModel("int4-weight-only", hardware.id, predict, size.bytes, size.note, settings, module=module)


def _int4_opaque_type() -> type:
    try:
        from torchao.prototype.quantization.int4.int4_opaque_tensor import Int4OpaqueTensor
    except ImportError:  # pragma: no cover - torchao is a core dependency
        return type(None)
    return Int4OpaqueTensor


def tinygemm_group(base: torch.nn.Module, preferred: tuple[int, ...] = (64, 32)) -> int:
    """The first of ``preferred`` group sizes that divides every Linear's ``in_features`` (torchao would leave a
    Linear it does not divide unquantized)."""
    widths = {m.in_features for m in base.modules() if isinstance(m, torch.nn.Linear)}
    for group in preferred:
        if all(width % group == 0 for width in widths):
            return group
    raise QuantbenchError(f"int4-weight-only: no tinygemm group size {preferred} divides the Linear widths "
                          f"{sorted(widths)}; use --method-options int4-weight-only.kernel=reference")


def tinygemm_linears(model: torch.nn.Module, group_size: int) -> list[str]:
    """Make ``model`` bf16 and its base model's Linears torchao int4 (tinygemm layout), in place; their names.

    The head stays unquantized (bf16 like the activations it reads): 2 x hidden weights, and every logit goes
    through it.
    """
    from torchao.quantization import quantize_
    from torchao.prototype.quantization.int4.inference_workflow import PrototypeInt4WeightOnlyConfig

    model.to(torch.bfloat16)
    base = model.base_model
    names = [name for name, m in base.named_modules() if isinstance(m, torch.nn.Linear)]
    quantize_(base, PrototypeInt4WeightOnlyConfig(group_size=group_size, set_inductor_config=False),
              filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear))
    left = [name for name in names if not isinstance(base.get_submodule(name).weight, _int4_opaque_type())]
    if left:
        raise QuantbenchError(f"int4-weight-only: group_size {group_size} does not divide the input width of "
                              f"{left[:3]}; pick a group size that does, or kernel=reference")
    return names


def tinygemm_weight_ratio(model: torch.nn.Module) -> float:
    """Bytes of the int4 Linear weights (packed values + scale/zero pairs) over their FP32 bytes."""
    opaque = _int4_opaque_type()
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear) and isinstance(m.weight, opaque)]
    if not weights:
        raise ValueError("the model holds no torchao int4 Linear weights")
    packed = sum(t.numel() * t.element_size() for w in weights for t in (w.qdata, w.scale_and_zero))
    return packed / sum(w.shape[0] * w.shape[1] * 4 for w in weights)


def bf16_compiled_predictor(module: torch.nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> Any:
    """Inductor without freezing, one graph for every batch size; logits come back as FP32."""
    module.eval()
    # freezing stated, not left to TORCHINDUCTOR_FREEZING: it may fold a dequantized weight back in as a constant
    compiled = compiled_predictor(module, example, freezing=False)

    def predict(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return compiled(input_ids, attention_mask).float()

    return predict
