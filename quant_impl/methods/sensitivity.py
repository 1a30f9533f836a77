"""Per-layer quantization sensitivity: quantize one Linear at a time and measure what the logits lose.

For each candidate ``nn.Linear`` the analysis swaps in a quantized replacement (``quantize_one(linear)``), runs
the calibration batches, compares the logits with the FP32 model's by SQNR (``quant_impl.qmath.sqnr_db``) and by
argmax agreement, and puts the FP32 layer back. Lower SQNR means more sensitive. The cost is one forward pass
over the batches per layer (plus one for the FP32 reference); the model is unchanged afterwards.

Candidates are the Linears of the transformer body (``model.base_model_prefix``, 36 in MiniLM-L6): the pooler
and the classifier head run once per sequence on [CLS], hold well under 1% of the weights and feed the logits
with nothing to damp their error, so mixed-precision methods keep them FP32 and the analysis skips them.

Cost (measured, MiniLM-L6, 2 cores shared with a training job): one forward of 32 x 128 tokens takes ~1-2 s, so
36 layers x 4 batches of 32 took 156 s with the weight-only proxy and 264 s with torch.ao dynamic int8 Linears;
hence ``mixed``'s default of 2 batches. The two quantizers rank differently: dynamic int8 (activations rounded
too) puts FFN output projections first, the weight-only proxy value projections, so methods rank with the int8
scheme they build.

Example:
    >>> model = fp32_copy(baseline)                                                      # doctest: +SKIP
    >>> feed = calibration_batches(baseline, 32, limit=2)                               # doctest: +SKIP
    >>> ranked = layer_sensitivity(model, feed, fake_quantized_weight)                   # doctest: +SKIP
    >>> ranked[0].name                                                                   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from quant_impl import qmath

QuantizeOne = Callable[[torch.nn.Linear], torch.nn.Module]
Batch = tuple[torch.Tensor, torch.Tensor]

# Per-output-channel symmetric int8, the weight scheme of torch.ao's per_channel_dynamic_qconfig and torchao.
INT8_PER_CHANNEL = qmath.QuantSpec(bits=8, signed=True, symmetric=True, axis=0)


@dataclass(frozen=True)
class LayerSensitivity:
    """What quantizing ``name`` alone costs: logit SQNR vs FP32 (dB) and the share of unchanged argmaxes."""

    name: str
    sqnr_db: float
    agreement: float  # fraction of calibration examples whose predicted class matches FP32
    examples: int

    def to_dict(self, digits: int = 2) -> dict[str, object]:
        """JSON-ready (strict JSON: a non-finite SQNR, i.e. a layer quantization left exact, becomes None)."""
        sqnr = round(self.sqnr_db, digits) if math.isfinite(self.sqnr_db) else None
        return {"name": self.name, "sqnr_db": sqnr, "agreement": round(self.agreement, 4)}


def encoder_linears(model: torch.nn.Module) -> list[str]:
    """Names of the candidate Linears: those of the transformer body, pooler excluded, in module order.

    An HF classifier keeps its body under ``base_model_prefix`` (``bert``) and its head beside it.
    """
    prefix = getattr(model, "base_model_prefix", "")
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if prefix and not name.startswith(f"{prefix}."):
            continue
        if "pooler" in name.split("."):
            continue
        names.append(name)
    return names


@contextmanager
def swapped(model: torch.nn.Module, name: str, replacement: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` with submodule ``name`` replaced by ``replacement`` inside the block, restored after it."""
    original = model.get_submodule(name)
    model.set_submodule(name, replacement)
    try:
        yield model
    finally:
        model.set_submodule(name, original)


def fake_quantized_weight(linear: torch.nn.Linear, spec: qmath.QuantSpec = INT8_PER_CHANNEL) -> torch.nn.Linear:
    """A copy of ``linear`` whose weight is ``dequantize(quantize(w))`` per output channel (weight-only proxy).

    Weight-only simulation: what int8 weights alone cost, without the activation rounding of a dynamic kernel.
    """
    clone = copy.deepcopy(linear)
    with torch.no_grad():
        weight = linear.weight.detach().float()
        qp = qmath.qparams_from_tensor(weight, spec)
        clone.weight.copy_(qmath.dequantize(qmath.quantize(weight, qp), qp).to(linear.weight.dtype))
    return clone


def layer_sensitivity(
    model: torch.nn.Module,
    batches: Iterable[Batch],
    quantize_one: QuantizeOne,
    names: list[str] | None = None,
    progress: bool = True,
) -> list[LayerSensitivity]:
    """Quantize each of ``names`` (default: :func:`encoder_linears`) alone; most sensitive (lowest SQNR) first.

    Args:
        model: an FP32 HF classifier in eval mode (``model(input_ids=, attention_mask=).logits``); each layer is
            swapped back after its measurement, so the model is unchanged when this returns.
        batches: ``(input_ids, attention_mask)`` pairs, moved to the model's device.
        quantize_one: ``nn.Linear -> replacement module`` (real or simulated int8).
        names: the Linears to analyse.
    """
    names = encoder_linears(model) if names is None else list(names)
    device = next(model.parameters()).device
    feed = [(ids.to(device), mask.to(device)) for ids, mask in batches]
    if not feed:
        raise ValueError("layer_sensitivity needs at least one calibration batch")
    reference = _logits(model, feed)
    ref_classes = reference.argmax(dim=-1)
    results = []
    for name in tqdm(names, desc="Per-layer sensitivity", unit="layer", leave=False, disable=not progress):
        linear = model.get_submodule(name)
        if not isinstance(linear, torch.nn.Linear):
            raise ValueError(f"{name!r} is a {type(linear).__name__}, not an nn.Linear")
        with swapped(model, name, quantize_one(linear)):
            logits = _logits(model, feed)
        agreement = float((logits.argmax(dim=-1) == ref_classes).float().mean())
        results.append(LayerSensitivity(name, qmath.sqnr_db(reference, logits), agreement, len(reference)))
    order = {name: i for i, name in enumerate(names)}
    return sorted(results, key=lambda s: (s.sqnr_db, order[s.name]))


@torch.inference_mode()
def _logits(model: torch.nn.Module, feed: list[Batch]) -> torch.Tensor:
    return torch.cat([model(input_ids=ids, attention_mask=mask).logits.float().cpu() for ids, mask in feed])
