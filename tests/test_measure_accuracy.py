from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from quant_impl.measure.accuracy import EvalResult, evaluate, scores


def test_scores_by_hand() -> None:
    preds = torch.tensor([1, 1, 1, 0, 0, 0, 1, 0])
    labels = torch.tensor([1, 1, 0, 0, 0, 1, 1, 1])
    result = scores(preds, labels)
    assert result.confusion == {"tn": 2, "fp": 1, "fn": 2, "tp": 3}
    assert result.accuracy == pytest.approx(5 / 8)
    f1_pos = 2 * 3 / (2 * 3 + 1 + 2)  # 0.6667
    f1_neg = 2 * 2 / (2 * 2 + 2 + 1)  # 0.5714
    assert result.f1 == pytest.approx((f1_pos + f1_neg) / 2)
    assert result.predictions == preds.tolist() and result.examples == 8


def test_perfect_and_one_class_predictions() -> None:
    labels = torch.tensor([0, 1, 1, 0])
    assert scores(labels, labels).f1 == 1.0
    constant = scores(torch.ones(4, dtype=torch.long), labels)
    assert constant.accuracy == 0.5 and constant.f1 == pytest.approx((2 / 3 + 0) / 2)


def test_scores_rejects_mismatched_input() -> None:
    with pytest.raises(ValueError, match="equally long"):
        scores(torch.tensor([1, 0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="non-empty"):
        scores(torch.tensor([]), torch.tensor([]))


def test_evaluate_keeps_row_order_across_batches() -> None:
    rows = 10
    split = Dataset.from_dict(
        {"input_ids": [[i, 0] for i in range(rows)], "attention_mask": [[1, 1]] * rows, "label": [i % 2 for i in range(rows)]}
    ).with_format("torch")

    def predictor(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # predicts "positive" for rows 0, 3, 6, 9
        positive = (ids[:, 0] % 3 == 0).float()
        return torch.stack([1 - positive, positive], dim=1)

    result = evaluate(predictor, split, batch_size=3)
    assert result.predictions == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert result.accuracy == pytest.approx(sum(p == i % 2 for i, p in enumerate(result.predictions)) / rows)


def test_eval_result_round_trips_through_dict() -> None:
    result = scores(torch.tensor([1, 0]), torch.tensor([1, 1]), seconds=1.5)
    assert EvalResult.from_dict(result.to_dict()) == result
