"""Classification quality on a tokenized split: accuracy, macro and per-class F1, the confusion matrix, per-example
predictions, and a task's primary metric of them."""

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
    f1: float  # macro F1 over the classes that occur in the labels or the predictions
    examples: int
    confusion: dict[str, int]  # binary tasks: tn, fp, fn, tp with label 1 as the positive class; else empty
    predictions: list[int] = field(repr=False)
    seconds: float
    unit: str = "fraction"
    # Results cached before tasks existed lack these (they are recomputed from the predictions where needed).
    per_class_f1: list[float | None] | None = None  # per label id; None for a class absent from labels and predictions
    confusion_matrix: list[list[int]] | None = None  # [true label][predicted label]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalResult":
        return cls(**data)


def scores(predictions: torch.Tensor, labels: torch.Tensor, seconds: float = 0.0, num_labels: int | None = None) -> EvalResult:
    """Accuracy, macro F1, per-class F1 and the confusion matrix of class predictions (``num_labels`` classes:
    default the largest id seen + 1, at least 2).

    Example:
        >>> r = scores(torch.tensor([1, 0, 1, 1]), torch.tensor([1, 0, 0, 1]))
        >>> r.accuracy, r.confusion
        (0.75, {'tn': 1, 'fp': 1, 'fn': 0, 'tp': 2})
    """
    predictions, labels = predictions.long().flatten(), labels.long().flatten()
    if predictions.shape != labels.shape or predictions.numel() == 0:
        raise ValueError(f"need equally long, non-empty predictions and labels, got {predictions.shape} and {labels.shape}")
    k = max(num_labels or 0, 2, int(max(predictions.max(), labels.max())) + 1)
    matrix = torch.bincount(labels * k + predictions, minlength=k * k).reshape(k, k)
    per_class: list[float | None] = []
    for c in range(k):
        tp = int(matrix[c, c])
        fp, fn = int(matrix[:, c].sum()) - tp, int(matrix[c, :].sum()) - tp
        per_class.append(_f1(tp, fp, fn) if tp + fp + fn else None)
    present = [f for f in per_class if f is not None]
    confusion = ({"tn": int(matrix[0, 0]), "fp": int(matrix[0, 1]), "fn": int(matrix[1, 0]), "tp": int(matrix[1, 1])}
                 if k == 2 else {})
    return EvalResult(
        accuracy=int(matrix.diag().sum()) / labels.numel(),
        f1=sum(present) / len(present),
        examples=labels.numel(),
        confusion=confusion,
        predictions=predictions.tolist(),
        seconds=seconds,
        per_class_f1=per_class,
        confusion_matrix=matrix.tolist(),
    )


def primary_value(result: EvalResult, metric: str, labels: tuple[str, ...]) -> float:
    """A task's primary metric of one evaluation: ``accuracy``, ``macro_f1`` or ``f1:<label>``."""
    if metric == "accuracy":
        return result.accuracy
    if metric == "macro_f1":
        return result.f1
    if metric.startswith("f1:"):
        per_class = result.per_class_f1 or []
        value = per_class[labels.index(metric[3:])] if len(per_class) == len(labels) else None
        return 0.0 if value is None else value
    raise ValueError(f"unknown metric {metric!r}")


def metric_function(metric: str, labels: tuple[str, ...]) -> Callable[[Any, Any], float]:
    """``(predictions, labels) -> value`` of a primary metric on numpy arrays (what the bootstrap resamples)."""
    import numpy as np

    k = len(labels)

    def per_class_f1(pred: Any, true: Any) -> Any:
        matrix = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
        tp = np.diag(matrix).astype(float)
        denominator = matrix.sum(axis=0) + matrix.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, 2 * tp / denominator, np.nan)

    if metric == "accuracy":
        return lambda pred, true: float(np.mean(pred == true))
    if metric == "macro_f1":
        return lambda pred, true: float(np.nanmean(per_class_f1(pred, true)))
    if metric.startswith("f1:"):
        index = labels.index(metric[3:])
        return lambda pred, true: float(np.nan_to_num(per_class_f1(pred, true)[index]))
    raise ValueError(f"unknown metric {metric!r}")


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
    feature = split.features.get("label")
    return scores(torch.cat(preds), torch.cat(labels), seconds=time.perf_counter() - start,
                  num_labels=getattr(feature, "num_classes", None))


def _as_predictor(model: torch.nn.Module | Predictor) -> Predictor:
    if isinstance(model, torch.nn.Module) and hasattr(model, "config"):
        model.eval()
        return lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits
    return model


def _f1(tp: int, fp: int, fn: int) -> float:
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0
