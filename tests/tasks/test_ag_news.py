"""ag-news: online only; its hub path is tested with datasets.load_dataset replaced by a local DatasetDict."""

from __future__ import annotations

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict

from quant_impl import data
from quant_impl.config import RunConfig
from quant_impl.tasks import get_task


def test_the_hub_path_reads_four_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    feature = ClassLabel(names=["World", "Sports", "Business", "Sci/Tech"])
    fake = DatasetDict(
        train=Dataset.from_dict({"text": [f"train story {i}" for i in range(120)], "label": [i % 4 for i in range(120)]}),
        test=Dataset.from_dict({"text": [f"test story {i}" for i in range(40)], "label": [i % 4 for i in range(40)]}),
    ).cast_column("label", feature)
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: fake)
    cfg = RunConfig.load("smoke", {"task": "ag-news", "dataset": "hub", "train_size": 60, "test_size": 20,
                                   "calibration_size": 8})
    splits = data.load_splits(cfg)
    assert all(t.startswith("test story") for t in splits["test"]["text"])
    assert sorted(set(splits["test"]["label"])) == [0, 1, 2, 3]


def test_registration() -> None:
    spec = get_task("ag-news")
    assert not spec.offline and spec.labels == ("World", "Sports", "Business", "Sci/Tech")
