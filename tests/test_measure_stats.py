from __future__ import annotations

import math

import pytest

from quant_impl.measure.stats import agreement, mcnemar_exact, wilson_interval


def test_wilson_interval_known_values() -> None:
    # Reference values from the closed form (Wilson 1927), z = 1.96.
    lo, hi = wilson_interval(1700, 2000)
    assert (round(lo, 4), round(hi, 4)) == (0.8337, 0.865)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(1 - hi) and lo < 0.5 < hi


def test_wilson_interval_narrows_with_more_trials() -> None:
    small, large = wilson_interval(85, 100), wilson_interval(850, 1000)
    assert large[1] - large[0] < small[1] - small[0]


def test_mcnemar_exact_by_hand() -> None:
    labels = [1] * 10
    reference = [1] * 10
    candidate = [0, 0, 0] + [1] * 7  # b = 3 discordant the one way, c = 0
    assert mcnemar_exact(reference, candidate, labels) == pytest.approx(2 * (1 / 8))
    # b = 5, c = 5: perfectly balanced disagreement is no evidence of a difference
    ref = [1] * 5 + [0] * 5
    cand = [0] * 5 + [1] * 5
    assert mcnemar_exact(ref, cand, [1] * 5 + [1] * 5) == pytest.approx(1.0)
    # b = 10, c = 0: p = 2 / 2**10
    assert mcnemar_exact([1] * 10, [0] * 10, [1] * 10) == pytest.approx(2 / 1024)


def test_mcnemar_exact_on_tensors_with_many_discordant_reviews() -> None:
    """The evaluation's predictions are tensors; 100 one-sided flips (2**100 outcomes) must not overflow int64
    (a base-model run died here: "int too big to convert")."""
    import torch

    labels = torch.ones(300, dtype=torch.int64)
    candidate = labels.clone()
    candidate[:100] = 0
    p = mcnemar_exact(labels, candidate, labels)
    assert p == pytest.approx(2 / 2**100) and p > 0
    candidate[100:200] = 0
    assert mcnemar_exact(labels, candidate, labels) == pytest.approx(2 / 2**200)


def test_mcnemar_identical_predictions() -> None:
    assert mcnemar_exact([0, 1], [0, 1], [1, 1]) == 1.0


def test_agreement_and_bad_input() -> None:
    assert agreement([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    with pytest.raises(ValueError):
        agreement([1], [1, 0])
    with pytest.raises(ValueError):
        mcnemar_exact([1], [1], [1, 0])
    assert not math.isnan(wilson_interval(1, 1)[0])
