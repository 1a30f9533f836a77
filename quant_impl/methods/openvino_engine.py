"""``openvino-fp32`` and ``openvino-int8``: the baseline run by OpenVINO's CPU plugin, a peer engine to torch.

``ov.convert_model`` converts the HF classifier directly (no ONNX step) with dynamic batch and sequence axes;
the IR is saved (``model.xml`` + ``model.bin``, FP32 weights: ``compress_to_fp16=False``, since the default halves
them) and compiled from those files, one compiled model per thread count (``PerThreadSessions``, so ``cpu`` and
``cpu-1t`` cells get ``INFERENCE_NUM_THREADS`` = torch's thread count, as the torch methods do). ``openvino-int8``
quantizes the converted model with NNCF post-training quantization (``model_type=TRANSFORMER``, which adds
SmoothQuant and fast bias correction by itself) calibrated on the calibration split. Conversion, calibration and
the first compile count as build time.

Inference precision: on a CPU with avx512_bf16 (or AMX) the plugin runs non-int8 ops in bf16 unless told
otherwise, so ``inference_precision="f32"`` (the default) sets ``INFERENCE_PRECISION_HINT`` to f32, ``"bf16"``
asks for bf16 and ``"default"`` leaves the plugin's choice; settings record the hint, what the compiled model
reports and the plugin's default on this machine.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quant_impl.hardware import Hardware
from quant_impl.methods._common import LogitsModel, example_inputs, fp32_copy
from quant_impl.methods._peers import (
    PEERS_EXTRA, WEIGHT_RANGES, PerThreadSessions, calibration_feed, files_size, numpy_inputs, weight_range, work_dir,
)
from quant_impl.methods.options import check_choice, check_min
from quant_impl.methods.kernels import Kernel
from quant_impl.methods.registry import QuantizedModel, register_method

INFERENCE_PRECISIONS = ("f32", "bf16", "default")
UNSUPPORTED = "only OpenVINO's CPU plugin is measured; its GPU plugin targets Intel GPUs, not CUDA"
DEVICE = "CPU"


@dataclass(frozen=True)
class OpenVinoFp32Config:
    inference_precision: str = "f32"  # INFERENCE_PRECISION_HINT; "default": leave the plugin's choice (bf16 here)
    version: int = 1

    def __post_init__(self) -> None:
        check_choice(self, "inference_precision", INFERENCE_PRECISIONS)


@dataclass(frozen=True)
class OpenVinoInt8Config:
    inference_precision: str = "f32"  # for the ops NNCF leaves in floating point
    calibration_batch_size: int = 32
    # 10 batches = 320 reviews (NNCF's own default is 300 samples); measured on the quick checkpoint: drop 0.00 pt.
    # None: the whole calibration split.
    calibration_batches: int | None = 10
    # 7-bit weights in every layer where the CPU lacks VNNI: NNCF's overflow_fix ENABLE (its default fixes the first
    # layer only). quant_impl.methods._peers.weight_range.
    weight_range: str = "auto"
    version: int = 1

    def __post_init__(self) -> None:
        check_choice(self, "inference_precision", INFERENCE_PRECISIONS)
        check_min(self, 1, "calibration_batch_size", "calibration_batches", may_be_none=("calibration_batches",))
        check_choice(self, "weight_range", WEIGHT_RANGES)


class OpenVinoPredictor:
    """``predictor(input_ids, attention_mask) -> logits`` through the saved IR, one compiled model and infer request
    per thread count; it owns the IR's folder (removed when the predictor is collected)."""

    def __init__(self, precision: str) -> None:
        import openvino as ov

        self.precision = precision
        self.core = ov.Core()
        self.folder = work_dir(self, "openvino")
        self.xml = self.folder / "model.xml"
        self.sessions = PerThreadSessions(self._compile)

    @property
    def files(self) -> list[Path]:
        return [self.xml, self.xml.with_suffix(".bin")]

    def save(self, model: Any) -> None:
        import openvino as ov

        ov.save_model(model, self.xml, compress_to_fp16=False)

    def _compile(self, threads: int) -> tuple[Any, Any]:
        compiled = self.core.compile_model(self.xml, DEVICE, compile_options(threads, self.precision))
        return compiled, compiled.create_infer_request()

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        _compiled, request = self.sessions.get()
        outputs = request.infer(numpy_inputs(input_ids, attention_mask))  # copies the output out of the request
        return torch.from_numpy(np.asarray(outputs[0], dtype=np.float32))

    profiler_name = "OpenVINO PERF_COUNT (per-layer real time)"

    def op_times(self, inputs: tuple[torch.Tensor, torch.Tensor], rounds: int = 5) -> dict[str, float]:
        """Milliseconds per call by op kind (quant_impl.measure.profile) from the plugin's per-layer counters."""
        from quant_impl.measure.profile import op_kind

        times: dict[str, float] = {}
        for layers in self._profiled_calls(inputs, rounds):
            for info in layers:
                kind = op_kind(info.node_type)
                times[kind] = times.get(kind, 0.0) + info.real_time.total_seconds() * 1000 / rounds
        return times

    def kernels(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> dict[str, int]:
        """``layer type: execution type`` -> layers, for one call (e.g. ``FullyConnected: brgemm_avx512_I8``; a
        ``ref`` execution type is the plugin's reference C++ path)."""
        (layers,) = self._profiled_calls(inputs, 1)
        return dict(Counter(f"{info.node_type}: {info.exec_type}" for info in layers))

    def _profiled_calls(self, inputs: tuple[torch.Tensor, torch.Tensor], rounds: int):
        """The executed layers' counters of each of ``rounds`` calls (after one warm call), on a model compiled
        like this one (same threads and precision) with ``PERF_COUNT`` on."""
        import openvino as ov

        options = {**compile_options(torch.get_num_threads(), self.precision), "PERF_COUNT": True}
        request = self.core.compile_model(self.xml, DEVICE, options).create_infer_request()
        feed = numpy_inputs(*inputs)
        request.infer(feed)
        for _ in range(rounds):
            request.infer(feed)
            yield [info for info in request.get_profiling_info() if info.status == ov.ProfilingInfo.Status.EXECUTED]

    def precision_settings(self) -> dict[str, Any]:
        """What was asked for, what the compiled model (for the current thread count) runs, and the default."""
        compiled, _request = self.sessions.get()
        return {
            "inference_precision_hint": self.precision,
            "inference_precision": _type_name(compiled.get_property("INFERENCE_PRECISION_HINT")),
            "plugin_default_precision": _type_name(self.core.get_property(DEVICE, "INFERENCE_PRECISION_HINT")),
            "performance_hint": "LATENCY",
        }


def compile_options(threads: int, precision: str) -> dict[str, Any]:
    options: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision != "default":
        options["INFERENCE_PRECISION_HINT"] = precision
    return options


def _type_name(value: Any) -> str:
    """``ov.Type`` -> ``"f32"``/``"bf16"`` (the property comes back as an ``ov.Type``)."""
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def _convert(baseline: Any) -> Any:
    """The FP32 baseline as an OpenVINO model with dynamic batch and sequence axes."""
    import openvino as ov

    example = example_inputs(baseline)
    with warnings.catch_warnings():
        # The TorchScript trace warns on two Python branches of transformers' masking code (a padding length and
        # is_causal); both are constant for an encoder (kv length = mask length, not causal), so the graph holds
        # for every shape (the tests check other batch sizes and lengths against torch). Nothing else is silenced.
        warnings.filterwarnings("ignore", message=r"Converting a tensor to a Python boolean",
                                category=torch.jit.TracerWarning, module=r"transformers\.")
        model = ov.convert_model(LogitsModel(fp32_copy(baseline)), example_input=example)
    if any(not port.get_partial_shape().is_dynamic for port in model.inputs):
        model.reshape({port.get_any_name(): ov.PartialShape([-1, -1]) for port in model.inputs})
    return model


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _common_settings(predictor: OpenVinoPredictor) -> dict[str, Any]:
    version = _version("openvino")
    return {
        "engine": f"openvino {version} CPU plugin",
        "openvino": version,
        "conversion": "ov.convert_model of the torch module (TorchScript trace, no ONNX), dynamic batch and "
                      "sequence axes",
        "ir_weights_fp16_compressed": False,  # ov.save_model(compress_to_fp16=False): FP32 weights in model.bin
        "files": [path.name for path in predictor.files],
        **predictor.precision_settings(),
    }


@contextlib.contextmanager
def _quiet_nncf():
    """NNCF logs INFO lines and draws rich progress bars on stdout; keep its warnings, drop the rest.

    NNCF has no switch for its bars: they go through rich's console, which writes to whatever ``sys.stdout``
    is at the time, so stdout is captured while quantizing. NNCF's log handler (bound to the real stdout) and
    Python warnings (stderr) still show; its level is WARNING meanwhile and restored after.
    """
    import nncf

    level = nncf.nncf_logger.level
    nncf.set_log_level(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        nncf.set_log_level(level)


@register_method(
    "openvino-fp32",
    OpenVinoFp32Config,
    devices=("cpu",),
    unsupported_reason=UNSUPPORTED,
    threshold=0.1,
    min_sqnr_db=50.0,  # measured on the tiny model: 137 dB with the f32 hint (bf16 hint: 44 dB)
    section="4.5p",
    precision="fp32",
    engine="openvino",
    requires=("openvino",),
    extra=PEERS_EXTRA,
    order=80,
    speed_default=True,
    kernel=Kernel("native", "OpenVINO CPU plugin, oneDNN fp32 (INFERENCE_PRECISION_HINT f32)"),
)
def _openvino_fp32_transform(baseline: Any, hardware: Hardware, config: OpenVinoFp32Config) -> QuantizedModel:
    """The FP32 baseline converted to OpenVINO IR and run by its CPU plugin (FP32 weights)."""
    predictor = OpenVinoPredictor(config.inference_precision)
    predictor.save(_convert(baseline))
    size = files_size(predictor.files, "OpenVINO IR")
    settings = _common_settings(predictor)
    ran = str(settings.get("inference_precision") or "")
    if "bf16" in ran:  # the plugin's bf16 on a CPU with bf16 arithmetic (inference_precision bf16 or default)
        settings["kernel"] = Kernel("native", f"OpenVINO CPU plugin, oneDNN bf16 (INFERENCE_PRECISION_HINT {ran})").as_dict()
    return QuantizedModel("openvino-fp32", hardware.id, predictor, size.bytes, size.note, settings)


@register_method(
    "openvino-int8",
    OpenVinoInt8Config,
    devices=("cpu",),
    unsupported_reason=UNSUPPORTED,
    threshold=1.0,
    min_sqnr_db=25.0,  # measured on the tiny model (16 calibration reviews): 42 dB with the f32 hint
    section="4.5p",
    precision="int8",
    engine="openvino",
    requires=("openvino", "nncf"),
    extra=PEERS_EXTRA,
    order=81,
    speed_default=True,
    main_job=True,
    kernel=Kernel("native", "OpenVINO CPU plugin, oneDNN u8 x s8 from NNCF FakeQuantize"),
    # the ops NNCF leaves in floating point (softmax, layer norm, some MatMuls) in the plugin's default precision:
    # bf16 where the CPU has it
    tunable=({"inference_precision": "default"},),
)
def _openvino_int8_transform(baseline: Any, hardware: Hardware, config: OpenVinoInt8Config) -> QuantizedModel:
    """NNCF post-training int8 (SmoothQuant, fast bias correction) of the OpenVINO IR, run by the CPU plugin."""
    import nncf

    feed = calibration_feed(baseline, config.calibration_batch_size, config.calibration_batches)
    model = _convert(baseline)
    span, why = weight_range(config.weight_range)
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE if span == "reduced" else
                                              OverflowFix.FIRST_LAYER)
    with _quiet_nncf():
        # NNCF counts dataset items, here batches: subset_size = all of them.
        model = nncf.quantize(model, nncf.Dataset(feed), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feed),
                              advanced_parameters=advanced)
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    predictor = OpenVinoPredictor(config.inference_precision)
    predictor.save(model)
    size = files_size(predictor.files, "OpenVINO IR")
    settings = {
        **_common_settings(predictor),
        "nncf": _version("nncf"),
        "quantization": "nncf.quantize post-training, model_type TRANSFORMER, preset mixed (its default there)",
        "weights": "int8 per-channel symmetric",
        "weight_range": f"{span} ({why}; NNCF overflow_fix {'enable' if span == 'reduced' else 'first_layer'})",
        "activations": "int8 per-tensor asymmetric, range = mean of the per-batch min/max",
        "smooth_quant": True,  # applied by NNCF for TRANSFORMER (MatMul alpha 0.95)
        "fast_bias_correction": True,
        "fake_quantize_ops": fake_quantize,
        "calibration_examples": sum(len(batch["input_ids"]) for batch in feed),
        "calibration_batches": len(feed),
    }
    return QuantizedModel("openvino-int8", hardware.id, predictor, size.bytes, size.note, settings)
