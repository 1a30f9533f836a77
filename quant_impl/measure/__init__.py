"""Measurements, one module per quantity; each returns a dataclass that carries its unit.

Names are imported on first use: ``quant_impl.measure.memory``'s child process must not pay for torch unless the
work it measures imports it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvalResult", "evaluate", "scores"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from quant_impl.measure import accuracy

        return getattr(accuracy, name)
    raise AttributeError(f"module 'quant_impl.measure' has no attribute {name!r}")
