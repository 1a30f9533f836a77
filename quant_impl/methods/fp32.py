"""``fp32``: the fine-tuned baseline as is (eager); ``fp32-compiled``: the same through Inductor with freezing,
so compiled int8 methods can also be compared with a compiled FP32 model, like with like."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quant_impl.hardware import Hardware
from quant_impl.measure.size import module_size
from quant_impl.methods._common import LogitsModel, compiled_predictor, eager_predictor, example_inputs, fp32_copy
from quant_impl.methods.kernels import Kernel
from quant_impl.methods.registry import QuantizedModel, register_method


@dataclass(frozen=True)
class Fp32Config:
    version: int = 1


@dataclass(frozen=True)
class Fp32CompiledConfig:
    version: int = 1


@register_method("fp32", Fp32Config, devices=("cpu", "cuda"), threshold=None, min_sqnr_db=float("inf"),
                 section="4.1", precision="fp32", order=0, speed_default=True, main_job=True,
                 kernel=Kernel("native", "aten fp32 GEMM, eager (oneDNN/MKL sgemm on CPU, cuBLAS on CUDA)"))
def _fp32_transform(baseline: Any, hardware: Hardware, config: Fp32Config) -> QuantizedModel:
    """The FP32 baseline in eager mode: the reference every other method is compared with."""
    module = LogitsModel(fp32_copy(baseline))
    size = module_size(module)
    return QuantizedModel("fp32", hardware.id, eager_predictor(module, hardware.device), size.bytes, size.note,
                          {"engine": "eager"}, module=module)


@register_method(
    "fp32-compiled",
    Fp32CompiledConfig,
    devices=("cpu",),
    unsupported_reason="only the CPU compiled path (Inductor with freezing) is measured so far",
    threshold=0.3,
    min_sqnr_db=60.0,
    section="4.5",
    precision="fp32",
    order=90,
    speed_default=True,
    kernel=Kernel("native", "Inductor fp32 (oneDNN/MKL sgemm, fused elementwise), frozen weights"),
)
def _fp32_compiled_transform(baseline: Any, hardware: Hardware, config: Fp32CompiledConfig) -> QuantizedModel:
    """The FP32 baseline compiled by Inductor with freezing (the fair reference for compiled int8)."""
    module = LogitsModel(fp32_copy(baseline))
    size = module_size(module)
    predict = compiled_predictor(module, example_inputs(baseline))
    return QuantizedModel("fp32-compiled", hardware.id, predict, size.bytes, size.note,
                          {"engine": "inductor", "freezing": True}, module=module)
