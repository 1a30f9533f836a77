"""Property and agreement tests of the reference quantization math (quant_impl/qmath.py).

Hypothesis runs each property with the profile chosen in tests/conftest.py: "ci" (200 derandomized examples,
the default) or "deep" (HYPOTHESIS_PROFILE=deep, 5000 random examples).

Float tolerance. quantize computes x * fl(1/s) in float32, as the kernels do (qmath's docstring). The two roundings
(each of relative size <= 2^-24) put x/s off by <= 2^-23 |x/s|, which can round to the integer on the far side of
a tie and move x' by up to 2^-23 |x| beyond s/2; dequantize's product adds <= 2^-24 |x'|. Hence
|x - x'| <= s/2 + 2^-23 |x| + 2^-24 |x'|, and the tests allow s/2 + 2 eps32 max(|x|, |x'|) (eps32 = 2^-23), about
twice that. The checks run in float64, so they add no rounding of their own.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import replace
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quant_impl.qmath import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    QParams,
    QuantSpec,
    dequantize,
    fake_quantize,
    int_range,
    max_abs_error,
    mean_abs_error,
    pack_bits,
    pack_int4,
    packed_nbytes,
    qparams_from_range,
    qparams_from_tensor,
    quantize,
    relative_error,
    representable_range,
    sqnr_db,
    unpack_bits,
    unpack_int4,
)

EPS32 = torch.finfo(torch.float32).eps
TINY32 = torch.finfo(torch.float32).tiny
OBSERVERS = (MinMaxObserver, MovingAverageMinMaxObserver, PercentileObserver, MSEObserver)
# torch warns that its quantized-tensor API (used here only as the thing to agree with) is deprecated.
TORCH_QUANT_DEPRECATED = "ignore:torch.quantize_per_tensor, torch.quantize_per_channel:UserWarning"

# ---------------------------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------------------------

# Magnitudes from 1e-30 to 1e30 (a spread real tensors never reach but the math must survive), plus zero, -0.0 and
# subnormals (st.floats of width 32 draws them too).
_scaled = st.builds(lambda m, e: float(np.float32(m * 10.0**e)), st.floats(-1, 1), st.integers(-30, 30))
_E30 = float(np.float32(1e30))
values = st.one_of(_scaled, st.floats(-_E30, _E30, width=32), st.sampled_from([0.0, -0.0, 1.4e-45, -1e-40]))
specs = st.builds(
    QuantSpec,
    bits=st.integers(2, 16),
    signed=st.booleans(),
    symmetric=st.booleans(),
    symmetric_scale=st.sampled_from(["half_range", "no_clip"]),
)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)


def _tensor(draw: st.DrawFn, shape: tuple[int, ...]) -> torch.Tensor:
    """Either magnitudes mixed freely, or values of one magnitude (where most land between grid points)."""
    if draw(st.booleans()):
        return torch.from_numpy(draw(hnp.arrays(np.float32, shape, elements=values)))
    magnitude = 10.0 ** draw(st.integers(-30, 30))
    units = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1)))
    return torch.from_numpy((units * magnitude).astype(np.float32))


@st.composite
def cases(draw: st.DrawFn, self_calibrated: bool | None = None) -> tuple[torch.Tensor, QParams]:
    """Data and parameters for any bit width, signedness, symmetry, per tensor or per channel along any axis.

    The parameters come from the data itself or from other data of the same shape, so that many values also
    fall outside the range.
    """
    shape = draw(shapes)
    x = _tensor(draw, shape)
    spec = replace(draw(specs), axis=draw(st.none() | st.integers(-len(shape), len(shape) - 1)))
    own = draw(st.booleans()) if self_calibrated is None else self_calibrated
    return x, qparams_from_tensor(x if own else _tensor(draw, shape), spec)


def _per_element(t: torch.Tensor, x: torch.Tensor, qp: QParams) -> torch.Tensor:
    """A per-tensor or per-channel parameter expanded to x's shape, as float64."""
    if qp.spec.axis is not None:
        shape = [1] * x.dim()
        shape[qp.spec.axis] = -1
        t = t.reshape(shape)
    return t.to(torch.float64).expand(x.shape)


def _tolerance(x: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
    """The float32 slack on s/2 derived in the module docstring."""
    return 2 * EPS32 * torch.maximum(x.double().abs(), xq.double().abs())


def _channel_span(x: torch.Tensor, qp: QParams) -> torch.Tensor:
    """Per element, the width of its channel's range (widened to include 0), as float64."""
    if qp.spec.axis is None:
        return (x.double().clamp(min=0).max() - x.double().clamp(max=0).min()).expand(x.shape)
    rows = x.double().movedim(qp.spec.axis, 0).reshape(x.shape[qp.spec.axis], -1)
    return _per_element(rows.clamp(min=0).amax(dim=1) - rows.clamp(max=0).amin(dim=1), x, qp)


def _roundtrip(x: torch.Tensor, qp: QParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    q = quantize(x, qp)
    xq = dequantize(q, qp)
    return q, xq, (x.double() - xq.double()).abs()


# ---------------------------------------------------------------------------------------------------------------
# The bounds
# ---------------------------------------------------------------------------------------------------------------


@given(cases())
def test_error_is_at_most_half_a_step_inside_the_range(case: tuple[torch.Tensor, QParams]) -> None:
    x, qp = case
    _, xq, error = _roundtrip(x, qp)
    lo, hi = (_per_element(end, x, qp) for end in representable_range(qp))
    inside = (x.double() >= lo) & (x.double() <= hi)
    bound = _per_element(qp.scale, x, qp) / 2 + _tolerance(x, xq)
    assert bool((error <= bound)[inside].all()), (error - bound)[inside].max()


@given(cases())
def test_values_beyond_the_range_land_on_its_end(case: tuple[torch.Tensor, QParams]) -> None:
    x, qp = case
    q, xq, error = _roundtrip(x, qp)
    lo, hi = (_per_element(end, x, qp) for end in representable_range(qp))
    x64 = x.double()
    above, below = x64 > hi, x64 < lo
    assert bool((q[above] == qp.spec.qmax).all()) and bool((q[below] == qp.spec.qmin).all())
    assert torch.equal(xq.double()[above], hi[above]) and torch.equal(xq.double()[below], lo[below])
    # The error is the distance to the range (0 inside it), give or take half a step.
    distance = torch.clamp(lo - x64, min=0) + torch.clamp(x64 - hi, min=0)
    assert torch.equal(error[above | below], distance[above | below])
    assert bool((error <= distance + _per_element(qp.scale, x, qp) / 2 + _tolerance(x, xq)).all())


# A case where the span term is needed: 16-bit asymmetric, the top value 1.2e-6 beyond s/2 (elementwise slack 2e-9).
_NEEDS_SPAN_SLACK = torch.tensor([-58.776329040527344, 0.008522667922079563])


@given(cases(self_calibrated=True))
@example((_NEEDS_SPAN_SLACK, qparams_from_tensor(_NEEDS_SPAN_SLACK, QuantSpec(bits=16, symmetric=False))))
def test_parameters_from_the_data_cover_every_value_to_half_a_step(case: tuple[torch.Tensor, QParams]) -> None:
    x, qp = case
    _, xq, error = _roundtrip(x, qp)
    # At the range's ends two more float32 roundings move the grid: the scale's (s (qmax - qmin) is the span to
    # within 2^-24 of it) and the zero point's min/s (within 2^-24 of min); 2 eps32 = 2^-22 of the span covers both.
    spans = _channel_span(x, qp)
    bound = _per_element(qp.scale, x, qp) / 2 + _tolerance(x, xq) + 2 * EPS32 * spans
    assert bool((error <= bound).all()), (error - bound).max()


@given(cases())
def test_requantizing_the_dequantized_values_is_a_fixed_point(case: tuple[torch.Tensor, QParams]) -> None:
    x, qp = case
    q = quantize(x, qp)
    assert torch.equal(quantize(dequantize(q, qp), qp), q)


@given(st.data())
def test_fake_quantization_is_monotone_non_decreasing(data: st.DataObject) -> None:
    channels, length = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 40))
    x = _tensor(data.draw, (channels, length))
    spec = replace(data.draw(specs), axis=data.draw(st.sampled_from([None, 0, -2])))
    qp = qparams_from_tensor(_tensor(data.draw, (channels, length)) if data.draw(st.booleans()) else x, spec)
    if spec.axis is None:
        x = x.flatten().sort().values.reshape(channels, length)
        xq = dequantize(quantize(x, qp), qp).flatten()
    else:
        x = x.sort(dim=1).values
        xq = dequantize(quantize(x, qp), qp)
    assert bool((xq.diff(dim=-1) >= 0).all())


@given(cases())
def test_zero_is_exactly_representable(case: tuple[torch.Tensor, QParams]) -> None:
    x, qp = case
    assert bool(((qp.zero_point >= qp.spec.qmin) & (qp.zero_point <= qp.spec.qmax)).all())
    for zero in (torch.zeros_like(x), -torch.zeros_like(x)):
        q = quantize(zero, qp)
        assert torch.equal(q.to(torch.int32), _per_element(qp.zero_point, x, qp).to(torch.int32))
        assert bool((dequantize(q, qp) == 0).all())


# ---------------------------------------------------------------------------------------------------------------
# Degenerate inputs
# ---------------------------------------------------------------------------------------------------------------

_degenerate_values = st.one_of(
    st.just(0.0),
    st.builds(lambda m, e: float(np.float32(m * 10.0**e)), st.floats(-1, 1).filter(bool), st.integers(-30, 30)),
    st.floats(-TINY32, TINY32, width=32),  # subnormals
    st.sampled_from([1e-30, -1e-30, 1e30, -1e30, 1.4e-45, -1.4e-45]),
)


@given(st.data())
def test_constant_tiny_huge_and_subnormal_data_give_valid_parameters(data: st.DataObject) -> None:
    shape = data.draw(st.sampled_from([(1,), (3,), (2, 5), (1, 1, 1)]))
    if data.draw(st.booleans()):
        x = torch.full(shape, data.draw(_degenerate_values), dtype=torch.float32)  # constant (all-zero included)
    else:
        x = torch.from_numpy(data.draw(hnp.arrays(np.float32, shape, elements=_degenerate_values)))
    spec = replace(data.draw(specs), axis=data.draw(st.none() | st.just(0)))
    qp = qparams_from_tensor(x, spec)
    assert bool(torch.isfinite(qp.scale).all()) and bool((qp.scale >= TINY32).all())
    assert bool(((qp.zero_point >= spec.qmin) & (qp.zero_point <= spec.qmax)).all())
    _, xq, error = _roundtrip(x, qp)
    assert bool(torch.isfinite(xq).all())
    bound = _per_element(qp.scale, x, qp) / 2 + _tolerance(x, xq) + 2 * EPS32 * _channel_span(x, qp)
    assert bool((error <= bound).all())
    assert bool((dequantize(quantize(torch.zeros_like(x), qp), qp) == 0).all())


@pytest.mark.parametrize("spec", [QuantSpec(), QuantSpec(symmetric=False), QuantSpec(bits=4, signed=False)])
def test_an_all_zero_tensor_gets_the_smallest_normal_scale(spec: QuantSpec) -> None:
    qp = qparams_from_tensor(torch.zeros(7), spec)
    assert qp.scale.item() == TINY32 and 1.0 / qp.scale.item() < math.inf
    assert torch.equal(dequantize(quantize(torch.zeros(7), qp), qp), torch.zeros(7))


def test_infinities_clamp_to_the_range_ends() -> None:
    qp = qparams_from_range(-1.0, 1.0, QuantSpec(bits=4))
    lo, hi = representable_range(qp)
    xq = dequantize(quantize(torch.tensor([-math.inf, math.inf]), qp), qp)
    assert xq.tolist() == [lo.item(), hi.item()]


def test_a_range_too_wide_for_float32_is_refused() -> None:
    with pytest.raises(ValueError, match="too wide for float32"):
        qparams_from_range(-3.4e38, 3.4e38, QuantSpec())
    assert torch.isfinite(qparams_from_range(-3.3e38, 3.3e38, QuantSpec(symmetric=False)).scale)


# ---------------------------------------------------------------------------------------------------------------
# Granularity and bits
# ---------------------------------------------------------------------------------------------------------------


@given(st.data())
def test_per_channel_is_never_coarser_than_per_tensor(data: st.DataObject) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=6))
    x = _tensor(data.draw, shape)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    spec = data.draw(specs)
    per_tensor = qparams_from_tensor(x, spec)
    per_channel = qparams_from_tensor(x, replace(spec, axis=axis))
    # Each channel's range lies inside the tensor's, so its step is never larger...
    assert bool((per_channel.scale <= per_tensor.scale).all())
    # ...and its worst error on every channel stays within the per-tensor bound of half a (larger) step.
    _, xq, error = _roundtrip(x, per_channel)
    slack = _tolerance(x, xq) + 2 * EPS32 * _channel_span(x, per_channel)
    assert bool((error <= per_tensor.scale.double() / 2 + slack).all())


def test_per_channel_error_can_exceed_per_tensor_error_on_a_lucky_grid() -> None:
    # Why the previous test compares against the per-tensor *bound* and not its measured error: channel 0's value
    # 1.0 falls exactly on the per-tensor grid (step 1) but is clipped by half its own, finer step (1/127.5).
    x = torch.tensor([[0.0, 1.0], [0.0, 127.5]])
    _, _, per_tensor_error = _roundtrip(x, qparams_from_tensor(x, QuantSpec()))
    _, _, per_channel_error = _roundtrip(x, qparams_from_tensor(x, QuantSpec(axis=0)))
    assert per_tensor_error[0].max() == 0 and per_channel_error[0].max() > 0


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_per_channel_along_any_axis_equals_per_tensor_on_each_slice(axis: int) -> None:
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(1)) * torch.arange(1, 6)
    for spec in (QuantSpec(axis=axis), QuantSpec(bits=4, signed=False, symmetric=False, axis=axis)):
        qp = qparams_from_tensor(x, spec)
        assert qp.scale.shape == (x.shape[axis],)
        q = quantize(x, qp)
        for c, channel in enumerate(x.unbind(axis)):
            sliced = qparams_from_tensor(channel, replace(spec, axis=None))
            assert qp.scale[c] == sliced.scale and qp.zero_point[c] == sliced.zero_point
            assert torch.equal(q.select(axis, c), quantize(channel, sliced))


def test_sqnr_rises_about_6_db_per_bit_on_uniform_data() -> None:
    # Uniform x on [-1, 1] with step s = 2 / (2^n - 1): noise s^2/12 against power 1/3, so SQNR = 20 log10(2^n - 1)
    # and one more bit adds 20 log10((2^(n+1) - 1) / (2^n - 1)): 7.36 dB at n = 2, tending to 6.02 dB. 2^16 samples
    # estimate each SQNR to ~0.015 dB (std; the error is uniform, so its square has relative std 0.9/sqrt(N)), a
    # difference of two to ~0.02 dB: 0.15 dB is a 7-sigma tolerance on the exact step; [5.9, 7.5] dB is "about 6".
    x = torch.rand(1 << 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for spec in (QuantSpec(symmetric=False), QuantSpec()):
        sqnr = {}
        for bits in range(2, 17):
            qp = qparams_from_tensor(x, replace(spec, bits=bits))
            sqnr[bits] = sqnr_db(x, fake_quantize(x, qp))
        for bits in range(2, 16):
            gain = sqnr[bits + 1] - sqnr[bits]
            expected = 20 * math.log10((2 ** (bits + 1) - 1) / (2**bits - 1))
            assert abs(gain - expected) < 0.15 and 5.9 < gain < 7.5, (spec, bits, gain, expected)


def test_every_bit_width_and_scheme_meets_the_bound_on_data_with_outliers() -> None:
    # The properties above draw their specs at random; this sweep guarantees each combination is exercised.
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(4, 50, generator=generator) * torch.tensor([[1e-3], [1.0], [10.0], [1e4]])
    x[:, :3] *= 100  # outliers beyond the calibration data below
    calibration = torch.randn(4, 50, generator=generator) * torch.tensor([[1e-3], [1.0], [10.0], [1e4]])
    for bits in range(2, 17):
        for signed in (True, False):
            for symmetric in (True, False):
                for axis in (None, 0):
                    qp = qparams_from_tensor(calibration, QuantSpec(bits, signed, symmetric, axis))
                    _, xq, error = _roundtrip(x, qp)
                    lo, hi = (_per_element(end, x, qp) for end in representable_range(qp))
                    inside = (x.double() >= lo) & (x.double() <= hi)
                    bound = _per_element(qp.scale, x, qp) / 2 + _tolerance(x, xq)
                    assert bool((error <= bound)[inside].all()), (bits, signed, symmetric, axis)
                    outside_error = torch.clamp(lo - x.double(), min=0) + torch.clamp(x.double() - hi, min=0)
                    assert torch.equal(error[~inside], outside_error[~inside]), (bits, signed, symmetric, axis)


# ---------------------------------------------------------------------------------------------------------------
# Rounding, ranges, specs
# ---------------------------------------------------------------------------------------------------------------


def test_rounding_is_half_to_even_and_clamps() -> None:
    qp = QParams(torch.tensor(1.0), torch.tensor(0), QuantSpec())
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, -128.5, 1e9])
    assert quantize(x, qp).tolist() == [0, 2, 2, 0, -2, -2, 126, 127, -128, 127]


def test_integer_ranges_and_storage() -> None:
    assert int_range(8, True) == (-128, 127) and int_range(8, False) == (0, 255)
    assert int_range(4, True) == (-8, 7) and int_range(4, False) == (0, 15)
    assert int_range(2, True) == (-2, 1) and int_range(16, False) == (0, 65535)
    expected = {(4, True): torch.int8, (8, False): torch.uint8, (12, True): torch.int16, (16, False): torch.int32}
    for (bits, signed), dtype in expected.items():
        assert QuantSpec(bits, signed).storage_dtype == dtype
        q = quantize(torch.tensor([-1e30, 1e30]), qparams_from_range(-1.0, 1.0, QuantSpec(bits, signed)))
        assert q.dtype == dtype and q.tolist() == list(int_range(bits, signed))
    for bits in (1, 17, 8.0):
        with pytest.raises(ValueError, match="bits must be an integer in 2..16"):
            QuantSpec(bits=bits)  # type: ignore[arg-type]


def test_symmetric_scale_conventions() -> None:
    half = qparams_from_range(-2.0, 1.0, QuantSpec())
    no_clip = qparams_from_range(-2.0, 1.0, QuantSpec(symmetric_scale="no_clip"))
    assert half.scale.item() == np.float32(2.0 / 127.5) and no_clip.scale.item() == np.float32(2.0 / 127)
    assert representable_range(no_clip)[1].item() == np.float32(2.0)  # +amax on the grid, not clipped
    unsigned = qparams_from_range(-2.0, 1.0, QuantSpec(signed=False))
    assert unsigned.zero_point.item() == 128 and unsigned.scale == half.scale


# ---------------------------------------------------------------------------------------------------------------
# Fake quantization
# ---------------------------------------------------------------------------------------------------------------


@given(cases())
def test_fake_quantization_forward_and_straight_through_gradient(case: tuple[torch.Tensor, QParams]) -> None:
    x, qp = case
    leaf = x.clone().requires_grad_()
    y = fake_quantize(leaf, qp)
    assert torch.equal(y.detach(), dequantize(quantize(x, qp), qp))
    y.backward(torch.ones_like(y))
    lo, hi = (_per_element(end, x, qp) for end in representable_range(qp))
    step = _per_element(qp.scale, x, qp)
    x64 = x.double()
    assert leaf.grad is not None and bool(((leaf.grad == 0) | (leaf.grad == 1)).all())
    assert bool((leaf.grad[(x64 >= lo) & (x64 <= hi)] == 1).all())  # inside: 1
    assert bool((leaf.grad[(x64 > hi + step) | (x64 < lo - step)] == 0).all())  # clipped: 0


@given(cases())
def test_fake_quantization_matches_torch_forward_and_gradient(case: tuple[torch.Tensor, QParams]) -> None:
    x, qp = case
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = fake_quantize(ours, qp)
    if qp.spec.axis is None:
        reference = torch.fake_quantize_per_tensor_affine(
            theirs, qp.scale, qp.zero_point, qp.spec.qmin, qp.spec.qmax
        )
    else:
        reference = torch.fake_quantize_per_channel_affine(
            theirs, qp.scale, qp.zero_point, qp.spec.axis % x.dim(), qp.spec.qmin, qp.spec.qmax
        )
    y.sum().backward()
    reference.sum().backward()
    # torch's per-channel kernel passes round(x/s) through int64, which wraps for |x/s| >= 2^63 (x = 1, s = 1e-20
    # gives qmin instead of qmax); the reference clamps them. Compare where torch's kernel is in its domain.
    valid = (x.double() / _per_element(qp.scale, x, qp)).abs() < 2.0**62
    assert torch.equal(y[valid], reference[valid]) and torch.equal(ours.grad[valid], theirs.grad[valid])


def test_fake_quantization_keeps_the_input_dtype() -> None:
    x = torch.linspace(-2, 2, 9, dtype=torch.float64, requires_grad=True)
    y = fake_quantize(x, qparams_from_range(-1.0, 1.0, QuantSpec(bits=4)))
    y.sum().backward()
    assert y.dtype == torch.float64 and x.grad is not None and x.grad.tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]


# ---------------------------------------------------------------------------------------------------------------
# INT4 packing
# ---------------------------------------------------------------------------------------------------------------


@given(st.data())
def test_int4_pack_unpack_round_trips_exactly(data: st.DataObject) -> None:
    signed = data.draw(st.booleans())
    qmin, qmax = int_range(4, signed)
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7))
    values = torch.from_numpy(data.draw(hnp.arrays(np.int64, shape, elements=st.integers(qmin, qmax))))
    packed = pack_int4(values, signed=signed)
    assert packed.data.dtype == torch.uint8 and packed.data.numel() == (values.numel() + 1) // 2
    assert packed.padded == (values.numel() % 2 == 1)
    unpacked = unpack_int4(packed)
    assert unpacked.dtype == (torch.int8 if signed else torch.uint8) and unpacked.shape == values.shape
    assert torch.equal(unpacked.to(torch.int64), values)


def test_int4_layout_low_nibble_first_and_padding() -> None:
    packed = pack_int4(torch.tensor([1, -2, 3], dtype=torch.int8))
    assert packed.data.tolist() == [0xE1, 0x03] and packed.padded and packed.shape == (3,)
    assert pack_int4(torch.tensor([15, 0, 9, 10]), signed=False).data.tolist() == [0x0F, 0xA9]
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    qp = qparams_from_tensor(x, QuantSpec(bits=4, axis=0))
    assert torch.equal(unpack_int4(pack_int4(quantize(x, qp))), quantize(x, qp))


def test_int4_rejects_values_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match=r"outside the signed 4-bit range \[-8, 7\]"):
        pack_int4(torch.tensor([0, 8]))
    with pytest.raises(ValueError, match=r"unsigned 4-bit range \[0, 15\]"):
        pack_int4(torch.tensor([-1, 3]), signed=False)
    with pytest.raises(ValueError, match="integer values"):
        pack_int4(torch.tensor([0.5]))


# ---------------------------------------------------------------------------------------------------------------
# n-bit packing (2..8 bits)
# ---------------------------------------------------------------------------------------------------------------


@given(st.data())
def test_nbit_pack_unpack_round_trips_exactly(data: st.DataObject) -> None:
    bits, signed = data.draw(st.integers(2, 8)), data.draw(st.booleans())
    qmin, qmax = int_range(bits, signed)
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9))
    values = torch.from_numpy(data.draw(hnp.arrays(np.int64, shape, elements=st.integers(qmin, qmax))))
    packed = pack_bits(values, bits, signed=signed)
    assert packed.data.dtype == torch.uint8
    assert packed.data.numel() == packed_nbytes(values.numel(), bits) == math.ceil(values.numel() * bits / 8)
    unpacked = unpack_bits(packed)
    assert unpacked.dtype == (torch.int8 if signed else torch.uint8) and unpacked.shape == values.shape
    assert torch.equal(unpacked.to(torch.int64), values)


@given(hnp.arrays(np.int8, hnp.array_shapes(min_dims=1, max_dims=2, max_side=9), elements=st.integers(-8, 7)))
def test_four_bit_stream_is_the_int4_nibble_layout(values: np.ndarray) -> None:
    t = torch.from_numpy(values)
    assert torch.equal(pack_bits(t, 4).data, pack_int4(t).data)


def test_nbit_layout_and_sizes() -> None:
    # 3 bits: 1=001, -2=110, 3=011, 0=000, -1=111, least significant bit first, 15 bits in 2 bytes.
    assert pack_bits(torch.tensor([1, -2, 3, 0, -1]), 3).data.tolist() == [0b11110001, 0b01110000]
    # 2 bits: four values a byte, the first in the lowest pair.
    assert pack_bits(torch.tensor([1, -2, 0, -1]), 2).data.tolist() == [0b11001001]
    assert pack_bits(torch.tensor([3, 0, 2]), 2, signed=False).data.tolist() == [0b100011]
    # a 384 x 384 weight: 2, 3 and 4 bits take a quarter, 3/8 and half the bytes of int8
    assert [packed_nbytes(384 * 384, b) for b in (2, 3, 4, 8)] == [36864, 55296, 73728, 147456]


def test_nbit_rejects_what_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match=r"outside the signed 3-bit range \[-4, 3\]"):
        pack_bits(torch.tensor([0, 4]), 3)
    with pytest.raises(ValueError, match=r"unsigned 2-bit range \[0, 3\]"):
        pack_bits(torch.tensor([-1]), 2, signed=False)
    with pytest.raises(ValueError, match="integer values"):
        pack_bits(torch.tensor([0.5]), 2)
    with pytest.raises(ValueError, match="2..8-bit"):
        pack_bits(torch.tensor([0]), 1)
    packed = pack_bits(torch.tensor([1, 1, 1]), 3)
    with pytest.raises(ValueError, match="must be 2 uint8 bytes"):
        unpack_bits(replace(packed, data=packed.data[:1]))


@given(st.data())
def test_group_wise_weights_stay_within_half_a_step_at_each_bit_width(data: st.DataObject) -> None:
    """Weight-only below 8 bits: symmetric signed values, one scale per group of input features; every weight,
    clipped ones included, lands within half its own group's step, and survives packing unchanged."""
    bits = data.draw(st.sampled_from([2, 3, 4]))
    rows, groups, group = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3)), data.draw(st.sampled_from([2, 4, 8]))
    w = torch.from_numpy(data.draw(hnp.arrays(np.float32, (rows, groups * group),
                                              elements=st.floats(-1e4, 1e4, width=32))))
    grouped = w.reshape(rows * groups, group)
    qp = qparams_from_tensor(grouped, QuantSpec(bits=bits, axis=0))
    q, xq, error = _roundtrip(grouped, qp)
    step = _per_element(qp.scale, grouped, qp)
    assert bool((error <= step / 2 + _tolerance(grouped, xq)).all())
    back = unpack_bits(pack_bits(q, bits)).reshape(q.shape)
    assert torch.equal(back.to(q.dtype), q)
    assert torch.equal(dequantize(back.to(q.dtype), qp), xq)


# ---------------------------------------------------------------------------------------------------------------
# Agreement with torchao and torch
# ---------------------------------------------------------------------------------------------------------------


def _torchao_primitives():  # type: ignore[no-untyped-def]
    # torchao logs its missing CUDA-only libraries on import; harmless here.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    from torchao.quantization import quant_primitives

    return quant_primitives


def _bert_like_weight() -> torch.Tensor:
    # A BERT feed-forward shape with row magnitudes spread over three decades, as real layers have.
    generator = torch.Generator().manual_seed(0)
    return torch.randn(768, 3072, generator=generator) * torch.logspace(-3, 0, 768)[:, None]


def test_per_channel_symmetric_int8_matches_torchao_to_the_last_unit() -> None:
    ao = _torchao_primitives()
    w = _bert_like_weight()
    block = (1, w.shape[1])  # one scale per output channel (row)
    scale, zero_point = ao.choose_qparams_affine(w, ao.MappingType.SYMMETRIC, block, torch.int8)
    q = ao.quantize_affine(w, block, scale, zero_point, torch.int8)
    qp = qparams_from_tensor(w, QuantSpec(bits=8, signed=True, symmetric=True, axis=0))
    assert torch.equal(qp.scale, scale) and torch.equal(qp.zero_point, zero_point)
    assert torch.equal(quantize(w, qp), q)
    assert torch.equal(dequantize(quantize(w, qp), qp), ao.dequantize_affine(q, block, scale, zero_point, torch.int8))


@pytest.mark.filterwarnings(TORCH_QUANT_DEPRECATED)
def test_per_channel_symmetric_int8_matches_torch_to_the_last_unit() -> None:
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    w = _bert_like_weight()
    observer = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    observer(w)
    scale, zero_point = observer.calculate_qparams()
    q = torch.quantize_per_channel(w, scale, zero_point, 0, torch.qint8).int_repr()
    qp = qparams_from_tensor(w, QuantSpec(axis=0))
    assert torch.equal(qp.scale, scale) and torch.equal(qp.zero_point.long(), zero_point)
    assert torch.equal(quantize(w, qp), q)


@given(st.data())
def test_torchao_agreement_holds_on_arbitrary_weights(data: st.DataObject) -> None:
    ao = _torchao_primitives()
    # cols >= 2: with block (1, 1) torchao reduces over an empty dim list, which torch.amin reads as "all dims".
    rows, cols = data.draw(st.integers(1, 8)), data.draw(st.integers(2, 16))
    w = _tensor(data.draw, (rows, cols))
    symmetric, signed = data.draw(st.booleans()), data.draw(st.booleans())
    mapping = ao.MappingType.SYMMETRIC if symmetric else ao.MappingType.ASYMMETRIC
    dtype, block = (torch.int8 if signed else torch.uint8), (1, cols)
    scale, zero_point = ao.choose_qparams_affine(w, mapping, block, dtype)
    qp = qparams_from_tensor(w, QuantSpec(bits=8, signed=signed, symmetric=symmetric, axis=0))
    # torchao drops the channel dimension when there is a single row.
    assert torch.equal(qp.scale, scale.reshape(rows)) and torch.equal(qp.zero_point, zero_point.reshape(rows))
    assert torch.equal(quantize(w, qp), ao.quantize_affine(w, block, scale, zero_point, dtype))


# ---------------------------------------------------------------------------------------------------------------
# Observers
# ---------------------------------------------------------------------------------------------------------------


@st.composite
def batches(draw: st.DrawFn, max_batches: int = 4) -> tuple[list[torch.Tensor], int | None]:
    """Batches of one channel layout (channels on axis 1 when per channel), with varying batch sizes."""
    channels = draw(st.integers(1, 4))
    axis = draw(st.none() | st.just(1))
    elements = st.floats(-1e6, 1e6, width=32)
    sizes = draw(st.lists(st.integers(1, 20), min_size=1, max_size=max_batches))
    return [torch.from_numpy(draw(hnp.arrays(np.float32, (n, channels), elements=elements))) for n in sizes], axis


def _observe(observer, chunks: list[torch.Tensor]):  # type: ignore[no-untyped-def]
    for chunk in chunks:
        assert observer.observe(chunk) is chunk
    return observer


@given(batches())
def test_min_max_observer_sees_the_range_of_all_batches(case: tuple[list[torch.Tensor], int | None]) -> None:
    chunks, axis = case
    lo, hi = _observe(MinMaxObserver(QuantSpec(axis=axis)), chunks).range()
    everything = torch.cat(chunks)
    dim = None if axis is None else 0
    expected = (everything.min(), everything.max()) if dim is None else (everything.amin(0), everything.amax(0))
    assert torch.equal(lo, expected[0]) and torch.equal(hi, expected[1])


def test_moving_average_observer_follows_torchs_update_rule() -> None:
    from torch.ao.quantization.observer import MovingAverageMinMaxObserver as TorchMovingAverage

    generator = torch.Generator().manual_seed(3)
    chunks = [torch.randn(16, 8, generator=generator) * (i + 1) for i in range(6)]
    ours = _observe(MovingAverageMinMaxObserver(QuantSpec(symmetric=False), averaging_constant=0.1), chunks)
    theirs = TorchMovingAverage(averaging_constant=0.1)
    for chunk in chunks:
        theirs(chunk)
    lo, hi = ours.range()
    assert torch.equal(lo, theirs.min_val) and torch.equal(hi, theirs.max_val)
    # The first batch sets the range; later ones move it part of the way.
    first = _observe(MovingAverageMinMaxObserver(averaging_constant=0.5), chunks[:1]).range()
    assert torch.equal(first[1], chunks[0].max())


@given(batches(), st.sampled_from([90.0, 99.0, 99.9, 100.0]))
def test_percentile_observer_brackets_the_order_statistic(
    case: tuple[list[torch.Tensor], int | None], percentile: float
) -> None:
    chunks, axis = case
    bins = 64
    observer = _observe(PercentileObserver(QuantSpec(axis=axis), percentile=percentile, bins=bins), chunks)
    lo, hi = observer.range()
    # Fed in one batch, the same histogram and so the same range.
    once = _observe(PercentileObserver(QuantSpec(axis=axis), percentile=percentile, bins=bins), [torch.cat(chunks)])
    assert torch.equal(once.range()[0], lo) and torch.equal(once.range()[1], hi)
    everything = torch.cat(chunks).double()
    columns = [everything.flatten()] if axis is None else list(everything.unbind(1))
    for c, column in enumerate(columns):
        ordered = column.sort().values
        last = len(ordered) - 1
        i, j = math.floor((100 - percentile) * last / 100), math.ceil(percentile * last / 100)
        amax = float(column.abs().max())
        width = 2 * (2.0 ** math.frexp(max(amax, TINY32))[1]) / bins  # one bin: 2R / bins, R the power of 2 > amax
        low, high = float(lo.reshape(-1)[c]), float(hi.reshape(-1)[c])
        assert ordered[0] <= low <= ordered[i] and ordered[i] - low <= width
        assert ordered[j] <= high <= ordered[-1] and high - ordered[j] <= width


def test_percentile_observer_drops_outliers_and_handles_more_than_16m_values() -> None:
    generator = torch.Generator().manual_seed(4)
    x = torch.randn((1 << 24) + 1000, generator=generator)
    x[:1000] = 1000.0  # 0.006 % outliers
    observer = PercentileObserver(QuantSpec(symmetric=False), percentile=99.9)
    for chunk in x.split(1 << 23):  # torch.quantile refuses > 16M values; the histogram does not care
        observer.observe(chunk)
    lo, hi = observer.range()
    # The 99.9th percentile of N(0, 1) is 3.09; 1000 / 2048 bins puts it within 2 * 1024 / 2048 = 1 of that.
    assert 3.0 < hi.item() < 4.2 and -4.2 < lo.item() < -3.0


def _exact_mse(x: torch.Tensor, qp: QParams) -> float:
    return float(((x.double() - dequantize(quantize(x, qp), qp).double()) ** 2).mean())


def test_mse_observer_beats_min_max_on_heavy_tails_and_finds_the_best_candidate() -> None:
    generator = torch.Generator().manual_seed(5)
    # A Gaussian scale mixture: heavy tails, so min-max wastes most levels on a few outliers.
    x = torch.randn(20_000, generator=generator) * torch.exp(torch.randn(20_000, generator=generator))
    for spec in (QuantSpec(bits=4), QuantSpec(bits=8, symmetric=False)):
        observer = _observe(MSEObserver(spec, candidates=25), list(x.split(3000)))
        chosen = _exact_mse(x, observer.qparams())
        min_max = _exact_mse(x, qparams_from_tensor(x, spec))
        assert chosen < (0.5 if spec.bits == 4 else 1.0) * min_max, (spec, chosen, min_max)
        # The histogram estimate picks (nearly) the candidate an exact search over the data would.
        exact = [
            _exact_mse(x, qparams_from_range(x.min() * k / 25, x.max() * k / 25, spec)) for k in range(1, 26)
        ]
        assert chosen <= 1.05 * min(exact), (spec, chosen, min(exact))


def test_mse_observer_keeps_the_full_range_when_nothing_pays_for_clipping() -> None:
    x = torch.rand(20_000, generator=torch.Generator().manual_seed(6)) * 2 - 1
    for spec in (QuantSpec(bits=8), QuantSpec(bits=3, symmetric=False)):
        observer = _observe(MSEObserver(spec), [x])
        assert _exact_mse(x, observer.qparams()) <= 1.02 * _exact_mse(x, qparams_from_tensor(x, spec))
    zeros = _observe(MSEObserver(QuantSpec()), [torch.zeros(10)]).qparams()
    assert zeros.scale.item() == TINY32


def test_mse_observer_chooses_per_channel() -> None:
    generator = torch.Generator().manual_seed(7)
    x = torch.rand(5000, 3, generator=generator) * 2 - 1
    x[0, 1] = 8.0  # only channel 1 has an outlier, and at 4 bits clipping it pays
    lo, hi = _observe(MSEObserver(QuantSpec(bits=4, axis=1)), [x[:2500], x[2500:]]).range()
    assert hi.shape == (3,) and hi[1] < 4.0 and hi[0] > 0.9 and hi[2] > 0.9


def test_observers_need_a_consistent_channel_count_and_some_data() -> None:
    for cls in OBSERVERS:
        observer = cls(QuantSpec(axis=-1))
        with pytest.raises(ValueError, match="seen no data"):
            observer.qparams()
        observer.observe(torch.randn(4, 3))
        with pytest.raises(ValueError, match="same channel count"):
            observer.observe(torch.randn(4, 5))
        assert observer.qparams().scale.shape == (3,)
        observer.reset()
        with pytest.raises(ValueError, match="seen no data"):
            observer.range()


# ---------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------

_BAD = {
    "NaN": torch.tensor([1.0, math.nan]),
    "Inf": torch.tensor([1.0, math.inf]),
    "-Inf": torch.tensor([-math.inf, 1.0]),
    "empty": torch.zeros(0),
    "empty channels": torch.zeros(3, 0),
    "float64 beyond float32": torch.tensor([1.0, 1e300], dtype=torch.float64),
}
_MESSAGE = {"NaN": "NaN", "Inf": "Inf", "-Inf": "Inf", "empty": "empty", "empty channels": "empty"}
_MESSAGE["float64 beyond float32"] = "beyond float32's range"

_CALLERS: dict[str, Callable[[torch.Tensor], object]] = {
    "qparams_from_tensor": lambda x: qparams_from_tensor(x, QuantSpec()),
    "qparams_from_tensor per channel": lambda x: qparams_from_tensor(x, QuantSpec(axis=0)),
    "qparams_from_range min": lambda x: qparams_from_range(x.min() if x.numel() else x, 1.0),
    "qparams_from_range max": lambda x: qparams_from_range(-1.0, x.max() if x.numel() else x),
    **{f"{cls.__name__}.observe": (lambda x, cls=cls: cls().observe(x)) for cls in OBSERVERS},  # type: ignore[misc]
}


@pytest.mark.parametrize("caller", list(_CALLERS))
@pytest.mark.parametrize("bad", list(_BAD))
def test_non_finite_or_empty_input_raises_a_named_value_error(caller: str, bad: str) -> None:
    x = _BAD[bad]
    if caller.startswith("qparams_from_range") and bad in ("NaN", "Inf", "-Inf", "float64 beyond float32"):
        x = x[x != 1.0]  # the one bad value itself, as the range end
    with pytest.raises(ValueError, match=_MESSAGE[bad]):
        _CALLERS[caller](x)


def test_other_bad_input_raises_value_errors() -> None:
    qp = qparams_from_range(-1.0, 1.0)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: quantize(torch.tensor([math.nan]), qp), "NaN"),
        (lambda: fake_quantize(torch.tensor([math.nan]), qp), "NaN"),
        (lambda: quantize(torch.tensor([1, 2]), qp), "floating-point"),
        (lambda: dequantize(torch.tensor([0.5]), qp), "integer values"),
        (lambda: dequantize(torch.tensor([0, 300]), qp), "outside the spec"),
        (lambda: qparams_from_range(1.0, -1.0), "min_val > max_val"),
        (lambda: qparams_from_range(torch.zeros(2), torch.ones(2)), "per-tensor spec"),
        (lambda: quantize(torch.zeros(2, 3), qparams_from_tensor(torch.ones(4, 3), QuantSpec(axis=0))), "channels"),
        (lambda: qparams_from_tensor(torch.ones(2), QuantSpec(axis=2)), "out of range"),
        (lambda: QParams(torch.tensor(0.0), torch.tensor(0), QuantSpec()), "scale must be finite"),
        (lambda: QParams(torch.tensor(1.0), torch.tensor(300), QuantSpec()), "zero_point must lie"),
        (lambda: QuantSpec(eps=1e-45), "eps must be"),
        (lambda: PercentileObserver(percentile=40.0), "percentile"),
        (lambda: MovingAverageMinMaxObserver(averaging_constant=0.0), "averaging_constant"),
        (lambda: sqnr_db(torch.ones(2), torch.ones(3)), "one shape"),
        (lambda: max_abs_error(torch.ones(2), torch.tensor([1.0, math.nan])), "NaN"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


# ---------------------------------------------------------------------------------------------------------------
# Error metrics
# ---------------------------------------------------------------------------------------------------------------


def test_error_metrics() -> None:
    x, y = torch.tensor([3.0, -4.0]), torch.tensor([3.0, -3.0])
    assert sqnr_db(x, y) == pytest.approx(10 * math.log10(25.0))
    assert max_abs_error(x, y) == 1.0 and mean_abs_error(x, y) == 0.5
    assert relative_error(x, y) == pytest.approx(0.2)
    assert sqnr_db(x, x) == math.inf and relative_error(x, x) == 0.0
    assert sqnr_db(torch.zeros(2), x) == -math.inf and relative_error(torch.zeros(2), x) == math.inf
    # Each added bit halves the step: SQNR up, errors down.
    w = torch.randn(4096, generator=torch.Generator().manual_seed(8))
    four, eight = (fake_quantize(w, qparams_from_tensor(w, QuantSpec(bits=b))) for b in (4, 8))
    assert sqnr_db(w, eight) > sqnr_db(w, four) + 20
    assert max_abs_error(w, eight) < max_abs_error(w, four) and relative_error(w, eight) < relative_error(w, four)


def test_the_reference_avoids_torchs_deprecated_quantized_api() -> None:
    import ast
    import inspect

    from quant_impl import qmath

    deprecated = {"qint8", "quint8", "qint32", "quint4x2", "quantize_per_tensor", "quantize_per_channel"}
    used = {
        node.attr
        for node in ast.walk(ast.parse(inspect.getsource(qmath)))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "torch"
    }
    assert not used & deprecated
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and it raises no deprecation warning of torch's either
        x = torch.randn(8, 8, generator=torch.Generator().manual_seed(9))
        qp = _observe(MinMaxObserver(QuantSpec(axis=0)), [x]).qparams()
        fake_quantize(x, qp)
