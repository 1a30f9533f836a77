"""MRPC (GLUE): is the second sentence a paraphrase of the first? A text-pair task. Online only.

``--task mrpc --dataset hub`` reads ``datasets.load_dataset("glue", "mrpc")`` (3,668 train / 408 validation
pairs; GLUE's test labels are hidden, so validation is the test split); pairs are tokenized as ``[CLS] sentence1 [SEP] sentence2 [SEP]`` everywhere. 68 %
of the pairs are paraphrases, so macro-F1 (GLUE reports F1 and accuracy). A local ``save_to_disk`` copy works
offline (``--dataset PATH``).
"""

from __future__ import annotations

from typing import Any

from quant_impl.tasks.registry import register_task


@register_task(
    "mrpc",
    labels=("not_equivalent", "equivalent"),
    primary_metric="macro_f1",
    metric_reason="imbalanced (68 % paraphrases): macro-F1 counts the minority class as much",
    source="GLUE MRPC (Dolan & Brockett 2005) via datasets.load_dataset('glue', 'mrpc')",
    cleaning="none beyond exact-duplicate removal of (text, text_pair); the hub's sentence1/sentence2 -> "
             "text/text_pair",
    text_pair=True,
    hub=("glue", "mrpc"),
    hub_columns={"sentence1": "text", "sentence2": "text_pair"},
    hub_splits={"train": "train", "test": "validation"},
    settings={"max_length": 128, "seq_lens": (128,), "truncation": "head"},
    profiles={"quick": {"test_size": 408, "calibration_size": 300, "train_size": 0}},
    offline=False,
    order=130,
)
def load() -> Any:
    """GLUE MRPC sentence pairs: paraphrase or not (online)."""
    raise NotImplementedError  # offline=False: never called
