"""``intx-weight-only`` (and ``intx-int8-``, ``-int3-``, ``-int2-weight-only``): 2- to 8-bit Linear weights by torchao.

torchao 0.18's ``IntxWeightOnlyConfig(weight_dtype=torch.int<bits>, granularity=PerGroup(group_size))`` turns every
``nn.Linear`` weight of the base model into an ``IntxUnpackedToInt8Tensor``: the n-bit values held one per int8,
an fp32 scale and an int8 zero point per group, and a forward that dequantizes the weight and calls ``F.linear``.
torchao's low-bit kernels (``torchao.experimental``, packed 1..8-bit weights) are built for aarch64 only and the
x86 wheel ships none, so on this CPU every bit width is a **simulation**: the values are n-bit, the arithmetic is
fp32 after dequantizing, and the time is the dequantize's, never a low-bit kernel's. The ``kernel`` fact says so
and the report never shows its speed without it.

The size counts what a deployment of these values needs: the n-bit values packed by ``qmath.pack_bits`` (four to a
byte at 2 bits, eight to three bytes at 3 bits), plus torchao's scales and zero points as stored, plus every other
tensor of the model; the int8 copy torchao keeps in memory is not what would ship. The classifier head stays fp32
(as int4-weight-only's: a few hundred weights, and every logit goes through it). The bit width is the ``bits``
option of ``intx-weight-only`` (4 by default); ``intx-int8-``, ``-int3-`` and ``-int2-weight-only`` are the same
method at those widths, registered so one ``quantbench speed`` run times the whole bits curve side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from quant_impl import qmath
from quant_impl.errors import QuantbenchError
from quant_impl.hardware import Hardware
from quant_impl.measure.size import module_size
from quant_impl.methods._common import WEIGHT_ONLY_SECTION, LogitsModel, eager_predictor, fp32_copy
from quant_impl.methods.kernels import Kernel
from quant_impl.methods.options import check_choice
from quant_impl.methods.registry import QuantizedModel, register_method

BITS = tuple(range(2, 9))
MAPPINGS = ("asymmetric", "symmetric")
KERNEL = Kernel("simulated", "torchao IntxUnpackedToInt8Tensor: n-bit values held in int8, dequantize + F.linear "
                             "in fp32 (torchao's low-bit kernels are aarch64-only)")
_SECTION = WEIGHT_ONLY_SECTION


@dataclass(frozen=True)
class IntxWeightOnlyConfig:
    bits: int = 4
    group_size: int = 32  # input features per scale (and zero point); it must divide every Linear's input width
    # asymmetric: an int8 zero point per group, which 2- and 3-bit weights need (a symmetric int2 grid is -2..1)
    mapping: str = "asymmetric"
    version: int = 1
    FIXED_BITS: ClassVar[int | None] = None  # set on the per-width registrations

    def __post_init__(self) -> None:
        check_choice(self, "bits", BITS)
        check_choice(self, "mapping", MAPPINGS)
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
            raise ValueError(f"{type(self).__name__}.group_size must be a positive integer, got {self.group_size!r}")
        if self.FIXED_BITS is not None and self.bits != self.FIXED_BITS:
            raise ValueError(f"this method is the {self.FIXED_BITS}-bit registration; for {self.bits} bits use "
                             f"--method-options intx-weight-only.bits={self.bits}")


@dataclass(frozen=True)
class IntxInt8WeightOnlyConfig(IntxWeightOnlyConfig):
    bits: int = 8
    FIXED_BITS: ClassVar[int | None] = 8


@dataclass(frozen=True)
class IntxInt3WeightOnlyConfig(IntxWeightOnlyConfig):
    bits: int = 3
    FIXED_BITS: ClassVar[int | None] = 3


@dataclass(frozen=True)
class IntxInt2WeightOnlyConfig(IntxWeightOnlyConfig):
    bits: int = 2
    FIXED_BITS: ClassVar[int | None] = 2


def _unpacked_type() -> type:
    from torchao.quantization import IntxUnpackedToInt8Tensor

    return IntxUnpackedToInt8Tensor


def quantize_linears(base: torch.nn.Module, config: IntxWeightOnlyConfig) -> list[str]:
    """torchao intx weight-only on every Linear of ``base``, in place; their names. Refuses a group size that
    does not divide a Linear's input width (torchao would fail inside, naming neither)."""
    from torchao.quantization import IntxWeightOnlyConfig as TorchaoConfig
    from torchao.quantization import MappingType, quantize_
    from torchao.quantization.granularity import PerGroup

    names = [name for name, m in base.named_modules() if isinstance(m, torch.nn.Linear)]
    widths = sorted({base.get_submodule(name).in_features for name in names})
    odd = [width for width in widths if width % config.group_size]
    if odd:
        raise QuantbenchError(f"intx-weight-only: group_size {config.group_size} does not divide the Linear input widths "
                         f"{odd}; pick a divisor of {widths} (--method-options intx-weight-only.group_size=...)")
    mapping = MappingType.ASYMMETRIC if config.mapping == "asymmetric" else MappingType.SYMMETRIC
    quantize_(base, TorchaoConfig(weight_dtype=getattr(torch, f"int{config.bits}"),
                                  granularity=PerGroup(config.group_size), mapping_type=mapping),
              filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear))
    return names


def packed_weight_bytes(model: torch.nn.Module, bits: int) -> tuple[int, int, int]:
    """``(int8 bytes torchao holds, bytes qmath.pack_bits stores, fp32 bytes)`` of every intx Linear weight.

    The packed figure is measured by packing each weight's values, not computed from its shape, so a layout
    change in torchao that stored something else would show here."""
    unpacked = _unpacked_type()
    held = packed = fp32 = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) and isinstance(weight, unpacked):
            held += weight.qdata.numel() * weight.qdata.element_size()
            packed += qmath.pack_bits(weight.qdata, bits, signed=True).nbytes
            fp32 += weight.qdata.numel() * 4
    return held, packed, fp32


def _register(name: str, config_cls: type, bits: int, threshold: float, min_sqnr_db: float, order: int) -> None:
    register_method(
        name, config_cls, devices=("cpu", "cuda"), threshold=threshold, min_sqnr_db=min_sqnr_db, **_SECTION,
        summary=f"torchao int{bits} per-group weight-only Linears (IntxWeightOnlyConfig), dequantized per call "
                "(simulated: torchao has no x86 low-bit kernel).",
        heading={"en": f"{name} (torchao IntxWeightOnlyConfig, int{bits})",
                 "zh": f"{name}（torchao IntxWeightOnlyConfig，int{bits}）"},
        precision="int8" if bits == 8 else f"int{bits}", order=order, kernel=KERNEL, weight_bits=bits,
    )(lambda baseline, hardware, config: _intx_transform(name, baseline, hardware, config))


def _intx_transform(name: str, baseline: Any, hardware: Hardware, config: IntxWeightOnlyConfig) -> QuantizedModel:
    model = fp32_copy(baseline)
    names = [f"{model.base_model_prefix}.{n}" for n in quantize_linears(model.base_model, config)]
    module = LogitsModel(model).to(hardware.device)
    held, packed, fp32 = packed_weight_bytes(module, config.bits)
    size = module_size(module)
    scales = [t for m in module.modules() if isinstance(getattr(m, "weight", None), _unpacked_type())
              for t in (m.weight.scale, m.weight.zero_point)]
    settings = {
        "weights": f"int{config.bits} {config.mapping} per group of {config.group_size} (torchao "
                   "IntxUnpackedToInt8Tensor: values in int8, fp32 scale and int8 zero point per group)",
        "activations": "fp32",
        "engine": "eager",
        "torchao": _torchao_version(),
        "group_size": config.group_size,
        "quantized_linear_count": len(names),
        "fp32_layers": [n for n, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear) and not isinstance(m.weight, _unpacked_type())],
        # the values packed as shipped, plus scales and zero points, over the fp32 Linear weights
        "linear_weight_ratio": (packed + sum(t.numel() * t.element_size() for t in scales)) / fp32,
        "size_packing": f"qmath.pack_bits, {config.bits} bits: {held} bytes held in int8 -> {packed} packed",
    }
    return QuantizedModel(name, hardware.id, eager_predictor(module, hardware.device), size.bytes - held + packed,
                          f"{size.note}, with the int{config.bits} weight values packed {config.bits} bits each "
                          "(qmath.pack_bits) instead of torchao's int8", settings, module=module)


def _torchao_version() -> str:
    import torchao

    return torchao.__version__


# Logit SQNR bars per width: the tiny model measured 58.2 / 30.5 / 27.2 / 14.5 dB at 8 / 4 / 3 / 2 bits (group 32,
# asymmetric), each bar ~6 dB under; the accuracy gate on the real model is what decides a width ships.
_register("intx-weight-only", IntxWeightOnlyConfig, 4, threshold=2.0, min_sqnr_db=24.0, order=61)
_register("intx-int8-weight-only", IntxInt8WeightOnlyConfig, 8, threshold=1.0, min_sqnr_db=50.0, order=62)
_register("intx-int3-weight-only", IntxInt3WeightOnlyConfig, 3, threshold=2.0, min_sqnr_db=21.0, order=63)
_register("intx-int2-weight-only", IntxInt2WeightOnlyConfig, 2, threshold=12.0, min_sqnr_db=8.0, order=64)
