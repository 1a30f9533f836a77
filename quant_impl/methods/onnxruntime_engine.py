"""ONNX Runtime as a peer engine: ``ort-fp32``, ``ort-int8-dynamic`` and ``ort-int8-static``.

All three start from the same graph, built the way Optimum's ORTOptimizer builds it:

1. ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``, opset 17) of the FP32 classifier with
   dynamic batch and sequence axes. The copy is exported with eager attention: ORT's BERT fusion recognizes the
   eager softmax(QK^T + mask) pattern, while the SDPA export's boolean mask leaves attention unfused (measured:
   ``Attention: 0`` and ``EmbedLayerNormalization: 0`` with SDPA, every layer fused with eager).
2. ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert", num_heads, hidden_size)``: ORT's basic
   graph optimizations, then the transformer fusions (EmbedLayerNormalization, Attention, SkipLayerNormalization,
   BiasGelu). That graph is ``ort-fp32``.
3. ``ort-int8-dynamic``: ``quantize_dynamic`` of the fused graph (int8 per-channel weights; Attention becomes
   QAttention, MatMul MatMulInteger, the embedding tables QEmbedLayerNormalization). On the fused graph ORT cannot
   type the outputs of its own contrib ops, so ``DefaultTensorType=FLOAT`` is required (else "Unable to find data
   type for weight_name=...MatMul_output_0").
4. ``ort-int8-static``: QDQ ``quantize_static`` calibrated (MinMax) on the calibration split. ORT's plain ONNX
   shape inference cannot type contrib-op outputs either, which leaves their ranges uncalibrated ("Unable to get
   valid quantization scale for input ...pooler/Gather_output_0"); ORT's symbolic shape inference, run on the fused
   graph first, types them. (``quant_pre_process`` fails on these graphs: "Incomplete symbolic shape inference".)
   ORT's QDQ quantizer has no rule for the fused Attention op, so its QKV weights stay FP32 in this graph.
   Defaults chosen on the quick-profile checkpoint (2,000 test reviews, 2 threads, batch 1 / 32 x 128):
   fused graph, MatMul/Gemm only, uint8 activations: drop 0.15 pt, 7.4 / 202 ms, 66.7 MB. Quantizing ORT's whole
   op list (embedding tables and their LayerNorm included): 0.60 pt, 9.1 / 210 ms, 30.9 MB; the graph fused
   without Attention (QKV MatMuls quantized too): 0.25 pt, 8.6 / 206 ms, 58.9 MB; int8 activations: 0.25 pt,
   13.2 / 277 ms. (``quantize_dynamic``: 0.20 pt, 5.7 / 177 ms, 23.0 MB.)

Each built model runs an ``InferenceSession`` on the CPUExecutionProvider, one per ``torch.get_num_threads()``
(``PerThreadSessions``), so the ``cpu`` and ``cpu-1t`` cells use the same thread counts as the torch methods.
Size is the bytes of the final ``.onnx`` file (plus external data files, if any). Build time covers export,
fusion, calibration and quantization.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from quant_impl.hardware import Hardware
from quant_impl.methods._common import LogitsModel, check_attention, example_inputs, fp32_copy, set_attention
from quant_impl.methods._peers import (
    EXPORT_BATCH, PEERS_EXTRA, PerThreadSessions, calibration_feed, files_size, numpy_inputs, WEIGHT_RANGES,
    weight_range, work_dir,
)
from quant_impl.methods.options import check_bool, check_choice, check_min
from quant_impl.methods.kernels import Kernel
from quant_impl.methods.registry import QuantizedModel, register_method

_UNSUPPORTED = (
    "only ONNX Runtime's CPUExecutionProvider is measured; the CUDA (and TensorRT) execution providers need the "
    "onnxruntime-gpu package and are not benchmarked"
)
_REQUIRES = ("onnx", "onnxruntime")
OPSETS = tuple(range(14, 21))  # the TorchScript exporter's range that ORT's fusions are tested with
SESSION_LEVELS = ("all", "extended", "basic", "disable")
ACTIVATION_TYPES = ("uint8", "int8")
STATIC_GRAPHS = ("fused", "fused-without-attention", "unfused")
STATIC_OPS = ("matmul", "default")
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
MODEL_FILE = "model.onnx"
# Exactly the export warnings that are noise for this graph; nothing else is silenced.
_EXPORT_NOISE = (
    # dynamo=False is a deliberate choice (the fusions are written against the TorchScript exporter's graphs).
    (DeprecationWarning, r"You are using the legacy TorchScript-based ONNX export", ""),
    (DeprecationWarning, r"The feature will be removed", r"torch\.onnx"),
    # transformers' mask builder compares the mask length with the input length: the same dynamic axis here.
    (torch.jit.TracerWarning, r"Converting a tensor to a Python boolean", r"transformers\.masking_utils"),
    # the mask builder indexes with aranges, never negative indices.
    (UserWarning, r"Exporting aten::index operator of advanced indexing", ""),
)
# ORT's quantizers log this advice on the root logger; its tool (quant_pre_process) fails on these graphs.
_QUANTIZER_NOISE = ("Please consider to run pre-processing", "Please consider pre-processing")


@dataclass(frozen=True)
class OrtFp32Config:
    opset: int = 17
    attention: str = "eager"  # how the copy's attention is exported: eager fuses into ORT's Attention op
    fuse: bool = True  # ORT's transformer fusions (optimize_model, model_type "bert")
    session_optimization: str = "all"  # the InferenceSession's graph_optimization_level
    spinning: bool = False  # session.intra_op.allow_spinning (see OrtPredictor)
    version: int = 1

    def __post_init__(self) -> None:
        _check_export_fields(self)


@dataclass(frozen=True)
class OrtInt8DynamicConfig:
    per_channel: bool = True
    weight_range: str = "auto"  # 7-bit weights where the CPU lacks VNNI (quant_impl.methods._peers.weight_range)
    opset: int = 17
    attention: str = "eager"
    session_optimization: str = "all"
    spinning: bool = False
    version: int = 1

    def __post_init__(self) -> None:
        _check_export_fields(self)


@dataclass(frozen=True)
class OrtInt8StaticConfig:
    calibration_batch_size: int = 32
    calibration_batches: int | None = 10  # None: the whole calibration split
    per_channel: bool = True
    weight_range: str = "auto"  # 7-bit weights where the CPU lacks VNNI (quant_impl.methods._peers.weight_range)
    activation_type: str = "uint8"  # u8 activations x s8 weights: the VNNI kernels' native pair
    graph: str = "fused"  # what is quantized: the fused graph, it without Attention fusion, or the raw export
    quantize_ops: str = "matmul"  # "matmul": MatMul/Gemm (and their inputs); "default": ORT's whole op list
    opset: int = 17
    attention: str = "eager"
    session_optimization: str = "all"
    spinning: bool = False
    version: int = 1

    def __post_init__(self) -> None:
        _check_export_fields(self)
        check_min(self, 1, "calibration_batch_size", "calibration_batches", may_be_none=("calibration_batches",))
        check_choice(self, "activation_type", ACTIVATION_TYPES)
        check_choice(self, "graph", STATIC_GRAPHS)
        check_choice(self, "quantize_ops", STATIC_OPS)


def _check_export_fields(config: Any) -> None:
    check_choice(config, "opset", OPSETS)
    check_attention(config)
    check_choice(config, "session_optimization", SESSION_LEVELS)
    check_bool(config, *(field for field in ("per_channel", "spinning", "fuse") if hasattr(config, field)))
    if hasattr(config, "weight_range"):
        check_choice(config, "weight_range", WEIGHT_RANGES)


class OrtPredictor:
    """``predict(input_ids, attention_mask) -> logits`` over one ONNX file: an InferenceSession on the
    CPUExecutionProvider per torch thread count (``sessions``). It owns the folder its files live in
    (``folder``, removed when the predictor is collected); ``files`` are the ones a deployment ships.

    ``spinning``: ORT's intra-op workers busy-wait for work after each run by default. The benchmark interleaves
    methods in one process on few cores, so spinning workers steal the CPU from whatever runs next (measured,
    2 threads, batch 1: PT2E static-int8 5.9 ms next to a non-spinning ORT session, 9.6 ms next to a spinning
    one, while spinning gained ORT itself 0.2 ms); they are off unless a config turns them on.
    """

    def __init__(self, config: Any) -> None:
        self.folder = work_dir(self, "ort")
        self.files: list[Path] = []
        self.session_optimization: str = config.session_optimization
        self.spinning: bool = config.spinning
        self.sessions = PerThreadSessions(self._session)

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_FILE

    def _session(self, threads: int, profile_prefix: str | None = None) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = _session_level(self.session_optimization)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        return ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        (logits,) = self.sessions.get().run([OUTPUT_NAME], numpy_inputs(input_ids, attention_mask))
        return torch.from_numpy(logits)

    profiler_name = "ONNX Runtime profiling (per-node kernel time)"

    def op_times(self, inputs: tuple[torch.Tensor, torch.Tensor], rounds: int = 5) -> dict[str, float]:
        """Milliseconds per call by op kind (quant_impl.measure.profile) from ORT's per-node kernel times."""
        from quant_impl.measure.profile import op_kind

        times: dict[str, float] = {}
        for op, _provider, micros in self._profiled_nodes(inputs, rounds):
            times[op_kind(op)] = times.get(op_kind(op), 0.0) + micros / 1000 / rounds
        return times

    def kernels(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> dict[str, int]:
        """``op type (execution provider)`` -> nodes run in one call: ORT names its contrib ops (``MatMulInteger``,
        ``DynamicQuantizeMatMul``, ``Attention``), not the MLAS kernel it picked by cpuid inside them."""
        return dict(Counter(f"{op} ({provider.removesuffix('ExecutionProvider')})"
                            for op, provider, _micros in self._profiled_nodes(inputs, 1)))

    def _profiled_nodes(self, inputs: tuple[torch.Tensor, torch.Tensor], rounds: int) -> list[tuple[str, str, float]]:
        """(op type, provider, microseconds) of every node of ``rounds`` calls after one warm call, from a session
        made like this one with profiling on (its trace file goes with the predictor's folder)."""
        session = self._session(torch.get_num_threads(), str(self.folder / "profile"))
        feed = numpy_inputs(*inputs)
        for _ in range(rounds + 1):
            session.run([OUTPUT_NAME], feed)
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text(encoding="utf-8"))
        trace.unlink()
        runs = sorted((event["ts"], event["ts"] + event["dur"]) for event in events
                      if event.get("cat") == "Session" and event.get("name") == "model_run")
        timed = runs[1:]  # the first run is the warm one
        return [(event["args"]["op_name"], event["args"].get("provider", "?"), float(event["dur"]))
                for event in events
                if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time")
                and any(start <= event["ts"] <= end for start, end in timed)]


def _session_level(name: str) -> Any:
    import onnxruntime as ort

    levels = ort.GraphOptimizationLevel
    return {"all": levels.ORT_ENABLE_ALL, "extended": levels.ORT_ENABLE_EXTENDED, "basic": levels.ORT_ENABLE_BASIC,
            "disable": levels.ORT_DISABLE_ALL}[name]


def _export(baseline: Any, path: Path, config: Any) -> dict[str, Any]:
    """The FP32 classifier as ONNX with dynamic batch and sequence axes (TorchScript exporter)."""
    model = fp32_copy(baseline)
    set_attention(model, config.attention)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            OUTPUT_NAME: {0: "batch"}}
    with warnings.catch_warnings():
        for category, message, module in _EXPORT_NOISE:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)
        torch.onnx.export(
            LogitsModel(model), example_inputs(baseline, EXPORT_BATCH), str(path), input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=config.opset, dynamo=False,
        )
    return {"exporter": "torch.onnx.export (TorchScript, dynamo=False)", "opset": config.opset,
            "attention_export": config.attention, "dynamic_axes": "batch, sequence"}


def _fuse(baseline: Any, source: Path, target: Path, attention: bool = True) -> dict[str, Any]:
    """ORT's transformer fusions (what Optimum's ORTOptimizer runs), saved to ``target``; the fused op counts."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model_config = baseline.model.config
    heads = int(getattr(model_config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(model_config, "hidden_size", 0) or 0)
    options = FusionOptions("bert")
    options.enable_attention = attention
    optimizer = optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden,
                               optimization_options=options, opt_level=1)
    optimizer.save_model_to_file(str(target), use_external_data_format=False)
    fused = {op: count for op, count in optimizer.get_fused_operator_statistics().items() if count}
    return {"tool": "onnxruntime.transformers.optimizer.optimize_model", "model_type": "bert", "opt_level": 1,
            "num_heads": heads, "hidden_size": hidden, "attention_fusion": attention, "fused_ops": fused}


def _export_and_fuse(baseline: Any, predictor: OrtPredictor, config: Any, target: Path | None = None,
                     fuse: bool = True, attention: bool = True) -> tuple[Path, dict[str, Any]]:
    """Export, then (when ``fuse``) fuse: the graph's path and what was done, for the settings."""
    raw = predictor.folder / "exported.onnx"
    export = _export(baseline, raw, config)
    if not fuse:
        if target is not None:
            raw.replace(target)
            return target, {"export": export, "fusion": None}
        return raw, {"export": export, "fusion": None}
    fused = target or predictor.folder / "fused.onnx"
    fusion = _fuse(baseline, raw, fused, attention)
    raw.unlink()
    return fused, {"export": export, "fusion": fusion}


def _ship(predictor: OrtPredictor, scratch: list[Path]) -> Any:
    """Remove the intermediate graphs, record the shipped files (the model and any external data) and size them."""
    import onnx

    for path in scratch:
        if path != predictor.model_path:
            path.unlink(missing_ok=True)
    model = onnx.load(str(predictor.model_path), load_external_data=False)
    external = sorted({entry.value for tensor in model.graph.initializer for entry in tensor.external_data
                       if entry.key == "location"})
    predictor.files = [predictor.model_path, *(predictor.folder / name for name in external)]
    return files_size(predictor.files, "ONNX")


def _engine_settings(predictor: OrtPredictor) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort

    return {
        "engine": f"onnxruntime {ort.__version__} CPUExecutionProvider",
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "session": {
            "graph_optimization_level": str(_session_level(predictor.session_optimization)).rsplit(".", 1)[-1],
            "intra_op_num_threads": "torch.get_num_threads() at call time (one session per thread count)",
            "inter_op_num_threads": 1,
            "execution_mode": "sequential",
            "intra_op_allow_spinning": predictor.spinning,
        },
        "files": [path.name for path in predictor.files],
    }


def weight_summary(path: Path) -> dict[str, Any]:
    """What a quantizer did to an ONNX graph: the op types whose weights (initializers of rank >= 1 that feed a
    node directly or through DequantizeLinear) are int8/uint8 vs still float, and its quantized op counts."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    int8 = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    quantized: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    for name, tensor in initializers.items():
        if len(tensor.dims) < 2:  # biases, scales, zero points, LayerNorm parameters
            continue
        users = []
        for node in consumers.get(name, []):
            if node.op_type == "DequantizeLinear":
                users += [user.op_type for user in consumers.get(node.output[0], [])]
            else:
                users.append(node.op_type)
        for op_type in set(users):
            if tensor.data_type in int8:
                quantized[op_type] += 1
            elif tensor.data_type in floats:
                kept[op_type] += 1
    ops = Counter(node.op_type for node in graph.node)
    quantized_ops = {op: n for op, n in sorted(ops.items())
                     if op.startswith("Q") or op in ("MatMulInteger", "DynamicQuantizeLinear", "DequantizeLinear",
                                                     "MatMulIntegerToFloat")}
    return {"int8_weights_by_op": dict(sorted(quantized.items())), "float_weights_by_op": dict(sorted(kept.items())),
            "quantized_ops": quantized_ops}


@contextlib.contextmanager
def _quiet_quantizer_advice() -> Iterator[None]:
    """Drop only ORT's "consider pre-processing" advice from the root logger while a quantizer runs."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_QUANTIZER_NOISE)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


# What every ONNX Runtime method's registration shares.
_PEER = dict(devices=("cpu",), unsupported_reason=_UNSUPPORTED, section="4.5p", engine="onnxruntime",
             requires=_REQUIRES, extra=PEERS_EXTRA)


@register_method(
    "ort-fp32",
    OrtFp32Config,
    **_PEER,
    threshold=0.1,
    min_sqnr_db=60.0,  # the same FP32 arithmetic, reordered by fusion: measured ~130 dB on the tiny model
    precision="fp32",
    order=70,
    speed_default=True,
    kernel=Kernel("native", "ONNX Runtime CPU EP, MLAS fp32 GEMM"),
)
def _ort_fp32_transform(baseline: Any, hardware: Hardware, config: OrtFp32Config) -> QuantizedModel:
    """The FP32 classifier exported to ONNX and fused by ONNX Runtime's transformer optimizer."""
    predictor = OrtPredictor(config)
    path, graph = _export_and_fuse(baseline, predictor, config, target=predictor.model_path, fuse=config.fuse)
    size = _ship(predictor, [path])
    settings = {**_engine_settings(predictor), **graph}
    return QuantizedModel("ort-fp32", hardware.id, predictor, size.bytes, size.note, settings)


@register_method(
    "ort-int8-dynamic",
    OrtInt8DynamicConfig,
    **_PEER,
    threshold=1.0,
    # measured ~46-49 dB on the tiny model (int8 per-channel weights incl. the embedding tables, u8 activations)
    min_sqnr_db=30.0,
    precision="int8",
    order=71,
    speed_default=True,
    main_job=True,
    kernel=Kernel("native", "ONNX Runtime CPU EP, MLAS int8 GEMM (DynamicQuantizeLinear + MatMulInteger)"),
    # per-tensor weights: fewer scales, coarser weights
    tunable=({"per_channel": False},),
)
def _ort_int8_dynamic_transform(baseline: Any, hardware: Hardware, config: OrtInt8DynamicConfig) -> QuantizedModel:
    """ORT quantize_dynamic of the fused graph: int8 weights, activations quantized per batch at run time."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    predictor = OrtPredictor(config)
    fused, graph = _export_and_fuse(baseline, predictor, config)
    span, why = weight_range(config.weight_range)
    with _quiet_quantizer_advice():
        quantize_dynamic(
            str(fused), str(predictor.model_path), weight_type=QuantType.QInt8, per_channel=config.per_channel,
            reduce_range=span == "reduced",
            # the fused graph's contrib-op outputs have no inferred type; without this: "Unable to find data type"
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    size = _ship(predictor, [fused])
    settings = {
        **_engine_settings(predictor),
        "weights": f"int8 {'per-channel' if config.per_channel else 'per-tensor'} symmetric",
        "weight_range": f"{span} ({why})",
        "activations": "uint8 per-tensor, dynamic (DynamicQuantizeLinear per batch)",
        "quantizer": "onnxruntime.quantization.quantize_dynamic (QOperator: QAttention, MatMulInteger, "
                     "QEmbedLayerNormalization)",
        "quantized": weight_summary(predictor.model_path),
        **graph,
    }
    return QuantizedModel("ort-int8-dynamic", hardware.id, predictor, size.bytes, size.note, settings)


@register_method(
    "ort-int8-static",
    OrtInt8StaticConfig,
    **_PEER,
    threshold=1.0,
    # measured ~42 dB on the tiny model (QDQ: u8 per-tensor activations with MinMax ranges, int8 weights)
    min_sqnr_db=30.0,
    precision="int8",
    order=72,
    speed_default=True,
    kernel=Kernel("native", "ONNX Runtime CPU EP, MLAS int8 QLinearMatMul/QGemm from QDQ"),
)
def _ort_int8_static_transform(baseline: Any, hardware: Hardware, config: OrtInt8StaticConfig) -> QuantizedModel:
    """ORT quantize_static (QDQ) of the fused graph, activation ranges calibrated (MinMax) on the calibration split."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    feed = calibration_feed(baseline, config.calibration_batch_size, config.calibration_batches)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(feed)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._batches, None)

    predictor = OrtPredictor(config)
    source, graph = _export_and_fuse(baseline, predictor, config, fuse=config.graph != "unfused",
                                     attention=config.graph == "fused")
    # ORT's symbolic shape inference types the contrib ops' outputs (plain ONNX inference cannot), so their
    # activations get calibrated ranges.
    typed = predictor.folder / "typed.onnx"
    onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(source)), auto_merge=True), str(typed))
    activation = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[config.activation_type]
    op_types = ["MatMul", "Gemm"] if config.quantize_ops == "matmul" else None
    span, why = weight_range(config.weight_range)
    with _quiet_quantizer_advice():
        quantize_static(
            str(typed), str(predictor.model_path), Reader(), quant_format=QuantFormat.QDQ,
            per_channel=config.per_channel, reduce_range=span == "reduced", activation_type=activation,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=op_types,
        )
    size = _ship(predictor, [source, typed])
    settings = {
        **_engine_settings(predictor),
        "weights": f"int8 {'per-channel' if config.per_channel else 'per-tensor'} symmetric",
        "weight_range": f"{span} ({why})",
        "activations": f"{config.activation_type} per-tensor, MinMax ranges from calibration",
        "quantizer": "onnxruntime.quantization.quantize_static (QDQ; the session fuses Q/DQ pairs into int8 kernels)",
        "quantized_op_types": op_types or "onnxruntime default list",
        "graph_quantized": {"fused": "fused graph (symbolic shape inference first)",
                            "fused-without-attention": "fused graph without Attention fusion (QKV MatMuls stay "
                                                       "MatMul and are quantized)",
                            "unfused": "raw export"}[config.graph],
        "calibration_examples": sum(len(batch["input_ids"]) for batch in feed),
        "quantized": weight_summary(predictor.model_path),
        **graph,
    }
    return QuantizedModel("ort-int8-static", hardware.id, predictor, size.bytes, size.note, settings)
