"""``static-int8``: int8 weights and activations, activation ranges calibrated on the calibration split.

torch.export -> torchao prepare_pt2e(X86InductorQuantizer) -> calibration batches -> convert_pt2e -> Inductor
with freezing. Compile time counts as build time, never as latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from quant_impl.hardware import Hardware
from quant_impl.methods import _pt2e
from quant_impl.methods._common import calibration_batches
from quant_impl.methods._pt2e_build import Pt2eOptions, build
from quant_impl.methods.options import check_choice, check_min
from quant_impl.methods.kernels import Kernel
from quant_impl.methods.registry import QuantizedModel, register_method

OBSERVERS = ("histogram", "minmax")


@dataclass(frozen=True)
class StaticInt8Config(Pt2eOptions):
    observer: str = "histogram"
    calibration_batch_size: int = 32
    # 10 x 32 = the same 320 reviews the peer engines calibrate on. Measured on the quick checkpoint: drop 0.00 pt
    # with 320 and 0.10 with all 1,000, and the histogram observer's 1,000 cost 60 s per build. None: the whole split.
    calibration_batches: int | None = 10
    version: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "observer", OBSERVERS)
        check_min(self, 1, "calibration_batch_size", "calibration_batches", may_be_none=("calibration_batches",))


@register_method(
    "static-int8",
    StaticInt8Config,
    devices=("cpu",),
    unsupported_reason="X86InductorQuantizer emits x86 CPU int8 (oneDNN) kernels; there is no CUDA lowering for them",
    threshold=1.0,
    min_sqnr_db=20.0,  # torchao's own bar for int8 (test_int8_tensor.py)
    section="4.3",
    precision="int8",
    seed={"row": "static INT8", "compression": (3.5, 4.0), "loss": (0.5, 0.9), "speedup": (2.0, None)},
    order=20,
    speed_default=True,
    main_job=True,
    kernel=Kernel("native", "oneDNN qlinear u8 x s8, calibrated static scales (pt2e + Inductor)"),
    # min/max ranges clip no outlier: a different accuracy, the same kernels; an FP32 word-embedding table keeps
    # its accuracy at 0.65x of FP32's bytes instead of 0.26x
    tunable=({"observer": "minmax"}, {"quantize_embedding": False}),
)
def _static_int8_transform(baseline: Any, hardware: Hardware, config: StaticInt8Config) -> QuantizedModel:
    """Int8 weights (per channel) and activations (per tensor, calibrated ranges)."""
    from torchao.quantization.pt2e import MinMaxObserver

    def calibrate(graph: torch.fx.GraphModule, quantizer: Any, example: Any) -> tuple[torch.fx.GraphModule, dict]:
        feed = list(calibration_batches(baseline, config.calibration_batch_size, config.calibration_batches))
        return (_pt2e.quantize(graph, quantizer, feed=feed),
                {"calibration_examples": sum(len(ids) for ids, _ in feed)})

    # None: the quantizer's own default, the HistogramObserver
    activation_observer = MinMaxObserver.with_args(eps=2**-12) if config.observer == "minmax" else None
    return build("static-int8", baseline, hardware, config, quantizer={"activation_observer": activation_observer},
                 step=calibrate, engine="pt2e X86InductorQuantizer + inductor freezing",
                 activations=f"uint8 per-tensor affine, {config.observer} observer")
