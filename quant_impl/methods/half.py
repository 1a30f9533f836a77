"""``fp16`` and ``bf16``: weights and compute in a 16-bit float type.

On this CPU (avx512_bf16, no avx512_fp16/AMX) bf16 is fast and fp16 is emulated and far slower than FP32;
both are measured as they are, and on CUDA both use the GPU's native half-precision units.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from quant_impl.hardware import Hardware
from quant_impl.measure.size import module_size
from quant_impl.methods._common import LogitsModel, eager_predictor, fp32_copy
from quant_impl.methods import kernels
from quant_impl.methods.registry import QuantizedModel, register_method


@dataclass(frozen=True)
class Fp16Config:
    version: int = 1


@dataclass(frozen=True)
class Bf16Config:
    version: int = 1


def _half(baseline: Any, hardware: Hardware, name: str, dtype: torch.dtype) -> QuantizedModel:
    module = LogitsModel(fp32_copy(baseline).to(dtype))
    size = module_size(module)
    return QuantizedModel(name, hardware.id, eager_predictor(module, hardware.device), size.bytes, size.note,
                          {"dtype": str(dtype).removeprefix("torch."), "engine": "eager"}, module=module)


# The seed report's expectations (../shared/REFERENCES.md, BERT-base on IMDB, 128 tokens): compression, accuracy
# loss (points) and speedup as (low, high); bf16 is measured against the seed's FP16 row.
_SEED_HALF = {"row": "FP16", "compression": (1.9, 2.0), "loss": (0.0, 0.1), "speedup": (1.2, 1.3)}


FP16_EMULATED = ("fp16 is emulated on this CPU (no avx512_fp16 or amx_fp16): the fp16 method's latency here "
                 "measures that emulation, not fp16 hardware; its accuracy is fp16's own")


# fp16 keeps 11 significant bits: the tiny model's logits stay above 50 dB of SQNR.
@register_method("fp16", Fp16Config, devices=("cpu", "cuda"), threshold=0.3, min_sqnr_db=50.0, section="4.5",
                 precision="fp16", seed=_SEED_HALF, order=40, kernel=kernels.half("fp16"))
def _fp16_transform(baseline: Any, hardware: Hardware, config: Fp16Config) -> QuantizedModel:
    """All weights and activations in IEEE half precision (model.half())."""
    if hardware.device == "cpu" and not kernels.has_fp16_math():
        # Said here because nothing else says it: torch emulates fp16 on such CPUs without a word.
        warnings.warn(FP16_EMULATED, UserWarning, stacklevel=1)
    return _half(baseline, hardware, "fp16", torch.float16)


# bf16 keeps 8 mantissa bits (~48 dB of rounding noise per op, compounded over the tiny model's 2 layers).
@register_method("bf16", Bf16Config, devices=("cpu", "cuda"), threshold=0.3, min_sqnr_db=30.0, section="4.5",
                 precision="bf16", seed=_SEED_HALF, order=41, speed_default=True, main_job=True,
                 kernel=kernels.half("bf16"))
def _bf16_transform(baseline: Any, hardware: Hardware, config: Bf16Config) -> QuantizedModel:
    """All weights and activations in bfloat16 (the fast 16-bit type of avx512_bf16 CPUs)."""
    return _half(baseline, hardware, "bf16", torch.bfloat16)
