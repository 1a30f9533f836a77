"""mrpc: an online text-pair task; its local-copy path is tested in tests/test_tasks.py, the hub path here."""

from __future__ import annotations

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict

from quant_impl import data
from quant_impl.config import RunConfig
from quant_impl.tasks import get_task


def test_the_hub_path_renames_the_pair_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    feature = ClassLabel(names=["not_equivalent", "equivalent"])

    def split(n: int, tag: str) -> Dataset:
        return Dataset.from_dict({"sentence1": [f"{tag} first {i}" for i in range(n)],
                                  "sentence2": [f"{tag} second {i}" for i in range(n)],
                                  "label": [i % 2 for i in range(n)]}).cast_column("label", feature)

    monkeypatch.setattr(datasets, "load_dataset", lambda *args: DatasetDict(train=split(100, "tr"),
                                                                          validation=split(40, "va")))
    cfg = RunConfig.load("smoke", {"task": "mrpc", "dataset": "hub", "train_size": 50, "test_size": 20,
                                   "calibration_size": 10})
    splits = data.load_splits(cfg)
    assert splits["test"].column_names == ["text", "text_pair", "label"]
    assert all(t.startswith("va first") for t in splits["test"]["text"])


def test_registration() -> None:
    spec = get_task("mrpc")
    assert spec.text_pair and spec.primary_metric == "macro_f1" and not spec.offline
