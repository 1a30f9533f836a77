"""``--fail-on METRIC:THRESHOLD`` rules: parsing them and deciding whether a change breaks one.

The grammar is pytest-benchmark's ``--benchmark-compare-fail``: ``METRIC:N%`` gates the change relative to BASE,
``METRIC:X`` the absolute change. A rule only fails on a change for the worse strictly larger than its threshold.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from quant_impl.errors import QuantbenchError
from quant_impl.formatting import UNITS, amount_text, value_text
from quant_impl.history.metrics import METRICS, Metric

RULE_GRAMMAR = "METRIC:N% (change relative to BASE) or METRIC:X (absolute change), e.g. accuracy_drop:0.5 or median:10%"
# pytest-benchmark's parse_compare_fail grammar, with any metric name (checked against METRICS after) and
# decimal percentages allowed.
_RULE = re.compile(
    r"^(?P<metric>[A-Za-z_][A-Za-z0-9_]*):"
    r"(?:(?P<percentage>[0-9]*\.?[0-9]+)%|(?P<difference>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))$"
)
# Worsenings are rounded to this many decimals before the threshold test: (0.883 - 0.878) * 100 is 0.5000000000000004
# points in floats, which must not break accuracy_drop:0.5.
_DECIMALS = 9


@dataclass(frozen=True)
class _Check:
    """A parsed rule. ``fails(base, new)`` is None when NEW keeps to it, else why it does not."""

    metric: Metric
    threshold: float
    text: str  # the rule as the user wrote it, quoted back in messages

    def worsening(self, base: float, new: float) -> float:
        raise NotImplementedError

    def fails(self, base: float, new: float) -> str | None:
        """Why NEW breaks this rule against BASE, or None.

        Args:
            base: the metric's value in BASE (a fraction for accuracy/F1, seconds for latency, ...).
            new: its value in NEW.
        """
        worse = round(self.worsening(base, new), _DECIMALS)
        if worse <= self.threshold:
            return None
        return self._describe(base, new, worse)

    def _describe(self, base: float, new: float, worse: float) -> str:
        raise NotImplementedError

    def _change_verb(self) -> str:
        return "fell" if self.metric.higher_is_better else "rose"

    def _values(self, base: float, new: float) -> str:
        unit = UNITS.get(self.metric.key, "")
        return f"{value_text(self.metric.key, base)} -> {value_text(self.metric.key, new)}{unit}"


@dataclass(frozen=True)
class PercentageCheck(_Check):
    """``METRIC:N%``: fails when NEW is more than N % of BASE worse (like pytest-benchmark's
    PercentageRegressionCheck, in the metric's own direction).

    Example:
        >>> PercentageCheck(METRICS["median"], 10.0, "median:10%").fails(0.010, 0.0115)
        'median rose by 15.0% (10.000 -> 11.500 ms), more than 10%'
    """

    def worsening(self, base: float, new: float) -> float:
        change = base - new if self.metric.higher_is_better else new - base
        if base == 0:
            # No relative change from zero: any worsening is infinitely large, none is none.
            return math.copysign(math.inf, change) if change else 0.0
        return change / abs(base) * 100

    def _describe(self, base: float, new: float, worse: float) -> str:
        return (
            f"{self.metric.key} {self._change_verb()} by {worse:.1f}% ({self._values(base, new)}), "
            f"more than {self.threshold:g}%"
        )


@dataclass(frozen=True)
class DifferenceCheck(_Check):
    """``METRIC:X``: fails when NEW is worse than BASE by more than X in the metric's rule unit:
    percentage points for accuracy/F1, seconds for latency, bytes for size, MB for peak_rss, x for speedup
    (like pytest-benchmark's DifferenceRegressionCheck).

    Example:
        >>> DifferenceCheck(METRICS["accuracy_drop"], 0.5, "accuracy_drop:0.5").fails(0.883, 0.833)
        'accuracy dropped 5.00 points (0.8830 -> 0.8330), more than 0.5'
    """

    def worsening(self, base: float, new: float) -> float:
        change = base - new if self.metric.higher_is_better else new - base
        return change * 100 if self.metric.points else change

    def _describe(self, base: float, new: float, worse: float) -> str:
        if self.metric.points:
            values = self._values(base, new)
            return f"{self.metric.key} dropped {worse:.2f} points ({values}), more than {self.threshold:g}"
        return (
            f"{self.metric.key} {self._change_verb()} by {amount_text(self.metric.key, worse)} "
            f"({self._values(base, new)}), more than {self.threshold:g}"
        )


Check = PercentageCheck | DifferenceCheck


def parse_rule(text: str, source: str = "--fail-on") -> Check:
    """Parse one ``METRIC:THRESHOLD`` rule.

    Args:
        text: the rule, e.g. ``accuracy_drop:0.5`` (points), ``median:10%`` or ``min:0.002`` (seconds).
        source: where it came from, named in the error (a flag or a pyproject table).

    Example:
        >>> parse_rule("median:10%")
        PercentageCheck(metric=Metric(name='median', ...), threshold=10.0, text='median:10%')
    """
    if not isinstance(text, str):
        raise QuantbenchError(f"{source}: rule {text!r} is not a string; write {RULE_GRAMMAR}")
    match = _RULE.match(text.strip())
    if match is None:
        raise QuantbenchError(f"{source} {text!r}: cannot read this rule; write {RULE_GRAMMAR}")
    name = match["metric"]
    if name not in METRICS:
        raise QuantbenchError(f"{source} {text!r}: unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    metric = METRICS[name]
    if match["percentage"] is not None:
        if metric.points:
            raise QuantbenchError(
                f"{source} {text!r}: {name} is measured in percentage points, not relative to BASE; "
                f"write {name}:0.5 to allow a drop of half a point"
            )
        return PercentageCheck(metric, float(match["percentage"]), text.strip())
    return DifferenceCheck(metric, float(match["difference"]), text.strip())


def parse_rules(texts: Sequence[str], source: str = "--fail-on") -> list[Check]:
    """Parse every rule; the first bad one raises a QuantbenchError naming it and ``source``."""
    return [parse_rule(text, source) for text in texts]

