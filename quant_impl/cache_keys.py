"""The keys that address cached results computed from a baseline: a method's test-split evaluation and the
mixed-precision layer selection. Each key holds everything that can change what it addresses, so a hit is the
same result; keys that change for no reason only cost a recomputation, a key that misses an input serves a
stale result."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from quant_impl.cache import cache_key, source_fingerprint
from quant_impl.config import RunConfig
from quant_impl.data import data_identity, tokenization_identity
from quant_impl.measure.machine import effective_cpu_class, machine_versions

PACKAGE = Path(__file__).parent

# The package's sources that build, feed or score a method: a change to any of them invalidates cached evaluations
# (tests/test_cache.py checks that each one reaches the key).
EVALUATION_SOURCES = ("methods/*.py", "qmath.py", "measure/accuracy.py", "data.py", "models.py", "train.py")

# What the sensitivity analysis and the selection run on; the rest of the package cannot change their outcome.
MIXED_SELECTION_SOURCES = ("methods/mixed.py", "methods/sensitivity.py", "qmath.py", "measure/accuracy.py")


def evaluation_sources(package: Path = PACKAGE) -> list[Path]:
    return sorted({path for pattern in EVALUATION_SOURCES for path in package.glob(pattern)})


def evaluation_key(cfg: RunConfig, baseline: Any, method_config: Any, package: Path = PACKAGE,
                   split: str = "test") -> str:
    """Cache key of a method's evaluation on ``split`` (the test split unless ``quantbench tune`` scores its tuning
    split): the checkpoint, the method's config, the token ids of the splits (reviews, tokenizer, truncation), the
    eval batch size, library versions and the code."""
    return cache_key({
        **({} if split == "test" else {"split": split}),  # test keys stay those of the runs before tune
        "checkpoint": baseline.checkpoint.name,
        "config": method_config,
        "test": data_identity(cfg),
        "tokens": tokenization_identity(cfg, baseline.tokenizer),
        "eval_batch_size": cfg.eval_batch_size,
        "versions": machine_versions(),
        # int8 kernels, their activation range and the attention "auto" picks differ by CPU class (so do logits)
        "cpu_class": effective_cpu_class(),
        "code": source_fingerprint(evaluation_sources(package)),
    })


def mixed_selection_key(baseline: Any, config: Any, method: str, device: str, budget: Any,
                        package: Path = PACKAGE) -> str:
    """Cache key of a mixed-precision layer selection: the method's config (a dataclass), method and device, the
    calibration split, the accuracy budget, torch and the code that analyses and selects. The checkpoint is not
    in it: the caller names the entry after it."""
    return cache_key({
        "config": dataclasses.asdict(config), "method": method, "device": device,
        "code": source_fingerprint(package / name for name in MIXED_SELECTION_SOURCES),
        "calibration": data_identity(baseline.config), "torch": torch.__version__,
        "budget": budget,
    })
