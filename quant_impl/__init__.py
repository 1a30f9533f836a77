"""quantbench's library: data, models, fine-tuning, quantization methods, measurement and reports.

Heavy modules (torch, transformers, datasets) load on first use of the names below, so ``quantbench --help``
answers at once.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from quant_impl.measure.cpu_class import FORCE_CPU_CLASS_ENV, cap_libraries

__version__ = "0.1.0"

# The forced-fallback switch reaches torch's, oneDNN's and fbgemm's kernel choice only if it is in the environment
# before their first kernel runs: every entry point (CLI, pytest, the memory child) imports this package first.
cap_libraries(os.environ, os.environ.get(FORCE_CPU_CLASS_ENV))

_EXPORTS = {
    "RunConfig": "quant_impl.config",
    "PROFILES": "quant_impl.config",
    "QuantbenchError": "quant_impl.errors",
    "load_splits": "quant_impl.data",
    "load_imdb": "quant_impl.data",
    "load_model": "quant_impl.models",
    "load_tokenizer": "quant_impl.models",
    "tiny_model": "quant_impl.models",
    "get_baseline": "quant_impl.train",
    "fine_tune": "quant_impl.train",
    "Baseline": "quant_impl.train",
    "evaluate": "quant_impl.measure.accuracy",
    "EvalResult": "quant_impl.measure.accuracy",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'quant_impl' has no attribute {name!r}")
