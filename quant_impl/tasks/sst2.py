"""SST-2 (GLUE): Stanford Sentiment Treebank sentences, positive or negative. Online only: no PyPI package ships it.

``--task sst2 --dataset hub`` reads ``datasets.load_dataset("glue", "sst2")``; GLUE's test labels are hidden (-1),
so its labelled ``validation`` split (872 sentences) is the test split, and calibration comes out of ``train``.
A local ``save_to_disk`` copy of that DatasetDict works offline (``--dataset PATH``).
"""

from __future__ import annotations

from typing import Any

from quant_impl.tasks.registry import register_task


@register_task(
    "sst2",
    labels=("negative", "positive"),
    primary_metric="accuracy",
    metric_reason="near-balanced (56 % positive in train), and GLUE reports accuracy",
    source="GLUE SST-2 (Socher et al. 2013) via datasets.load_dataset('glue', 'sst2'), validation split as test",
    cleaning="none beyond exact-duplicate removal; the hub's columns sentence -> text",
    hub=("glue", "sst2"),
    hub_columns={"sentence": "text"},
    hub_splits={"train": "train", "test": "validation"},
    settings={"max_length": 64, "seq_lens": (64,)},
    profiles={"quick": {"test_size": 872, "calibration_size": 500}},
    offline=False,
    order=110,
)
def load() -> Any:
    """GLUE SST-2 movie-review sentences, positive or negative (online)."""
    raise NotImplementedError  # offline=False: never called
