"""``dynamic-int8``: int8 per-channel weights, activations quantized at run time from their own range.

Two engines: ``pt2e`` (torchao's X86InductorQuantizer with is_dynamic=True, compiled by Inductor with
freezing) and ``torch-ao`` (the seed report's ``torch.ao.quantization.quantize_dynamic``, eager, deprecated
in torch 2.13 but present). ``pt2e`` is the default because it measured faster here (PLATFORM.md: 2.4-2.7x
vs 1.9-2.0x over FP32 eager).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from quant_impl.hardware import Hardware
from quant_impl.measure.size import module_size
from quant_impl.methods import _pt2e
from quant_impl.methods._common import LogitsModel, eager_predictor, export_attention
from quant_impl.methods._pt2e_build import Pt2eOptions, build, prepared_copy
from quant_impl.methods.options import check_choice
from quant_impl.methods.kernels import Kernel
from quant_impl.methods.registry import QuantizedModel, register_method

ENGINES = ("pt2e", "torch-ao")
# The exact warnings torch 2.13 raises for the deprecated torch.ao flow; nothing else is silenced.
_TORCH_AO_WARNINGS = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r".*(qint8|quint8).* deprecated"),
)


@dataclass(frozen=True)
class DynamicInt8Config(Pt2eOptions):
    engine: str = "pt2e"
    version: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "engine", ENGINES)
        if self.engine == "torch-ao" and self.attention == "fused-bf16":
            raise ValueError("DynamicInt8Config.attention='fused-bf16' swaps ops of a PT2E graph: it needs engine='pt2e'")
        if self.engine == "torch-ao" and self.float_layers:
            raise ValueError("DynamicInt8Config.float_layers leaves Linears out of a PT2E quantizer: it needs "
                             "engine='pt2e'")


@register_method(
    "dynamic-int8",
    DynamicInt8Config,
    devices=("cpu",),
    unsupported_reason="both engines emit x86 CPU int8 kernels (oneDNN/fbgemm); PyTorch has no CUDA path for them",
    threshold=1.0,
    # int8 per-channel weights and 8-bit activations give ~30-40 dB on the tiny model; 20 dB is torchao's own bar.
    min_sqnr_db=20.0,
    section="4.2",
    precision="int8",
    # The seed report's expectation (../shared/REFERENCES.md, BERT-base on IMDB): compression, loss (pts), speedup.
    seed={"row": "dynamic INT8", "compression": (3.5, 4.0), "loss": (0.0, 0.5), "speedup": (1.5, 1.6)},
    order=10,
    speed_default=True,
    main_job=True,
    kernel=Kernel("native", "oneDNN qlinear u8 x s8, activation scales per batch (pt2e + Inductor)"),
    # fbgemm's eager Linears: no compile, other kernels (slower at batch 32 on the AVX-512 VMs, measured)
    tunable=({"engine": "torch-ao"}, {"quantize_embedding": False}),
)
def _dynamic_int8_transform(baseline: Any, hardware: Hardware, config: DynamicInt8Config) -> QuantizedModel:
    """Int8 weights (per channel), activations quantized per batch at run time; no calibration."""
    if config.engine == "torch-ao":
        return _torch_ao_transform(baseline, hardware, config)
    return build("dynamic-int8", baseline, hardware, config, quantizer={"is_dynamic": True}, step=_one_pass,
                 engine="pt2e X86InductorQuantizer(is_dynamic) + inductor freezing",
                 activations="uint8 per-tensor, dynamic")


def _one_pass(graph: torch.fx.GraphModule, quantizer: Any, example: Any) -> tuple[torch.fx.GraphModule, dict]:
    # dynamic qparams are computed per batch at run time; one pass through the prepared graph is all it needs
    return _pt2e.quantize(graph, quantizer, feed=[example]), {}


def _torch_ao_transform(baseline: Any, hardware: Hardware, config: DynamicInt8Config) -> QuantizedModel:
    model, embedding = prepared_copy(baseline, config)
    quantized = torch_ao_dynamic(LogitsModel(model))
    attention = export_attention(config.attention)  # eager torch.ao modules: no graph to swap kernels in
    size = module_size(quantized)
    return QuantizedModel("dynamic-int8", hardware.id, eager_predictor(quantized), size.bytes, size.note,
                          {"engine": "torch-ao quantize_dynamic", "weights": "int8 per-channel symmetric",
                           "kernel": Kernel("native", "fbgemm quantized::linear_dynamic u8 x s8 (torch.ao, eager)").as_dict(),
                           "word_embeddings": embedding, "attention": attention},
                          module=quantized)


def torch_ao_dynamic(module: torch.nn.Module) -> torch.nn.Module:
    """``quantize_dynamic`` of every nn.Linear with per-channel int8 weights (closer to FP32 than per-tensor)."""
    with warnings.catch_warnings():
        for category, message in _TORCH_AO_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(module, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
