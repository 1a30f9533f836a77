"""The PT2E flow shared by the int8 methods: torch.export -> torchao prepare -> (calibrate | train) -> convert.

On torch 2.13 the eager (prepare/convert) and FX (prepare_fx) APIs fail on HF BERT; PT2E with torchao's
X86InductorQuantizer works, and is fast only once compiled with Inductor freezing (see compiled_predictor).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

MAX_BATCH = 64


def export(module: torch.nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> torch.fx.GraphModule:
    """Export with dynamic batch (1..64) and sequence length (2..the example's): one graph serves every
    benchmark shape. A graph exported at a fixed shape fails on another ("Guard failed: input_ids.size()[0] == 32").
    """
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    seq = torch.export.Dim("seq", min=2, max=example[0].shape[1])
    shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    return torch.export.export(module, example, dynamic_shapes=shapes).module()


# Model types whose graphs carry integer tensors that X86InductorQuantizer.set_global annotates too: MPNet's
# relative-position buckets get a HistogramObserver ("histogram_cpu" not implemented for 'Int') or a dynamic
# choose_qparams on int32 (../shared/PLATFORM.md). Their Linears alone are annotated instead.
LINEARS_ONLY_MODEL_TYPES = ("mpnet",)


def annotation_scope(model: torch.nn.Module) -> str:
    """``"global"`` (every op the quantizer knows) or ``"linears"`` (Linear modules only), by model type."""
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    return "linears" if model_type in LINEARS_ONLY_MODEL_TYPES else "global"


def x86_quantizer(is_dynamic: bool = False, is_qat: bool = False, activation_observer: Any = None,
                  scope: str = "global", reduce_range: bool = False, float_layers: tuple[str, ...] = ()) -> Any:
    """torchao's X86InductorQuantizer: per-channel symmetric int8 weights, uint8 affine activations, on every op
    it supports (``scope="global"``) or on Linear modules only (``"linears"``, see :func:`annotation_scope`).
    ``reduce_range`` keeps activations in 0..127, which torchao prescribes for CPUs without VNNI; ``float_layers``
    (module names of the wrapped model) are left unannotated, so they stay FP32 Linears."""
    import dataclasses

    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    config = xiq.get_default_x86_inductor_quantization_config(is_qat=is_qat, is_dynamic=is_dynamic,
                                                              reduce_range=reduce_range)
    if activation_observer is not None:
        spec = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=activation_observer)
        config = dataclasses.replace(config, input_activation=spec, output_activation=None)
    quantizer = xiq.X86InductorQuantizer()
    if scope == "linears":
        quantizer.set_module_type_qconfig(torch.nn.Linear, config)
    else:
        quantizer.set_global(config)
    for name in float_layers:  # the exported module is LogitsModel, which holds the classifier as .model
        quantizer.set_module_name_qconfig(f"model.{name}", None)
    return quantizer


def quantize(
    graph: torch.fx.GraphModule,
    quantizer: Any,
    feed: Iterable[tuple[torch.Tensor, torch.Tensor]] = (),
    train: Callable[[torch.fx.GraphModule], None] | None = None,
) -> torch.fx.GraphModule:
    """Prepare ``graph``, run ``feed`` batches through it (calibration) or ``train`` it (QAT), convert it."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    if train is not None:
        prepared = prepare_qat_pt2e(graph, quantizer)
        train(prepared)
        _eval_mode(prepared)
    else:
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for input_ids, attention_mask in feed:
                prepared(input_ids, attention_mask)
    return convert_pt2e(prepared)


def _eval_mode(prepared: torch.fx.GraphModule) -> None:
    # An exported graph has no .eval() semantics for dropout/batchnorm; torchao provides the switch.
    from torchao.quantization.pt2e import move_exported_model_to_eval

    move_exported_model_to_eval(prepared)
