"""Every method on a 3-label text-pair task (a user's own file, ``--task custom``): the tiny model fine-tunes with a
3-way head on pairs, every method (the peers' exports included) builds and predicts 3 logits, and a benchmark
cell records the task's primary metric, its interval, per-class F1 and the confusion matrix."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from quant_impl.cells import Cell
from quant_impl.config import RunConfig
from quant_impl.hardware import get_hardware
from quant_impl.methods import get_method, method_names
from quant_impl.qmath import sqnr_db as sqnr
from quant_impl.session.store import BenchSession
from quant_impl.tasks import get_task

LABELS = ("contradiction", "entailment", "neutral")  # sorted: the order a custom task's string labels get
CPU = get_hardware("cpu")


@pytest.fixture(scope="module")
def pair_session(tmp_path_factory: pytest.TempPathFactory) -> BenchSession:
    folder = tmp_path_factory.mktemp("pairs")
    # Pairs of real review snippets, labelled by their polarities (both positive: entailment, both negative:
    # neutral, mixed: contradiction), so the head learns something and its logits are not a constant prior.
    rt = get_task("rt-polarity").load().sample(400, random_state=0)
    first, second = rt.iloc[:200], rt.iloc[200:]
    names = {(1, 1): "entailment", (0, 0): "neutral"}
    frame = pd.DataFrame({"text": list(first["text"]), "text_pair": list(second["text"]),
                          "label": [names.get((a, b), "contradiction") for a, b in zip(first["label"], second["label"])]})
    frame.to_csv(folder / "pairs.csv", index=False)
    cfg = RunConfig.load("smoke", {"task": "custom", "dataset": str(folder / "pairs.csv"), "train_size": 96,
                                   "test_size": 48, "calibration_size": 24, "cache_dir": folder / "cache",
                                   "batch_sizes": "1,4", "epochs": 4})
    return BenchSession(cfg)


@pytest.fixture(scope="module")
def batch(pair_session: BenchSession):
    rows = pair_session.baseline.data["test"][:4]
    return rows["input_ids"], rows["attention_mask"]


@pytest.fixture(scope="module")
def fp32_logits(pair_session: BenchSession, batch):
    with torch.inference_mode():
        return pair_session.baseline.model(input_ids=batch[0], attention_mask=batch[1]).logits


def test_the_baseline_has_the_files_labels(pair_session: BenchSession) -> None:
    base = pair_session.baseline
    assert base.task.labels == LABELS and base.task.text_pair
    assert base.model.config.num_labels == 3 and base.model.config.id2label == dict(enumerate(LABELS))
    assert len(base.eval.confusion_matrix) == 3 and base.eval.examples == 48


@pytest.mark.parametrize("name", method_names())
def test_every_method_predicts_three_classes_on_pairs(name: str, pair_session: BenchSession, batch, fp32_logits) -> None:
    reason = get_method(name).supports(CPU)
    if reason:
        pytest.skip(reason)
    built = pair_session.built(name, CPU)
    logits = built(*batch).float()
    assert logits.shape == (4, 3)
    assert sqnr(fp32_logits, logits) >= get_method(name).sqnr_bar(built.settings)
    assert built(batch[0][:1], batch[1][:1]).shape == (1, 3)
    pair_session.release()


def test_a_cell_records_the_primary_metric_and_per_class_figures(pair_session: BenchSession) -> None:
    cell = Cell("bf16", "cpu", 4, pair_session.cfg.max_length, "smoke", "custom")  # the cheapest build to measure
    info = pair_session.extra_info(cell, CPU)
    assert info["task"] == "custom" and info["primary_metric"] in ("accuracy", "macro_f1")
    assert info["primary_value"] == (info["accuracy"] if info["primary_metric"] == "accuracy" else info["f1"])
    lo, hi = info["primary_drop_ci95"]
    assert lo <= info["primary_drop_pts"] <= hi
    assert len(info["per_class_f1"]) == 3 and len(info["confusion_matrix"]) == 3
    assert sum(map(sum, info["confusion_matrix"])) == info["eval_examples"] == 48
    assert pair_session.run_summary()["task"]["labels"] == list(LABELS)


@pytest.mark.parametrize("task, metric, labels", [("tweet-sentiment-3", "macro_f1", 3), ("bbc-news-5", "accuracy", 5),
                                                  ("sms-spam", "f1:spam", 2)])
def test_a_real_task_on_the_tiny_model_records_its_own_metric(task: str, metric: str, labels: int,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = get_task(task)
    if spec.missing_package():
        pytest.skip(spec.missing_package())
    session = BenchSession(RunConfig.load("smoke", {"task": task, "cache_dir": tmp_path_factory.mktemp(task)}))
    assert session.baseline.model.config.num_labels == labels
    cell = Cell("bf16", "cpu", 8, session.cfg.max_length, "smoke", task)
    info = session.extra_info(cell, CPU)
    assert info["primary_metric"] == metric and len(info["per_class_f1"]) == labels
    assert (info["bootstrap_resamples"] is None) == (metric == "accuracy")
    lo, hi = info["primary_drop_ci95"]
    assert lo <= hi and abs(info["primary_drop_pts"]) <= 100
    assert session.extra_info(cell, CPU)["primary_drop_ci95"] == [lo, hi]  # seeded: the same interval again
