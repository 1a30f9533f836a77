"""``mixed-int8-bf16`` (CPU) and ``mixed-int8-fp16`` (CUDA): int8 Linears, the most sensitive ones in half precision.

Preset ``sensitivity`` (default): a per-layer analysis (``sensitivity.layer_sensitivity``: each encoder Linear
quantized alone, logit SQNR vs FP32 on a few calibration batches) ranks the layers; the build starts with every
encoder Linear int8 and moves the most sensitive ones to half precision, one at a time, until the accuracy drop
vs FP32 **on the calibration split** is within budget (the test split is never used for the choice). Preset
``seed`` is the course-design report's fixed split: FFN Linears int8, attention Linears half, no analysis.

Engines (eager, no compile; LayerNorm, softmax, embeddings and the residual stream stay FP32):

* ``mixed-int8-bf16``, CPU: int8 layers are torch.ao ``quantize_dynamic`` Linears (per-channel int8 weights,
  activations quantized per batch; the ``dynamic-int8`` torch-ao engine, restricted to the chosen names); half
  layers are :class:`HalfLinear` in bfloat16 (fast on avx512_bf16 CPUs).
* ``mixed-int8-fp16``, CUDA: torch.ao's dynamic int8 Linear has CPU kernels only (fbgemm/qnnpack), so int8
  layers are :class:`Int8WeightOnlyLinear`: int8 weights dequantized to fp16 on the fly with plain torch ops. That
  saves weight bytes, not time (no int8 matmul runs); half layers are :class:`HalfLinear` in fp16. Not offered on
  CPU, where fp16 matmuls are emulated (slower than FP32): ``mixed-int8-bf16`` is the CPU method.

The pooler and classifier head stay FP32 (see ``sensitivity``). ``settings["layer_map"]`` records every Linear's
precision; with the sensitivity preset, ``settings["sensitivity"]`` and ``settings["selection"]`` record the ranking
and the calibration accuracies along the way.

Example:
    >>> cfg = MixedPrecisionConfig(max_half_layers=6)
    >>> built = apply("mixed-int8-bf16", baseline, get_hardware("cpu"), cfg)             # doctest: +SKIP
    >>> built.settings["selection"]["half_layers"]                                       # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from quant_impl import qmath
from quant_impl.cache import entry_lock, trusted, write_json_atomic, write_manifest
from quant_impl.cache_keys import mixed_selection_key
from quant_impl.hardware import Hardware
from quant_impl.measure.accuracy import evaluate
from quant_impl.measure.size import module_size
from quant_impl.methods._common import LogitsModel, calibration_batches, eager_predictor, fp32_copy
from quant_impl.methods.dynamic_int8 import _TORCH_AO_WARNINGS
from quant_impl.methods.options import check_choice
from quant_impl.methods.kernels import Kernel
from quant_impl.methods.registry import QuantizedModel, register_method
from quant_impl.methods.sensitivity import (
    INT8_PER_CHANNEL,
    encoder_linears,
    fake_quantized_weight,
    layer_sensitivity,
)

log = logging.getLogger(__name__)

PRESETS = ("sensitivity", "seed")
INT8, FP32 = "int8", "fp32"


@dataclass(frozen=True)
class MixedPrecisionConfig:
    """How the layer map is chosen.

    Args:
        preset: ``"sensitivity"`` (analysis + selection) or ``"seed"`` (FFN int8, attention half; no analysis).
        calibration_batches, calibration_batch_size: the calibration rows the per-layer analysis runs on
            (2 x 32 by default: the analysis is one forward pass over them per encoder Linear, 36 in MiniLM-L6,
            about 1-2 minutes on 2 cores; see ``sensitivity``).
        accuracy_budget_pts: the largest accuracy drop vs FP32 on the calibration split, in points, before a
            layer goes back to half precision. None: ``threshold_share`` x the method's threshold in
            ``RunConfig.thresholds`` (the test-split gate). A negative budget can never be met: it moves layers
            to half precision up to ``max_half_layers`` (for experiments and tests).
        threshold_share: the share of the test-split threshold the calibration drop may use (default half: the
            calibration split is smaller and the choice is tuned on it, so its drop under-estimates the test's).
        max_half_layers: at most this many half-precision layers (None: every encoder Linear if need be).
    """

    preset: str = "sensitivity"
    calibration_batches: int = 2
    calibration_batch_size: int = 32
    accuracy_budget_pts: float | None = None
    threshold_share: float = 0.5
    max_half_layers: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        check_choice(self, "preset", PRESETS)
        for name in ("calibration_batches", "calibration_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MixedPrecisionConfig.{name} must be an integer >= 1, got {value!r}")
        budget = self.accuracy_budget_pts
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget)
        ):
            raise ValueError(
                f"MixedPrecisionConfig.accuracy_budget_pts must be None (use the method's threshold) or a finite "
                f"number of points, got {budget!r}"
            )
        share = self.threshold_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ValueError(f"MixedPrecisionConfig.threshold_share must be a number in (0, 1], got {share!r}")
        cap = self.max_half_layers
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise ValueError(
                f"MixedPrecisionConfig.max_half_layers must be None (no cap) or an integer >= 0, got {cap!r}"
            )


class HalfLinear(torch.nn.Module):
    """A Linear computed in ``dtype`` (bf16/fp16) inside an FP32 model: ``F.linear(x.to(dtype), w, b).to(x.dtype)``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, dtype: torch.dtype) -> "HalfLinear":
        bias = None if linear.bias is None else linear.bias.detach().to(dtype).clone()
        return cls(linear.weight.detach().to(dtype).clone(), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"in_features={in_features}, out_features={out_features}, dtype={self.weight.dtype}"


class Int8WeightOnlyLinear(torch.nn.Module):
    """Per-channel symmetric int8 weights, dequantized to ``dtype`` on every call (``w = q * s``), then F.linear.

    Device-agnostic torch ops (the CUDA engine of ``mixed-int8-fp16``); it stores int8, computes in ``dtype``.
    """

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, dtype: torch.dtype) -> "Int8WeightOnlyLinear":
        weight = linear.weight.detach().float()
        qp = qmath.qparams_from_tensor(weight, INT8_PER_CHANNEL)
        bias = None if linear.bias is None else linear.bias.detach().to(dtype).clone()
        return cls(qmath.quantize(weight, qp), qp.scale.to(weight.device, dtype), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.scale.dtype
        weight = self.weight_int8.to(dtype) * self.scale[:, None]
        return F.linear(x.to(dtype), weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight_int8.shape
        return f"in_features={in_features}, out_features={out_features}, dtype={self.scale.dtype}"


@dataclass(frozen=True)
class _Engine:
    half_dtype: torch.dtype
    half_name: str  # the layer map's word for it
    int8_kind: str  # "torch-ao-dynamic" or "weight-only"
    description: str

    @property
    def quantize_one(self) -> Callable[[torch.nn.Linear], torch.nn.Module]:
        """The per-layer analysis quantizes with the int8 scheme the build uses (weight-only: its fp32 proxy)."""
        return dynamic_int8_linear if self.int8_kind == "torch-ao-dynamic" else fake_quantized_weight


_ENGINES = {
    "mixed-int8-bf16": _Engine(
        torch.bfloat16, "bf16", "torch-ao-dynamic",
        "eager, no compile: torch.ao quantize_dynamic int8 Linears (per-channel weights, per-batch activations) "
        "+ bf16 HalfLinears; LayerNorm, softmax, embeddings and residuals FP32",
    ),
    "mixed-int8-fp16": _Engine(
        torch.float16, "fp16", "weight-only",
        "eager, no compile: int8 weight-only Linears dequantized to fp16 per call (torch ops; saves size, not "
        "time) + fp16 HalfLinears; LayerNorm, softmax, embeddings and residuals FP32",
    ),
}


@contextmanager
def _torch_ao_quiet() -> Iterator[None]:
    """Silence exactly the deprecation warnings of torch 2.13's torch.ao flow (as ``dynamic_int8`` does)."""
    with warnings.catch_warnings():
        for category, message in _TORCH_AO_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def dynamic_int8_linear(linear: torch.nn.Linear) -> torch.nn.Module:
    """One torch.ao dynamic int8 Linear (per-channel weights) from ``linear``, which is left untouched."""
    with _torch_ao_quiet():
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        wrapped = torch.nn.Sequential(linear)
        return quantize_dynamic(wrapped, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)[0]


def seed_layer_map(model: torch.nn.Module, half_name: str = "bf16") -> dict[str, str]:
    """The seed report's split: attention Linears (query, key, value, attention output) half, FFN int8,
    pooler and head FP32."""
    candidates = set(encoder_linears(model))
    layer_map = {}
    for name in _all_linears(model):
        if name not in candidates:
            layer_map[name] = FP32
        else:
            layer_map[name] = half_name if "attention" in name.split(".") else INT8
    return layer_map


def build_mixed(
    reference: torch.nn.Module, layer_map: dict[str, str], engine: str = "mixed-int8-bf16"
) -> torch.nn.Module:
    """A copy of the FP32 ``reference`` with each Linear in ``layer_map``'s precision (int8, bf16/fp16, fp32)."""
    spec = _ENGINES[engine]
    allowed = {INT8, FP32, spec.half_name}
    bad = {name: kind for name, kind in layer_map.items() if kind not in allowed}
    if bad:
        raise ValueError(f"{engine} layer maps take {sorted(allowed)}, got {bad}")
    int8_names = [name for name, kind in layer_map.items() if kind == INT8]
    if spec.int8_kind == "torch-ao-dynamic" and int8_names:
        with _torch_ao_quiet():
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            # A qconfig_spec keyed by module name quantizes exactly those modules (checked in the tests).
            model = quantize_dynamic(
                reference, {name: per_channel_dynamic_qconfig for name in int8_names}, dtype=torch.qint8
            )
    else:
        model = copy.deepcopy(reference)
        for name in int8_names:
            model.set_submodule(name, Int8WeightOnlyLinear.from_linear(reference.get_submodule(name), spec.half_dtype))
    for name, kind in layer_map.items():
        if kind == spec.half_name:
            model.set_submodule(name, HalfLinear.from_linear(reference.get_submodule(name), spec.half_dtype))
    return model.eval()


def _all_linears(model: torch.nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


def _mixed(baseline: Any, hardware: Hardware, config: MixedPrecisionConfig, name: str) -> QuantizedModel:
    engine = _ENGINES[name]
    reference = fp32_copy(baseline).to(hardware.device)
    settings: dict[str, Any] = {"engine": engine.description, "preset": config.preset,
                                "half_dtype": str(engine.half_dtype).removeprefix("torch.")}
    if config.preset == "seed":
        layer_map = seed_layer_map(reference, engine.half_name)
        model = build_mixed(reference, layer_map, name)
    else:
        model, layer_map, report = _cached_selection(baseline, reference, config, name, hardware.device)
        settings.update(report)
    module = LogitsModel(model)
    size = module_size(module)
    counts = {kind: sum(1 for k in layer_map.values() if k == kind) for kind in (INT8, engine.half_name, FP32)}
    settings.update({"layer_counts": counts, "layer_map": layer_map})
    return QuantizedModel(name, hardware.id, eager_predictor(module, hardware.device), size.bytes, size.note,
                          settings, module=module)


def _cached_selection(
    baseline: Any, reference: torch.nn.Module, config: MixedPrecisionConfig, name: str, device: str
) -> tuple[torch.nn.Module, dict[str, str], dict[str, Any]]:
    """:func:`_by_sensitivity`, its layer map and report cached beside the baseline (written atomically).

    The analysis and the selection are deterministic functions of the checkpoint, the calibration split, this
    config and the code and libraries that run them; the cache key holds all of them, so a hit is the same
    choice. ``settings["selection"]["cached"]`` says which it was.
    """
    key = mixed_selection_key(baseline, config, name, device, _budget(config, baseline, name))
    path = baseline.config.cache_dir / MIXED_CACHE_KIND[0] / f"{baseline.checkpoint.name}-{name}-{key}.json"
    with entry_lock(path):
        cached, ok = trusted(path, lambda p: _read_selection(p))
        if ok:
            layer_map, report = cached
            report["selection"]["cached"] = True
            return build_mixed(reference, layer_map, name), layer_map, report
        model, layer_map, report = _by_sensitivity(baseline, reference, config, name, device)
        write_json_atomic(path, {"layer_map": layer_map, "report": report})
        write_manifest(path)
    report["selection"]["cached"] = False
    return model, layer_map, report


def _read_selection(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    cached = json.loads(path.read_text(encoding="utf-8"))
    return dict(cached["layer_map"]), dict(cached["report"])


def _by_sensitivity(
    baseline: Any, reference: torch.nn.Module, config: MixedPrecisionConfig, name: str, device: str
) -> tuple[torch.nn.Module, dict[str, str], dict[str, Any]]:
    """Rank the encoder Linears, start all-int8, move the most sensitive to half until the budget holds."""
    engine = _ENGINES[name]
    feed = list(calibration_batches(baseline, config.calibration_batch_size, config.calibration_batches))
    start = time.perf_counter()
    ranked = layer_sensitivity(reference, feed, engine.quantize_one)
    analysis_seconds = time.perf_counter() - start

    budget, budget_source = _budget(config, baseline, name)
    split = baseline.data["calibration"]
    batch_size = baseline.config.eval_batch_size
    fp32_accuracy = evaluate(eager_predictor(LogitsModel(reference), device), split, batch_size,
                             desc="Mixed precision: FP32 on calibration").accuracy

    layer_map = {layer: FP32 for layer in _all_linears(reference)}
    layer_map.update({s.name: INT8 for s in ranked})
    model = build_mixed(reference, layer_map, name)
    predict = eager_predictor(LogitsModel(model), device)
    cap = len(ranked) if config.max_half_layers is None else min(config.max_half_layers, len(ranked))
    half: list[str] = []
    steps = []
    while True:
        accuracy = evaluate(predict, split, batch_size, desc=f"Mixed precision: {len(half)} half layers").accuracy
        drop = 100.0 * (fp32_accuracy - accuracy)
        steps.append({"half_layers": len(half), "accuracy": round(accuracy, 4), "drop_pts": round(drop, 2)})
        met = drop <= budget + 1e-9
        if met or len(half) >= cap:
            break
        layer = ranked[len(half)].name
        model.set_submodule(layer, HalfLinear.from_linear(reference.get_submodule(layer), engine.half_dtype))
        layer_map[layer] = engine.half_name
        half.append(layer)
    if not met:
        log.warning("%s: calibration drop %.2f pts still above the %.2f-pt budget with %d half layers (cap %d)",
                    name, drop, budget, len(half), cap)
    report = {
        "sensitivity": {
            "metric": "logit SQNR vs FP32 (dB) with one Linear int8, lowest = most sensitive",
            "quantizer": "torch.ao dynamic int8" if engine.int8_kind == "torch-ao-dynamic"
            else "int8 per-channel weight-only (qmath fake quantization)",
            "examples": sum(len(ids) for ids, _ in feed),
            "seconds": round(analysis_seconds, 2),
            "layers": [s.to_dict() for s in ranked],
        },
        "selection": {
            "split": "calibration",
            "examples": len(split),
            "budget_pts": round(budget, 4),
            "budget_source": budget_source,
            "max_half_layers": cap,
            "fp32_accuracy": round(fp32_accuracy, 4),
            "steps": steps,
            "half_layers": half,
            "budget_met": met,
        },
    }
    return model, layer_map, report


def _budget(config: MixedPrecisionConfig, baseline: Any, name: str) -> tuple[float, str]:
    if config.accuracy_budget_pts is not None:
        return float(config.accuracy_budget_pts), "MixedPrecisionConfig.accuracy_budget_pts"
    threshold = baseline.config.threshold(name)
    source = f"threshold_share {config.threshold_share} x thresholds[{name!r}] {threshold}"
    return config.threshold_share * threshold, source


# The seed report's mixed INT8 + FP16 row (../shared/REFERENCES.md): compression, loss (points), speedup ranges.
_SEED_MIXED = {"row": "mixed INT8 + FP16", "compression": (2.0, 4.0), "loss": (0.0, 0.7), "speedup": (1.2, 2.0)}


# Both variants keep their layer selections in one cache folder (`quantbench cache` lists and clears it).
MIXED_CACHE_KIND = ("mixed", "mixed-precision layer selection")


def _mixed_bf16_kernel(hardware: Any) -> Kernel:
    """Its int8 Linears are fbgemm's; its bf16 Linears are native only where the CPU has bf16 arithmetic."""
    from quant_impl.methods.kernels import half

    bf16 = half("bf16")(hardware)
    int8 = "fbgemm quantized::linear_dynamic u8 x s8"
    if bf16.kind == "native":
        return Kernel("native", f"{int8} + {bf16.name}")
    return Kernel("simulated", f"{int8} (native) + bf16 Linears emulated: {bf16.name}")
# Its layer choice is judged by accuracy on the labelled calibration split.
_NEEDS_LABELS = ("it picks its half-precision layers by the classification accuracy they recover on the labelled "
                 "calibration split; a label-free criterion (embedding cosine) is not implemented")

@register_method(
    "mixed-int8-bf16",
    MixedPrecisionConfig,
    devices=("cpu",),
    unsupported_reason="its int8 layers are torch.ao dynamic Linears, which have CPU kernels only (fbgemm/qnnpack); "
    "mixed-int8-fp16 is the CUDA variant",
    threshold=0.7,
    # dynamic-int8's int8 Linears or fewer (head and pooler stay FP32): its 20 dB bar holds (measured ~68-72 dB).
    min_sqnr_db=20.0,
    section="4.5",
    precision="mixed",
    seed=_SEED_MIXED,
    order=50,
    cache_kind=MIXED_CACHE_KIND,
    needs_labels=_NEEDS_LABELS,
    kernel=_mixed_bf16_kernel,
)
def _mixed_int8_bf16_transform(baseline: Any, hardware: Hardware, config: MixedPrecisionConfig) -> QuantizedModel:
    """Int8 dynamic Linears, the most accuracy-sensitive ones in bf16 (per-layer analysis on calibration data)."""
    return _mixed(baseline, hardware, config, "mixed-int8-bf16")


@register_method(
    "mixed-int8-fp16",
    MixedPrecisionConfig,
    devices=("cuda",),
    unsupported_reason="it is the CUDA variant (int8 weight-only + fp16); this CPU emulates fp16 matmuls slower "
    "than FP32, so mixed-int8-bf16 is the CPU method",
    threshold=0.7,
    min_sqnr_db=20.0,
    section="4.5",
    precision="mixed",
    seed=_SEED_MIXED,
    order=51,
    cache_kind=MIXED_CACHE_KIND,
    needs_labels=_NEEDS_LABELS,
    kernel=Kernel("simulated", "int8 weights dequantized to fp16 per call + cuBLAS fp16 GEMMs"),
)
def _mixed_int8_fp16_transform(baseline: Any, hardware: Hardware, config: MixedPrecisionConfig) -> QuantizedModel:
    """Int8 weight-only Linears, the most accuracy-sensitive ones in fp16 (per-layer analysis; CUDA)."""
    return _mixed(baseline, hardware, config, "mixed-int8-fp16")
