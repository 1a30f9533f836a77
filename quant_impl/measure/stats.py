"""Paired statistics for comparing a method's predictions with FP32's on the same test reviews."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion (well-behaved near 0 and 1, unlike the normal interval).

    Example:
        >>> lo, hi = wilson_interval(1700, 2000)
        >>> round(lo, 4), round(hi, 4)
        (0.8337, 0.865)
    """
    if trials <= 0:
        raise ValueError("wilson_interval needs at least one trial")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(reference: Sequence[int], candidate: Sequence[int], labels: Sequence[int]) -> float:
    """Two-sided exact McNemar p-value: do the two classifiers err on different reviews more than chance says?

    Only discordant reviews count (b: reference right and candidate wrong, c: the reverse); under the null
    hypothesis b ~ Binomial(b + c, 1/2). Identical predictions give p = 1.

    Example:
        >>> mcnemar_exact([1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1])
        1.0
    """
    if not len(reference) == len(candidate) == len(labels):
        raise ValueError("mcnemar_exact needs predictions and labels of the same length")
    # Python ints throughout: predictions may be tensors, and 2**n overflows int64 once 63 reviews disagree
    b = sum(int(r) == int(y) != int(c) for r, c, y in zip(reference, candidate, labels))
    c = sum(int(c) == int(y) != int(r) for r, c, y in zip(reference, candidate, labels))
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(0, min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def agreement(reference: Sequence[int], candidate: Sequence[int]) -> float:
    """Share of reviews on which both classifiers predict the same label."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError("agreement needs two non-empty prediction lists of the same length")
    return sum(r == c for r, c in zip(reference, candidate)) / len(reference)


def paired_drop_interval(drop: float, disagreement: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95 % interval of the paired accuracy difference (reference minus candidate, as fractions) on ``n`` reviews.

    With two labels, two classifiers that disagree on a review have exactly one of them right, so the discordant
    share is the ``disagreement`` (1 - agreement) and the net share the ``drop``: b/n - c/n = drop and
    (b + c)/n = disagreement. The per-review difference takes values +1, -1 and 0, so its variance is
    disagreement - drop^2, and the interval is the normal (Wald) one of its mean.

    Example:
        >>> lo, hi = paired_drop_interval(0.001, 0.01, 2000)
        >>> round(lo, 4), round(hi, 4)
        (-0.0034, 0.0054)
    """
    if n <= 0:
        raise ValueError("paired_drop_interval needs at least one review")
    if not 0.0 <= disagreement <= 1.0 or abs(drop) > disagreement + 1e-12:
        raise ValueError(f"need |drop| <= disagreement <= 1, got drop {drop} and disagreement {disagreement}")
    half = z * math.sqrt(max(disagreement - drop * drop, 0.0) / n)
    return drop - half, drop + half


# Resamples of the paired bootstrap (saved with each cell): enough for stable 2.5/97.5 % quantiles.
BOOTSTRAP_RESAMPLES = 2000


def paired_bootstrap_drop(
    reference: Sequence[int], candidate: Sequence[int], labels: Sequence[int],
    metric: Callable[[np.ndarray, np.ndarray], float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``metric(reference) - metric(candidate)`` from a paired bootstrap: each resample draws
    the same test rows for both, so what the two share cancels (a macro-F1 or one class's F1 has no closed-form
    paired interval, unlike accuracy). Seeded: the same inputs and seed give the same interval.

    Example:
        >>> lo, hi = paired_bootstrap_drop([1, 0, 1, 1] * 50, [1, 0, 0, 1] * 50, [1, 0, 1, 1] * 50,
        ...                                lambda p, y: float(np.mean(p == y)))
        >>> lo < 0.25 < hi
        True
    """
    ref, cand, true = (np.asarray(x, dtype=np.int64) for x in (reference, candidate, labels))
    if not len(ref) == len(cand) == len(true) or len(true) == 0:
        raise ValueError(f"need equally long, non-empty predictions and labels, got {len(ref)}, {len(cand)}, {len(true)}")
    rng = np.random.default_rng(seed)
    drops = np.empty(resamples)
    for i in range(resamples):
        rows = rng.integers(0, len(true), len(true))
        drops[i] = metric(ref[rows], true[rows]) - metric(cand[rows], true[rows])
    tail = 100 * (1 - level) / 2
    return float(np.percentile(drops, tail)), float(np.percentile(drops, 100 - tail))
