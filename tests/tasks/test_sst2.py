"""sst2: online only; its hub path is tested with datasets.load_dataset replaced by a local DatasetDict."""

from __future__ import annotations

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict

from quant_impl import data
from quant_impl.config import RunConfig
from quant_impl.tasks import get_task


def test_the_hub_path_uses_glue_validation_as_test(monkeypatch: pytest.MonkeyPatch) -> None:
    feature = ClassLabel(names=["negative", "positive"])
    texts = [f"sentence number {i} is {'good' if i % 2 else 'bad'}" for i in range(200)]

    def split(rows: range, hidden: bool = False) -> Dataset:
        return Dataset.from_dict({"sentence": [texts[i] for i in rows], "label": [-1 if hidden else i % 2 for i in rows],
                                  "idx": list(rows)})

    fake = DatasetDict(train=split(range(0, 120)).cast_column("label", feature),
                       validation=split(range(120, 160)).cast_column("label", feature),
                       test=split(range(160, 200), hidden=True))
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: calls.append(args) or fake)
    cfg = RunConfig.load("smoke", {"task": "sst2", "dataset": "hub", "train_size": 60, "test_size": 30,
                                   "calibration_size": 10})
    splits = data.load_splits(cfg)
    assert calls == [("glue", "sst2")]
    assert set(splits["test"]["text"]) <= set(texts[120:160])
    assert splits["test"].features["label"].names == ["negative", "positive"]


def test_registration() -> None:
    spec = get_task("sst2")
    assert not spec.offline and spec.sources() == ("hub",) and spec.labels == ("negative", "positive")
