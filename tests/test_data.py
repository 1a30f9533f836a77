from __future__ import annotations

from pathlib import Path

import datasets
import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

from quant_impl import data
from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError
from quant_impl.models import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


def _texts(split: Dataset) -> list[str]:
    return list(split["text"])


def _local_reviews(n: int = 120) -> pd.DataFrame:
    """n real reviews (balanced) from the bundled set, as a plain frame."""
    pool = data._bundled_reviews().to_pandas()
    pool["text"] = pool.text.str.replace("<br />", " ")
    return pd.concat([pool[pool.label == 0].head(n // 2), pool[pool.label == 1].head(n // 2)], ignore_index=True)


def test_bundled_splits_are_disjoint_stratified_and_sized(smoke_cfg: RunConfig) -> None:
    cfg = smoke_cfg.replace(train_size=400, test_size=200, calibration_size=100)
    splits = data.load_splits(cfg)
    assert {k: len(v) for k, v in splits.items()} == {"train": 400, "calibration": 100, "test": 200}
    sets = {name: set(_texts(split)) for name, split in splits.items()}
    assert not sets["train"] & sets["test"] and not sets["train"] & sets["calibration"]
    assert not sets["calibration"] & sets["test"]
    for name, split in splits.items():
        positives = sum(split["label"])
        # The bundled pool is 50/50 to within 0.2 % after deduplication, so each split is within one review.
        assert abs(positives - len(split) / 2) <= 1, (name, positives)
        assert not any("<br" in t.lower() for t in _texts(split))


def test_splits_are_deterministic_and_seeded(smoke_cfg: RunConfig) -> None:
    first, again = data.load_splits(smoke_cfg), data.load_splits(smoke_cfg)
    for name in data.SPLITS:
        assert _texts(first[name]) == _texts(again[name])
    other = data.load_splits(smoke_cfg.replace(seed=1))
    assert _texts(other["test"]) != _texts(first["test"])


def test_test_set_does_not_depend_on_train_size(smoke_cfg: RunConfig) -> None:
    small = data.load_splits(smoke_cfg.replace(train_size=50))
    large = data.load_splits(smoke_cfg.replace(train_size=500))
    assert _texts(small["test"]) == _texts(large["test"])
    assert _texts(small["calibration"]) == _texts(large["calibration"])


def test_bundled_pool_is_the_deduplicated_imdb_train_split() -> None:
    pool = data._bundled_reviews()
    assert len(pool) == 25_000
    assert sorted(set(pool["label"])) == [0, 1] and sum(pool["label"]) == 12_500


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_local_file_source(tmp_path: Path, smoke_cfg: RunConfig, suffix: str) -> None:
    frame = _local_reviews()
    path = tmp_path / f"reviews{suffix}"
    {".csv": frame.to_csv, ".json": frame.to_json, ".parquet": frame.to_parquet}[suffix](
        path, **({"index": False} if suffix != ".json" else {"orient": "records", "lines": True})
    )
    cfg = smoke_cfg.replace(dataset=str(path), train_size=60, test_size=30, calibration_size=10)
    splits = data.load_splits(cfg)
    assert {k: len(v) for k, v in splits.items()} == {"train": 60, "calibration": 10, "test": 30}
    assert set().union(*(set(_texts(s)) for s in splits.values())) <= set(frame.text)


def test_save_to_disk_with_official_splits_follows_the_hub_path(tmp_path: Path, smoke_cfg: RunConfig) -> None:
    frame = _local_reviews(160)
    official = DatasetDict(
        train=Dataset.from_pandas(frame.iloc[::2][["text", "label"]], preserve_index=False),
        test=Dataset.from_pandas(frame.iloc[1::2][["text", "label"]], preserve_index=False),
    )
    official.save_to_disk(str(tmp_path / "imdb"))
    cfg = smoke_cfg.replace(dataset=str(tmp_path / "imdb"), train_size=40, test_size=30, calibration_size=10)
    splits = data.load_splits(cfg)
    assert set(_texts(splits["test"])) <= set(official["test"]["text"])
    assert set(_texts(splits["train"])) | set(_texts(splits["calibration"])) <= set(official["train"]["text"])


def test_hub_source_uses_load_dataset_imdb(monkeypatch: pytest.MonkeyPatch, smoke_cfg: RunConfig) -> None:
    frame = _local_reviews(160)
    fake = DatasetDict(
        train=Dataset.from_pandas(frame.iloc[::2], preserve_index=False),
        test=Dataset.from_pandas(frame.iloc[1::2], preserve_index=False),
        unsupervised=Dataset.from_dict({"text": ["x"], "label": [-1]}),
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name: calls.append(name) or fake)
    splits = data.load_splits(smoke_cfg.replace(dataset="hub", train_size=40, test_size=30, calibration_size=10))
    assert calls == ["imdb"]
    assert set(_texts(splits["test"])) <= set(fake["test"]["text"])


def test_hub_source_offline_suggests_bundled(monkeypatch: pytest.MonkeyPatch, smoke_cfg: RunConfig) -> None:
    def offline(name: str):
        raise ConnectionError("Couldn't reach 'imdb' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(QuantbenchError, match="--dataset hub: could not load 'imdb'.*use --dataset bundled"):
        data.load_splits(smoke_cfg.replace(dataset="hub"))


def test_bad_sources_get_clear_errors(tmp_path: Path, smoke_cfg: RunConfig) -> None:
    def fails(spec: Path | str, match: str, **sizes: int) -> None:
        with pytest.raises(QuantbenchError, match=match):
            data.load_splits(smoke_cfg.replace(dataset=str(spec), **sizes))

    fails(tmp_path / "missing.csv", "no such file or folder")
    pd.DataFrame({"review": ["a", "b"], "label": [0, 1]}).to_csv(tmp_path / "cols.csv", index=False)
    fails(tmp_path / "cols.csv", r"missing column\(s\) text")
    pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 1, 2]}).to_csv(tmp_path / "labels.csv", index=False)
    fails(tmp_path / "labels.csv", r"labels 2 do not fit task imdb \(ids 0 = neg, 1 = pos.*pass --task custom")
    frame = _local_reviews(40)
    frame.to_csv(tmp_path / "small.csv", index=False)
    fails(tmp_path / "small.csv", "has 40 usable rows but the 'smoke' profile needs 112")
    (tmp_path / "notes.txt").write_text("hello")
    fails(tmp_path / "notes.txt", "cannot read files ending in '.txt'")
    (tmp_path / "folder").mkdir()
    fails(tmp_path / "folder", "not a datasets.save_to_disk folder")
    frame[frame.label == 1].to_csv(tmp_path / "onesided.csv", index=False)
    fails(tmp_path / "onesided.csv", r"holds only label\(s\) \[1\]", train_size=5, test_size=5, calibration_size=5)


def test_tokenize_head_and_head_tail(smoke_cfg: RunConfig, tokenizer) -> None:
    splits = data.load_splits(smoke_cfg)
    full = tokenizer(_texts(splits["test"]), add_special_tokens=False)["input_ids"]
    long_row = next(i for i, ids in enumerate(full) if len(ids) > 2 * smoke_cfg.max_length)
    for truncation in ("head", "head+tail"):
        cfg = smoke_cfg.replace(truncation=truncation)
        row = data.tokenize(splits, tokenizer, cfg)["test"][long_row]
        ids = row["input_ids"].tolist()
        assert len(ids) == cfg.max_length and row["attention_mask"].tolist() == [1] * cfg.max_length
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        if truncation == "head":
            assert ids[1:-1] == full[long_row][: cfg.max_length - 2]
        else:
            tail = cfg.max_length - 2 - cfg.head_tokens
            assert ids[1 : 1 + cfg.head_tokens] == full[long_row][: cfg.head_tokens]
            assert ids[1 + cfg.head_tokens : -1] == full[long_row][-tail:]


def test_short_reviews_are_padded_and_masked(smoke_cfg: RunConfig, tokenizer) -> None:
    splits = DatasetDict(test=Dataset.from_dict({"text": ["great film"], "label": [1]}))
    row = data.tokenize(splits, tokenizer, smoke_cfg)["test"][0]
    assert row["attention_mask"].tolist() == [1] * 4 + [0] * (smoke_cfg.max_length - 4)
    assert row["input_ids"][4:].tolist() == [tokenizer.pad_token_id] * (smoke_cfg.max_length - 4)


def test_tokenized_splits_are_cached_on_disk(
    smoke_cfg: RunConfig, tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = data.load_imdb(smoke_cfg, tokenizer)
    files = sorted((smoke_cfg.cache_dir / "tokenized").glob("*.arrow"))
    assert len(files) == 3

    def must_not_run(self, batch):
        raise AssertionError("tokenized again instead of reading the cache")

    monkeypatch.setattr(data._HeadTailEncoder, "__call__", must_not_run)
    again = data.load_imdb(smoke_cfg, tokenizer)
    assert sorted((smoke_cfg.cache_dir / "tokenized").glob("*.arrow")) == files
    assert again["test"][:]["input_ids"].tolist() == first["test"][:]["input_ids"].tolist()
