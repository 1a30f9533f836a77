"""What the three PT2E int8 methods (dynamic, static, qat) share: their common options and their build.

A build is: FP32 copy -> int8 word embeddings (if asked) -> attention implementation -> torch.export ->
query/key/value Linears fused (if asked) -> X86InductorQuantizer -> the method's own step (calibrate or train, then
convert) -> the attention option on the converted graph -> Inductor with freezing. Each method module keeps only its
config's own fields, its registration and its step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from quant_impl.errors import QuantbenchError
from quant_impl.hardware import Hardware
from quant_impl.measure.size import graph_size
from quant_impl.methods import _pt2e, quantize_lowering
from quant_impl.methods._common import (PT2E_ATTENTIONS, LogitsModel, check_attention, compiled_predictor,
                                        example_inputs, finish_attention, fp32_copy, set_attention)
from quant_impl.methods.embedding import word_embeddings
from quant_impl.methods.fuse_linears import fuse_shared_input_linears
from quant_impl.measure.machine import effective_cpu_class, has_int8_dot_product
from quant_impl.methods.options import check_bool, check_choice
from quant_impl.methods.registry import QuantizedModel

Example = tuple[torch.Tensor, torch.Tensor]
# (exported graph, quantizer, example batch) -> (converted graph, the method's own settings)
Step = Callable[[torch.fx.GraphModule, Any, Example], tuple[torch.fx.GraphModule, dict[str, Any]]]


@dataclass(frozen=True)
class Pt2eOptions:
    """The options every PT2E int8 config has; the configs extend it (their own fields, then ``version``)."""

    # int8 per-row word embeddings as well (quant_impl.methods.embedding): on by default since the FP32 table is
    # about half of MiniLM's bytes (0.26x of FP32 in all instead of 0.65x; drops measured within the threshold)
    quantize_embedding: bool = True
    # attention of the compiled graph: sdpa, eager, fused-bf16 (quantbench's kernel), or auto = fused-bf16 where the
    # machine runs it, else sdpa (quant_impl.methods._common.PT2E_ATTENTIONS)
    attention: str = "auto"
    # uint8 activations in 0..255 ("full") or 0..127 ("reduced"); "auto": reduced on CPUs without int8 dot products
    # (no VNNI/AMX), where oneDNN sums u8 x s8 pairs in 16 bits and full-range activations saturate. Measured on the
    # tiny MPNet on an AVX2-only EPYC: logit SQNR 8.7 dB full vs 38.6 dB reduced (dynamic-int8).
    activation_range: str = "auto"
    # Linears kept in FP32 (module names as in the model, e.g. bert.encoder.layer.5.output.dense): the per-layer
    # fallback `quantbench tune` searches, most sensitive layers first (quant_impl.methods.sensitivity)
    float_layers: tuple[str, ...] = ()
    # Inductor's lowering of a run-time-scale quantize (dynamic int8's activations): "torch", "vector" (quantbench's,
    # from vector ops every ISA has), or "auto" = vector where Inductor compiles for AVX2, whose torch lowering is a
    # scalar loop (quant_impl.methods.quantize_lowering: 25 ms vs 1.8 ms per GELU output at batch 32, forced AVX2)
    quantize_lowering: str = "auto"
    # Linears that read one tensor (each attention block's query, key and value) run as one Linear and a split
    # (quant_impl.methods.fuse_linears): the same logits, one oneDNN call instead of three
    fuse_qkv: bool = True

    def __post_init__(self) -> None:
        check_bool(self, "quantize_embedding")
        check_bool(self, "fuse_qkv")
        check_attention(self, PT2E_ATTENTIONS)
        check_choice(self, "activation_range", ACTIVATION_RANGES)
        check_choice(self, "quantize_lowering", quantize_lowering.CHOICES)
        layers = self.float_layers
        if isinstance(layers, str) or not isinstance(layers, (list, tuple)) or not all(
                isinstance(name, str) and name for name in layers):
            raise ValueError(f"{type(self).__name__}.float_layers must be a list of Linear module names, e.g. "
                             f"[\"bert.encoder.layer.5.output.dense\"], got {layers!r}")
        object.__setattr__(self, "float_layers", tuple(layers))  # a TOML list arrives as a list; configs hash


ACTIVATION_RANGES = ("auto", "full", "reduced")


def activation_range(config: Pt2eOptions) -> str:
    """What ``config.activation_range`` means on this machine (see ``QUANTBENCH_CPU_CLASS`` to force a fallback)."""
    if config.activation_range != "auto":
        return config.activation_range
    return "full" if has_int8_dot_product() else "reduced"


def prepared_copy(baseline: Any, config: Pt2eOptions) -> tuple[torch.nn.Module, dict[str, Any] | str]:
    """The baseline's FP32 copy with the word-embedding and attention options applied, and the embedding's
    settings entry (also the start of dynamic-int8's non-PT2E torch-ao engine)."""
    model = fp32_copy(baseline)
    embedding = word_embeddings(model, config.quantize_embedding, type(config).__name__)
    set_attention(model, config.attention)
    return model, embedding


def build(name: str, baseline: Any, hardware: Hardware, config: Pt2eOptions, *, quantizer: dict[str, Any],
          step: Step, engine: str, activations: str) -> QuantizedModel:
    """Build PT2E int8 method ``name``: ``quantizer`` holds ``x86_quantizer``'s keyword arguments (the annotation
    scope is added here); ``step`` calibrates or trains and converts; ``engine`` and ``activations`` describe it."""
    example = example_inputs(baseline)
    model, embedding = prepared_copy(baseline, config)
    check_float_layers(model, config)
    scope = _pt2e.annotation_scope(model)
    span = activation_range(config)
    quantizer = {**quantizer, "scope": scope, "reduce_range": span == "reduced", "float_layers": config.float_layers}
    exported = _pt2e.export(LogitsModel(model), example)
    fused = fuse_shared_input_linears(exported, keep=tuple(f"model.{name}" for name in config.float_layers)) \
        if config.fuse_qkv else 0
    graph, own = step(exported, _pt2e.x86_quantizer(**quantizer), example)
    attention = finish_attention(graph, config.attention, baseline.config.cache_dir)
    vector_quantize, lowering_note = quantize_lowering.resolve(config.quantize_lowering)
    size = graph_size(graph)
    if span == "reduced":
        activations = f"{activations}, 7-bit (0..127: {_reduced_why(config)})"
    settings = {"engine": engine, "weights": "int8 per-channel symmetric", "activations": activations, **own,
                "word_embeddings": embedding, "attention": attention, "annotated": scope, "activation_range": span,
                "float_layers": list(config.float_layers), "quantize_lowering": lowering_note,
                "fused_linears": (f"{fused} groups of Linears reading one input, each run as one Linear"
                                  if config.fuse_qkv else "off (fuse_qkv = false)")}
    return QuantizedModel(name, hardware.id, compiled_predictor(graph, example, vector_quantize=vector_quantize),
                          size.bytes, size.note, settings, module=graph)


def check_float_layers(model: torch.nn.Module, config: Pt2eOptions) -> None:
    """Every name in ``config.float_layers`` is a Linear of ``model``; else one error naming the unknown ones."""
    if not config.float_layers:
        return
    linears = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    unknown = [name for name in config.float_layers if name not in linears]
    if unknown:
        example = sorted(linears)[0] if linears else "(none)"
        raise QuantbenchError(f"{type(config).__name__}.float_layers: {', '.join(unknown)} not a Linear of this "
                              f"model ({len(linears)} Linears, named like {example})")


def _reduced_why(config: Pt2eOptions) -> str:
    if config.activation_range == "reduced":
        return "activation_range='reduced' asked"
    return f"auto, this {effective_cpu_class() or 'unknown'} CPU has no int8 dot-product instructions"
