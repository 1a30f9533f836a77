"""Classification quality on a tokenized split: accuracy, macro F1, confusion counts, per-example predictions."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from datasets import Dataset
from tqdm.auto import tqdm

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation measured. ``predictions`` keep the split's row order, for paired comparisons."""

    accuracy: float
    f1: float  # macro F1 over the two classes
    examples: int
    confusion: dict[str, int]  # tn, fp, fn, tp with label 1 (positive) as the positive class
    predictions: list[int] = field(repr=False)
    seconds: float
    unit: str = "fraction"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalResult":
        return cls(**data)


def scores(predictions: torch.Tensor, labels: torch.Tensor, seconds: float = 0.0) -> EvalResult:
    """Accuracy, macro F1 and confusion counts of binary predictions.

    Example:
        >>> r = scores(torch.tensor([1, 0, 1, 1]), torch.tensor([1, 0, 0, 1]))
        >>> r.accuracy, r.confusion
        (0.75, {'tn': 1, 'fp': 1, 'fn': 0, 'tp': 2})
    """
    predictions, labels = predictions.long().flatten(), labels.long().flatten()
    if predictions.shape != labels.shape or predictions.numel() == 0:
        raise ValueError(f"need equally long, non-empty predictions and labels, got {predictions.shape} and {labels.shape}")
    tp = int(((predictions == 1) & (labels == 1)).sum())
    tn = int(((predictions == 0) & (labels == 0)).sum())
    fp = int(((predictions == 1) & (labels == 0)).sum())
    fn = int(((predictions == 0) & (labels == 1)).sum())
    n = tp + tn + fp + fn
    return EvalResult(
        accuracy=(tp + tn) / n,
        f1=(_f1(tp, fp, fn) + _f1(tn, fn, fp)) / 2,
        examples=n,
        confusion={"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        predictions=predictions.tolist(),
        seconds=seconds,
    )


def evaluate(model: torch.nn.Module | Predictor, split: Dataset, batch_size: int = 64, desc: str = "Evaluating") -> EvalResult:
    """Run ``model`` over a tokenized split (torch format) and score its argmax predictions.

    Args:
        model: an HF sequence classifier, or any callable ``(input_ids, attention_mask) -> logits``.
        split: rows with ``input_ids``, ``attention_mask`` and ``label``.
    """
    predict = _as_predictor(model)
    start = time.perf_counter()
    preds, labels = [], []
    with torch.inference_mode():
        for first in tqdm(range(0, len(split), batch_size), desc=desc, unit="batch", leave=False):
            batch = split[first : first + batch_size]
            logits = predict(batch["input_ids"], batch["attention_mask"])
            preds.append(logits.float().argmax(dim=-1).cpu())
            labels.append(batch["label"])
    return scores(torch.cat(preds), torch.cat(labels), seconds=time.perf_counter() - start)


def _as_predictor(model: torch.nn.Module | Predictor) -> Predictor:
    if isinstance(model, torch.nn.Module) and hasattr(model, "config"):
        model.eval()
        return lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits
    return model


def _f1(tp: int, fp: int, fn: int) -> float:
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0
