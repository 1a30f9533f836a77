"""Each PT2E int8 method is what its name says, checked on the graph it converts (the tiny model):

- static-int8: every Linear reads an activation quantized with a fixed scale (a constant in the graph, no
  run-time qparams), and those scales are the ranges the calibration batches produced;
- dynamic-int8: every Linear reads an activation quantized with qparams computed from the batch at hand;
- qat-int8: the trained state moved the weights away from FP32 and its fake-quant observers saw data.
Both int8 flavours keep weights as int8 constants with per-channel scales. A weight-only int8, a static graph
with uncalibrated scales or a QAT that skipped training fail these (see test_checks_catch_broken_builds).
"""

from __future__ import annotations

import dataclasses
import operator
from collections import defaultdict
from typing import Any

import pytest
import torch

from quant_impl.hardware import get_hardware
from quant_impl.measure.cpu_class import CPU_CLASSES, INT8_DOT_CLASSES
from quant_impl.measure.machine import FORCE_CPU_CLASS_ENV, detected_cpu_class
from quant_impl.methods._pt2e_build import activation_range
from quant_impl.methods import apply
from quant_impl.methods import _pt2e
from quant_impl.methods._common import ATTENTIONS, LogitsModel, calibration_batches, example_inputs, fp32_copy, set_attention
from quant_impl.methods.dynamic_int8 import DynamicInt8Config
from quant_impl.methods.qat_int8 import QatInt8Config
from quant_impl.methods.static_int8 import StaticInt8Config

QD = torch.ops.quantized_decomposed
LINEAR = torch.ops.aten.linear.default
FUSED_QUANTIZED = "quantbench.bf16_attention_quantized"  # registered on first use (quant_impl.methods.fused_attention)
UINT8_RANGE = 255
REDUCED_RANGE = 127  # 7-bit activations on CPUs without int8 dot products


def _producer(node: torch.fx.Node, *targets: Any) -> torch.fx.Node | None:
    """The node feeding ``node`` if its target is one of ``targets`` (through no other op)."""
    return node if isinstance(node, torch.fx.Node) and node.target in targets else None


def linear_inputs(graph: torch.fx.GraphModule) -> list[tuple[torch.fx.Node, torch.fx.Node]]:
    """(activation arg, weight arg) of every Linear in the converted graph."""
    return [(n.args[0], n.args[1]) for n in graph.graph.nodes if n.op == "call_function" and n.target is LINEAR]


def weight_is_int8_per_channel(graph: torch.fx.GraphModule, weight: torch.fx.Node) -> bool:
    dq = _producer(weight, QD.dequantize_per_channel.default)
    if dq is None or dq.args[0].op != "get_attr":
        return False
    return getattr(graph, dq.args[0].target).dtype == torch.int8


def static_activation(node: torch.fx.Node) -> torch.fx.Node | None:
    """The quantize node of a fixed-scale (static) activation feeding a Linear, else None. With
    attention="fused-bf16" the attention kernel quantizes its own output (scale and zero point are its args 5 and 6)
    and that node counts."""
    dq = _producer(node, QD.dequantize_per_tensor.default)
    if dq is None:
        return None
    source = dq.args[0]
    if source.target is torch.ops.aten.flatten.using_ints and FUSED_QUANTIZED in str(source.args[0].target):
        return source.args[0] if isinstance(source.args[0].args[5], float) else None
    q = _producer(source, QD.quantize_per_tensor.default)
    return q if q is not None and isinstance(q.args[1], float) else None


def activation_scale(quantizer: torch.fx.Node) -> float:
    """The scale of a node :func:`static_activation` returned (the fused attention kernel holds it in args[5])."""
    return quantizer.args[5] if FUSED_QUANTIZED in str(quantizer.target) else quantizer.args[1]


def dynamic_activation(node: torch.fx.Node) -> torch.fx.Node | None:
    """The choose_qparams node of a per-batch (dynamic) activation feeding a Linear, else None."""
    dq = _producer(node, QD.dequantize_per_tensor.tensor)
    q = _producer(dq.args[0], QD.quantize_per_tensor.tensor) if dq is not None else None
    scale = q.args[1] if q is not None else None
    chooser = scale.args[0] if isinstance(scale, torch.fx.Node) and scale.target is operator.getitem else scale
    return _producer(chooser, QD.choose_qparams.tensor)


def check_static(graph: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """Assert the static-int8 property; return the activation quantize nodes."""
    pairs = linear_inputs(graph)
    assert pairs, "no Linear left in the graph"
    quantizers = [static_activation(activation) for activation, _ in pairs]
    assert all(quantizers), f"{quantizers.count(None)} of {len(pairs)} Linears read an activation that is not " \
                            "statically quantized (weight-only int8?)"
    assert all(weight_is_int8_per_channel(graph, w) for _, w in pairs), "a Linear weight is not int8 per-channel"
    assert not any(n.target is QD.choose_qparams.tensor for n in graph.graph.nodes), "run-time qparams in static"
    return quantizers


def check_dynamic(graph: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """Assert the dynamic-int8 property; return the choose_qparams nodes."""
    pairs = linear_inputs(graph)
    assert pairs, "no Linear left in the graph"
    choosers = [dynamic_activation(activation) for activation, _ in pairs]
    assert all(choosers), f"{choosers.count(None)} of {len(pairs)} Linears read an activation without per-batch qparams"
    assert all(weight_is_int8_per_channel(graph, w) for _, w in pairs), "a Linear weight is not int8 per-channel"
    return choosers


def recorded_inputs(graph: torch.fx.GraphModule, nodes: list[torch.fx.Node], batches) -> dict[str, list]:
    """Run ``graph`` eagerly on ``batches`` and record, per node in ``nodes``, its first input (min, max) and its
    output."""
    names = {n.name for n in nodes}
    seen: dict[str, list] = defaultdict(list)

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            out = super().run_node(n)
            if n.name in names:
                x = self.env[n.args[0]]
                seen[n.name].append((float(x.min()), float(x.max()), out))
            return out

    with torch.no_grad():
        for input_ids, attention_mask in batches:
            Recorder(graph).run(input_ids, attention_mask)
    return seen


@pytest.fixture(scope="module")
def minmax_static(tiny_baseline):
    """static-int8 with the min/max observer, whose scales must equal the calibration ranges exactly. On sdpa, so
    every activation quantizer is a node whose input the recorder can see (test_fused_attention checks that the
    fused kernel keeps the same scales)."""
    return apply("static-int8", tiny_baseline, get_hardware("cpu"), StaticInt8Config(observer="minmax", attention="sdpa"))


def check_calibrated(graph: torch.fx.GraphModule, feed: list, levels: int = UINT8_RANGE) -> None:
    """Assert each static activation scale is the min/max range that ``feed`` (the calibration batches) produces,
    over ``levels`` steps (255; 127 for 7-bit activations)."""
    quantizers = check_static(graph)
    seen = recorded_inputs(graph, quantizers, feed)
    for q in quantizers:
        scale, zero_point = q.args[1], q.args[2]
        low = min(lo for lo, _, _ in seen[q.name])
        high = max(hi for _, hi, _ in seen[q.name])
        # MinMaxObserver (uint8 affine): scale = (max(high, 0) - min(low, 0)) / 255. The converted graph feeds each
        # quantizer the output of earlier int8 layers, so its range is within a few steps of what FP32 showed.
        observed = (max(high, 0.0) - min(low, 0.0)) / levels
        assert scale == pytest.approx(observed, rel=0.1), \
            f"{q.name}: scale {scale} but calibration range / {levels} = {observed}"
        assert 0 <= zero_point <= levels


def check_trained(state: dict[str, torch.Tensor], baseline: Any) -> None:
    """Assert a QAT state moved every Linear weight off its FP32 value and has observed activation ranges."""
    fp32 = dict(baseline.model.named_parameters())
    moved = compared = 0
    for name, tensor in state.items():
        original = fp32.get(name.removeprefix("model."))
        if original is not None and name.endswith(".weight") and original.dim() == 2 and "embeddings" not in name:
            compared += 1
            moved += not torch.equal(original.detach(), tensor)
    assert compared >= 4, f"no Linear weights matched between the QAT state and the baseline: {list(state)[:8]}"
    assert moved == compared, f"training left {compared - moved} of {compared} Linear weights at their FP32 values"
    ranges = [(state[k], state[k.replace("min_val", "max_val")]) for k in state if k.endswith("min_val")]
    assert ranges, f"no observer ranges in the QAT state: {list(state)[:8]}"
    assert all(torch.isfinite(lo).all() and torch.isfinite(hi).all() and (hi > lo).all() for lo, hi in ranges), \
        "an observer never saw data"


def _feed(baseline: Any) -> list:
    config = StaticInt8Config(observer="minmax")
    return list(calibration_batches(baseline, config.calibration_batch_size, config.calibration_batches))


def _levels(built: Any) -> int:
    return {"full": UINT8_RANGE, "reduced": REDUCED_RANGE}[built.settings["activation_range"]]


def test_static_int8_quantizes_activations_with_fixed_calibrated_scales(minmax_static, tiny_baseline) -> None:
    check_calibrated(minmax_static.module, _feed(tiny_baseline), _levels(minmax_static))


@pytest.mark.parametrize("span, levels", [("full", UINT8_RANGE), ("reduced", REDUCED_RANGE)])
def test_activation_range_reaches_the_graph(span: str, levels: int, tiny_baseline) -> None:
    built = apply("static-int8", tiny_baseline, get_hardware("cpu"),
                  StaticInt8Config(observer="minmax", attention="sdpa", activation_range=span))
    assert built.settings["activation_range"] == span and ("7-bit" in built.settings["activations"]) == (span == "reduced")
    check_calibrated(built.module, _feed(tiny_baseline), levels)


@pytest.mark.parametrize("forced, expected", [("avx2", "reduced"), ("avx512", "reduced"), ("pre-avx2", "reduced")])
def test_auto_activation_range_follows_the_forced_cpu_class(forced: str, expected: str, monkeypatch) -> None:
    """QUANTBENCH_CPU_CLASS takes VNNI away on any machine, so the AVX2 path is tested on AVX-512 VMs too."""
    detected = detected_cpu_class()
    if detected is None or CPU_CLASSES.index(forced) < CPU_CLASSES.index(detected):
        pytest.skip(f"this {detected} CPU cannot run as {forced}")
    monkeypatch.setenv(FORCE_CPU_CLASS_ENV, forced)
    assert activation_range(StaticInt8Config()) == expected
    assert activation_range(StaticInt8Config(activation_range="full")) == "full"  # asked for: never overridden


def test_auto_activation_range_is_full_only_with_int8_dot_products(monkeypatch) -> None:
    monkeypatch.delenv(FORCE_CPU_CLASS_ENV, raising=False)
    assert activation_range(StaticInt8Config()) == ("full" if detected_cpu_class() in INT8_DOT_CLASSES else "reduced")


def test_dynamic_int8_computes_qparams_per_batch(built_on_cpu, tiny_baseline) -> None:
    graph = built_on_cpu("dynamic-int8").module
    choosers = check_dynamic(graph)
    rows = tiny_baseline.data["test"]
    short = rows[:4]
    other = rows[len(rows) - 4 :]
    scales = []
    for batch in ((short["input_ids"], short["attention_mask"]), (other["input_ids"], other["attention_mask"])):
        seen = recorded_inputs(graph, choosers[:1], [batch])
        (_low, _high, (scale, _zero_point)), = seen[choosers[0].name]
        scales.append(float(scale))
    # the first Linear's input is the embedding LayerNorm output; two different batches have different ranges
    assert scales[0] != scales[1]


def test_static_int8_build_has_no_dynamic_qparams_and_default_observer_is_narrower(built_on_cpu, minmax_static):
    """The default (histogram) build is static too, and its scales are not the min/max ones: the observer
    setting reaches the graph."""
    histogram = check_static(built_on_cpu("static-int8").module)
    minmax = check_static(minmax_static.module)
    assert len(histogram) == len(minmax)
    pairs = [(activation_scale(h), activation_scale(m)) for h, m in zip(histogram, minmax)]
    assert sum(h <= m * (1 + 1e-6) for h, m in pairs) >= len(minmax) // 2
    assert any(h != m for h, m in pairs)


def test_qat_int8_training_moved_weights_and_observers(built_on_cpu, tiny_baseline) -> None:
    built = built_on_cpu("qat-int8")
    check_static(built.module)  # converted QAT is a static int8 graph
    check_trained(torch.load(built.settings["qat_state"], weights_only=True), tiny_baseline)


def _converted(baseline: Any, quantizer: Any, feed: list = (), untrained_qat: bool = False) -> Any:
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    model = LogitsModel(fp32_copy(baseline))
    example = example_inputs(baseline)
    graph = _pt2e.export(model, example)
    if untrained_qat:
        return prepare_qat_pt2e(graph, quantizer).state_dict()
    return _pt2e.quantize(graph, quantizer, feed=feed)


def test_checks_catch_broken_builds(tiny_baseline) -> None:
    """Deliberate breaks: each check above fails on the build it exists to reject."""
    feed = _feed(tiny_baseline)
    # static-int8 turned weight-only: int8 weights, FP32 activations
    weight_only = _pt2e.x86_quantizer()
    weight_only.global_config = dataclasses.replace(weight_only.global_config, input_activation=None,
                                                    output_activation=None)
    with pytest.raises(AssertionError, match="not statically quantized"):
        check_static(_converted(tiny_baseline, weight_only, feed))
    # static-int8 converted without calibration: scales are the observers' defaults, not the data's ranges
    with pytest.raises(AssertionError, match="calibration range"):
        check_calibrated(_converted(tiny_baseline, _pt2e.x86_quantizer(), feed=[]), feed)
    # a dynamic-int8 that became static, and a static that became dynamic
    with pytest.raises(AssertionError, match="per-batch qparams"):
        check_dynamic(_converted(tiny_baseline, _pt2e.x86_quantizer(), feed))
    with pytest.raises(AssertionError, match="not statically quantized"):
        check_static(_converted(tiny_baseline, _pt2e.x86_quantizer(is_dynamic=True), feed[:1]))
    # qat-int8 that skipped training: the prepared state, untouched
    with pytest.raises(AssertionError, match="FP32 values|never saw data"):
        check_trained(_converted(tiny_baseline, _pt2e.x86_quantizer(is_qat=True), untrained_qat=True), tiny_baseline)


@pytest.mark.parametrize("config_cls", [StaticInt8Config, DynamicInt8Config, QatInt8Config])
def test_attention_option_is_checked(config_cls) -> None:
    with pytest.raises(ValueError, match=rf"{config_cls.__name__}\.attention must be one of"):
        config_cls(attention="flash")


@pytest.mark.parametrize("config_cls", [StaticInt8Config, DynamicInt8Config, QatInt8Config])
def test_shared_options_are_one_definition_checked_when_the_config_is_made(config_cls) -> None:
    """quantize_embedding from a TOML string must fail when the config is made, not half-way through a build."""
    from quant_impl.methods._pt2e_build import Pt2eOptions

    with pytest.raises(ValueError, match=rf"{config_cls.__name__}\.quantize_embedding must be true or false, got 'yes'"):
        config_cls(quantize_embedding="yes")
    names = [f.name for f in dataclasses.fields(config_cls)]
    shared = [f.name for f in dataclasses.fields(Pt2eOptions)]
    assert names[:len(shared)] == shared and names[-1] == "version"
    assert (config_cls().quantize_embedding, config_cls().attention, config_cls().activation_range,
            config_cls().version) == (True, "auto", "auto", 1)


@pytest.mark.parametrize("config_cls,options,message", [
    (StaticInt8Config, {"observer": "x"}, r"StaticInt8Config\.observer must be one of \('histogram', 'minmax'\), got 'x'"),
    (StaticInt8Config, {"calibration_batches": 0}, r"calibration_batches must be >= 1 .*got 32 and 0"),
    (DynamicInt8Config, {"engine": "onnx"}, r"DynamicInt8Config\.engine must be one of \('pt2e', 'torch-ao'\), got 'onnx'"),
    (QatInt8Config, {"learning_rate": 0.0}, r"QatInt8Config\.learning_rate must be a number > 0, got 0\.0"),
    (QatInt8Config, {"epochs": True}, r"QatInt8Config\.epochs must be >= 1 \(a whole number\), got True"),
    (QatInt8Config, {"train_size": 0}, r"QatInt8Config\.train_size must be >= 1 \(a whole number, or None\), got 0"),
], ids=["observer", "calibration", "engine", "learning-rate", "epochs", "train-size"])
def test_own_options_name_the_field_the_choices_and_the_value(config_cls, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        config_cls(**options)


def test_attention_option_reaches_the_graph(tiny_baseline) -> None:
    """sdpa keeps one attention op per layer; eager leaves two matmuls per layer (float: the x86 quantizer's
    matmul annotation does not reach them through the transposes, and this CPU has no int8 attention kernel)."""
    layers = tiny_baseline.model.config.num_hidden_layers
    graphs = {}
    for attention in ATTENTIONS:
        model = fp32_copy(tiny_baseline)
        set_attention(model, attention)
        graphs[attention] = _pt2e.quantize(_pt2e.export(LogitsModel(model), example_inputs(tiny_baseline)),
                                           _pt2e.x86_quantizer(), feed=_feed(tiny_baseline))
    targets = {a: [n.target for n in g.graph.nodes if n.op == "call_function"] for a, g in graphs.items()}
    sdpa = torch.ops.aten.scaled_dot_product_attention.default
    matmuls = [n for n in graphs["eager"].graph.nodes if n.target is torch.ops.aten.matmul.default]
    assert targets["sdpa"].count(sdpa) == layers and sdpa not in targets["eager"]
    assert len(matmuls) == 2 * layers
