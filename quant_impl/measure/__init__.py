"""Measurements, one module per quantity; each returns a dataclass that carries its unit."""

from quant_impl.measure.accuracy import EvalResult, evaluate, scores

__all__ = ["EvalResult", "evaluate", "scores"]
