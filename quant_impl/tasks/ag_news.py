"""AG News: news titles and descriptions in 4 topics. Online only: no PyPI package ships it.

``--task ag-news --dataset hub`` reads ``datasets.load_dataset("ag_news")`` (120,000 train / 7,600 test, balanced);
a local ``save_to_disk`` copy of that DatasetDict works offline (``--dataset PATH``).
"""

from __future__ import annotations

from typing import Any

from quant_impl.tasks.registry import register_task


@register_task(
    "ag-news",
    labels=("World", "Sports", "Business", "Sci/Tech"),
    primary_metric="accuracy",
    metric_reason="balanced classes (30,000 train rows each)",
    source="AG News (Zhang et al. 2015) via datasets.load_dataset('ag_news')",
    cleaning="none beyond exact-duplicate removal",
    hub=("ag_news",),
    settings={"max_length": 128, "seq_lens": (128,)},
    profiles={"quick": {"test_size": 2000, "calibration_size": 1000}},
    offline=False,
    order=120,
)
def load() -> Any:
    """AG News titles and descriptions, 4 topics (online)."""
    raise NotImplementedError  # offline=False: never called
