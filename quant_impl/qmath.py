"""Reference quantization math: parameters, quantize/dequantize, observers, fake quantization, INT4 packing, errors.

The theory chapter defines ``x_q = clamp(round(x / s) + z, qmin, qmax)`` and ``x' = s (x_q - z)``, with
``|x - x'| <= s/2`` for every x on the span of the integer grid. This module is a small, exact statement of that
math: it explains what the real kernels do, drives fake quantization and the sensitivity analysis, packs INT4
weights, and is proven by the property tests in ``tests/test_qmath.py``.

Plain torch tensors in and out: integer values come back in the smallest fitting integer dtype (int8, uint8,
int16 or int32), scales in float32, zero points in int32. torch's deprecated quantized dtypes (``torch.qint8``,
``torch.quantize_per_tensor``...) are not used.

The arithmetic follows the kernels bit for bit, because a reference that disagrees with them explains nothing:

* ``x / s`` is computed as ``x * (1 / s)`` in float32 and rounded half to even (``torch.round``), exactly as
  torchao's ``quantize_affine`` and torch's ``quantize_per_channel`` do. Dividing instead, or dividing in float64,
  changes roughly one value in ten thousand of a BERT weight matrix (those within an ulp of a rounding tie). The
  price is a float error on top of the theory's bound: ``|x - x'| <= s/2 + 2 * eps32 * max(|x|, |x'|)``.
* Scales are float32, computed from float32 ranges the way torch computes them. The reference subtracts and
  divides in float64 and rounds once, which yields the same float32 bits (double rounding is innocuous for a
  single +, - or / of float32 operands) but stays finite where ``max - min`` itself would overflow float32.
* A scale is never below ``eps`` (default: the smallest normal float32, as torchao; torch's observers use float32
  eps, 1.2e-7): a zero-width range still gets a valid, finite scale, and ``1 / s`` never overflows.
* Zero is always exactly representable: the zero point is an integer inside ``[qmin, qmax]``.

Symmetric scales come in two conventions (``QuantSpec.symmetric_scale``): ``"half_range"`` is torch's and
torchao's ``amax / ((qmax - qmin) / 2)`` (int8: amax / 127.5, so +-amax sit half a step beyond the grid and are
clipped by exactly s/2); ``"no_clip"`` is ``amax / min(qmax - z, z - qmin)`` (int8: amax / 127, as TensorRT/ONNX
narrow-range tools use), which puts +-amax on the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

SymmetricScale = Literal["half_range", "no_clip"]

_F32 = torch.finfo(torch.float32)


# ---------------------------------------------------------------------------------------------------------------
# Integer ranges, specs and parameters
# ---------------------------------------------------------------------------------------------------------------


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """The integer range ``(qmin, qmax)`` of an n-bit integer, n in 2..16.

    Example:
        >>> int_range(8, signed=True), int_range(4, signed=False)
        ((-128, 127), (0, 15))
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an integer in 2..16, got {bits!r}")
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize: bit width, signedness, symmetric or affine mapping, per-tensor or per-channel.

    Args:
        bits: integer width, 2..16.
        signed: signed (two's complement) or unsigned integers.
        symmetric: symmetric around zero (zero point fixed: 0 signed, mid-range unsigned) or asymmetric (affine).
        axis: None for one scale per tensor, or the channel axis (any, negative allowed) for one per channel.
        symmetric_scale: ``"half_range"`` (torch/torchao) or ``"no_clip"``; see the module docstring.
        eps: the smallest scale, at least the smallest normal float32 so that ``1 / scale`` stays finite.

    Example:
        >>> spec = QuantSpec(bits=4, signed=False, symmetric=False, axis=0)
        >>> spec.qmin, spec.qmax, spec.storage_dtype
        (0, 15, torch.uint8)
    """

    bits: int = 8
    signed: bool = True
    symmetric: bool = True
    axis: int | None = None
    symmetric_scale: SymmetricScale = "half_range"
    eps: float = _F32.tiny

    def __post_init__(self) -> None:
        int_range(self.bits, self.signed)
        if self.axis is not None and (isinstance(self.axis, bool) or not isinstance(self.axis, int)):
            raise ValueError(f"axis must be None (per tensor) or an integer channel axis, got {self.axis!r}")
        if self.symmetric_scale not in ("half_range", "no_clip"):
            raise ValueError(f"symmetric_scale must be 'half_range' or 'no_clip', got {self.symmetric_scale!r}")
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps >= _F32.tiny):
            raise ValueError(
                f"eps must be a finite number >= {_F32.tiny:.4g} (the smallest normal float32, so that 1/scale "
                f"stays finite), got {self.eps!r}"
            )

    @property
    def qmin(self) -> int:
        return int_range(self.bits, self.signed)[0]

    @property
    def qmax(self) -> int:
        return int_range(self.bits, self.signed)[1]

    @property
    def storage_dtype(self) -> torch.dtype:
        """The smallest torch integer dtype that holds every value in ``[qmin, qmax]``."""
        if self.bits <= 8:
            return torch.int8 if self.signed else torch.uint8
        # torch.uint16 exists but few ops accept it; int32 holds 0..65535 and every op works on it.
        return torch.int16 if self.signed else torch.int32


@dataclass(frozen=True)
class QParams:
    """Scale(s) and zero point(s) for one :class:`QuantSpec`.

    ``scale`` is float32 and ``zero_point`` int32, both 0-d for a per-tensor spec and of shape ``(C,)`` for a
    per-channel one. Built by :func:`qparams_from_range`, :func:`qparams_from_tensor` or an observer; built by
    hand, the values are checked (finite scale >= the smallest normal float32, integer zero point in range).

    Example:
        >>> qp = QParams(torch.tensor(0.5), torch.tensor(0), QuantSpec())
        >>> quantize(torch.tensor([1.0, 1.25]), qp)
        tensor([2, 2], dtype=torch.int8)
    """

    scale: torch.Tensor
    zero_point: torch.Tensor
    spec: QuantSpec

    def __post_init__(self) -> None:
        scale = _as_tensor(self.scale).detach()
        zero_point = _as_tensor(self.zero_point, device=scale.device).detach()
        if scale.shape != zero_point.shape:
            raise ValueError(
                f"scale and zero_point need the same shape, got {tuple(scale.shape)} and {tuple(zero_point.shape)}"
            )
        if self.spec.axis is None:
            if scale.numel() != 1:
                raise ValueError(f"a per-tensor spec (axis=None) needs one scale, got shape {tuple(scale.shape)}")
            scale, zero_point = scale.reshape(()), zero_point.reshape(())
        elif scale.dim() != 1 or scale.numel() == 0:
            raise ValueError(f"a per-channel spec needs 1-D, non-empty scales, got shape {tuple(scale.shape)}")
        scale = scale.to(torch.float32)
        if not bool(torch.isfinite(scale).all()) or bool((scale < _F32.tiny).any()):
            raise ValueError(
                f"scale must be finite and >= {_F32.tiny:.4g} (the smallest normal float32), got {scale.tolist()}"
            )
        if zero_point.is_floating_point() and not bool((zero_point == zero_point.round()).all()):
            raise ValueError(f"zero_point must hold integers, got {zero_point.tolist()}")
        if bool((zero_point < self.spec.qmin).any()) or bool((zero_point > self.spec.qmax).any()):
            raise ValueError(
                f"zero_point must lie in [{self.spec.qmin}, {self.spec.qmax}] so that zero is representable, "
                f"got {zero_point.tolist()}"
            )
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zero_point.to(torch.int32))


def qparams_from_range(
    min_val: torch.Tensor | float, max_val: torch.Tensor | float, spec: QuantSpec = QuantSpec()
) -> QParams:
    """Scale and zero point that map ``[min_val, max_val]`` (widened to include 0) onto ``spec``'s integers.

    Every value of the range then dequantizes to within s/2 of itself, plus float32 slack: the elementwise
    ``2 * eps32 * max(|x|, |x'|)`` and, at the range's ends, up to 2^-22 of its width (the rounding of the scale
    and of the zero point).

    Args:
        min_val, max_val: the range, a scalar for a per-tensor spec or a 1-D tensor (one entry per channel).
        spec: bit width, signedness, symmetry and granularity.

    Example:
        >>> qp = qparams_from_range(-1.0, 3.0, QuantSpec(bits=8, signed=False, symmetric=False))
        >>> round(qp.scale.item(), 6), qp.zero_point.item()
        (0.015686, 64)
    """
    lo = _checked_float32(min_val, "qparams_from_range min_val")
    hi = _checked_float32(max_val, "qparams_from_range max_val")
    if lo.shape != hi.shape:
        raise ValueError(f"min_val and max_val need the same shape, got {tuple(lo.shape)} and {tuple(hi.shape)}")
    if spec.axis is None and lo.numel() != 1:
        raise ValueError(f"a per-tensor spec (axis=None) needs a scalar range, got shape {tuple(lo.shape)}")
    if spec.axis is not None and lo.dim() != 1:
        raise ValueError(f"a per-channel spec needs 1-D min_val/max_val (one per channel), got shape {tuple(lo.shape)}")
    bad = (lo > hi).flatten()
    if bool(bad.any()):
        raise ValueError(f"min_val > max_val at index {int(bad.nonzero()[0])}; pass ranges with min <= max")
    scale, zero_point = _scale_zero_point(lo, hi, spec)
    _check_grid_fits_float32(scale, zero_point, spec)
    return QParams(scale, zero_point, spec)


def qparams_from_tensor(x: torch.Tensor, spec: QuantSpec = QuantSpec()) -> QParams:
    """Parameters from the min and max of ``x`` (per tensor, or per channel along ``spec.axis``).

    Example:
        >>> qp = qparams_from_tensor(torch.tensor([[-1.0, 0.5], [0.25, 0.0]]), QuantSpec(axis=0))
        >>> qp.scale
        tensor([0.0078, 0.0020])
    """
    rows = _channel_rows(x, spec.axis, "qparams_from_tensor")
    lo, hi = rows.amin(dim=1), rows.amax(dim=1)
    if spec.axis is None:
        lo, hi = lo.reshape(()), hi.reshape(())
    return qparams_from_range(lo, hi, spec)


def representable_range(qp: QParams) -> tuple[torch.Tensor, torch.Tensor]:
    """The ends of the grid, ``s (qmin - z)`` and ``s (qmax - z)``: exactly what ``dequantize`` returns for them.

    Example:
        >>> representable_range(qparams_from_range(-1.0, 1.0))
        (tensor(-1.0039), tensor(0.9961))
    """
    zero_point = qp.zero_point.to(torch.float32)
    return (qp.spec.qmin - zero_point) * qp.scale, (qp.spec.qmax - zero_point) * qp.scale


# ---------------------------------------------------------------------------------------------------------------
# Quantize, dequantize, fake quantize
# ---------------------------------------------------------------------------------------------------------------


def quantize(x: torch.Tensor, qp: QParams) -> torch.Tensor:
    """``clamp(round_half_even(x * (1/s)) + z, qmin, qmax)`` in float32, as integers of ``spec.storage_dtype``.

    +-Inf clamps to the range end like any other out-of-range value; NaN raises.

    Example:
        >>> quantize(torch.tensor([0.5, 1.5, 2.5, 300.0]), QParams(torch.tensor(1.0), torch.tensor(0), QuantSpec()))
        tensor([  0,   2,   2, 127], dtype=torch.int8)
    """
    x32 = _float32_input(x, "quantize")
    scale, zero_point = _broadcast_qparams(qp, x32, "quantize")
    q = _round_unclamped(x32, scale, zero_point).clamp_(qp.spec.qmin, qp.spec.qmax)
    return q.to(qp.spec.storage_dtype)


def dequantize(q: torch.Tensor, qp: QParams) -> torch.Tensor:
    """``s (q - z)`` in float32.

    Example:
        >>> qp = QParams(torch.tensor(0.5), torch.tensor(0), QuantSpec())
        >>> dequantize(torch.tensor([0, 2, 127], dtype=torch.int8), qp)
        tensor([ 0.0000,  1.0000, 63.5000])
    """
    if q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
        raise ValueError(f"dequantize expects integer values (the output of quantize), got dtype {q.dtype}")
    if q.numel() and (int(q.min()) < qp.spec.qmin or int(q.max()) > qp.spec.qmax):
        raise ValueError(
            f"dequantize got values in [{int(q.min())}, {int(q.max())}], outside the spec's "
            f"[{qp.spec.qmin}, {qp.spec.qmax}]; were they quantized with another spec?"
        )
    scale, zero_point = _broadcast_qparams(qp, q, "dequantize")
    # q - z is exact in float32 (|q - z| < 2^17), so the product is the only rounding.
    return (q.to(torch.float32) - zero_point) * scale


class FakeQuantizeSTE(torch.autograd.Function):
    """``dequantize(quantize(x))`` with a straight-through gradient.

    The gradient is 1 where the clamp is inactive (``round(x/s) + z`` within ``[qmin, qmax]``: the grid's span
    and up to half a step beyond each end, which round onto the end anyway) and 0 where it clips, the same mask
    as torch's ``fake_quantize_per_channel_affine``. Use :func:`fake_quantize`; ``apply`` takes the broadcast
    float32 scale and zero point.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        scale: torch.Tensor,
        zero_point: torch.Tensor,
        qmin: int,
        qmax: int,
    ) -> torch.Tensor:
        unclamped = _round_unclamped(x.to(torch.float32), scale, zero_point)
        ctx.save_for_backward((unclamped >= qmin) & (unclamped <= qmax))
        return ((unclamped.clamp(qmin, qmax) - zero_point) * scale).to(x.dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        (inside,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * inside, None, None, None, None


def fake_quantize(x: torch.Tensor, qp: QParams) -> torch.Tensor:
    """Quantize then dequantize, keeping ``x``'s dtype, with the straight-through gradient of FakeQuantizeSTE.

    Example:
        >>> x = torch.tensor([0.3, 9.0], requires_grad=True)
        >>> y = fake_quantize(x, qparams_from_range(-1.0, 1.0)); y.sum().backward()
        >>> y.detach(), x.grad
        (tensor([0.2980, 0.9961]), tensor([1., 0.]))
    """
    if not x.is_floating_point():
        raise ValueError(f"fake_quantize expects a floating-point tensor, got dtype {x.dtype}")
    _reject_nan(x, "fake_quantize")
    scale, zero_point = _broadcast_qparams(qp, x, "fake_quantize")
    return FakeQuantizeSTE.apply(x, scale, zero_point, qp.spec.qmin, qp.spec.qmax)


# ---------------------------------------------------------------------------------------------------------------
# Observers
# ---------------------------------------------------------------------------------------------------------------


class _Observer:
    """Input checks, channel layout and parameters shared by the observers; subclasses keep the statistics."""

    def __init__(self, spec: QuantSpec = QuantSpec()) -> None:
        self.spec = spec
        self.reset()

    def reset(self) -> None:
        """Forget everything observed."""
        self._channels: int | None = None

    def observe(self, x: torch.Tensor) -> torch.Tensor:
        """Fold one batch into the statistics; returns ``x`` unchanged so the call can sit in a forward pass."""
        rows = _channel_rows(x, self.spec.axis, type(self).__name__)
        if self._channels is not None and rows.shape[0] != self._channels:
            raise ValueError(
                f"{type(self).__name__} saw {self._channels} channels along axis {self.spec.axis} before and "
                f"{rows.shape[0]} now; every batch needs the same channel count"
            )
        self._channels = rows.shape[0]
        self._update(rows)
        return x

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The observed ``(min, max)`` as float32: 0-d per tensor, ``(C,)`` per channel."""
        if self._channels is None:
            raise ValueError(f"{type(self).__name__} has seen no data; call observe() with at least one batch first")
        lo, hi = self._range()
        if self.spec.axis is None:
            return lo.reshape(()), hi.reshape(())
        return lo, hi

    def qparams(self) -> QParams:
        """Scale and zero point for the observed range."""
        lo, hi = self.range()
        return qparams_from_range(lo, hi, self.spec)

    def _update(self, rows: torch.Tensor) -> None:
        raise NotImplementedError

    def _range(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class MinMaxObserver(_Observer):
    """Running minimum and maximum over every batch.

    Example:
        >>> obs = MinMaxObserver(QuantSpec(symmetric=False))
        >>> _ = obs.observe(torch.tensor([0.5, 2.0])); _ = obs.observe(torch.tensor([-1.0]))
        >>> obs.range()
        (tensor(-1.), tensor(2.))
    """

    def reset(self) -> None:
        super().reset()
        self._min: torch.Tensor | None = None
        self._max: torch.Tensor | None = None

    def _update(self, rows: torch.Tensor) -> None:
        lo, hi = rows.amin(dim=1), rows.amax(dim=1)
        self._min = lo if self._min is None else torch.minimum(self._min, lo)
        self._max = hi if self._max is None else torch.maximum(self._max, hi)

    def _range(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._min is not None and self._max is not None
        return self._min, self._max


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of each batch's min and max (torch's update rule).

    The first batch sets the range; each later one moves it by ``averaging_constant`` toward that batch's
    min/max, so a single outlier batch shifts the range only a little.

    Args:
        spec: the quantization the range is for.
        averaging_constant: weight of the newest batch, in (0, 1].

    Example:
        >>> obs = MovingAverageMinMaxObserver(QuantSpec(symmetric=False), averaging_constant=0.5)
        >>> _ = obs.observe(torch.tensor([0.0, 2.0])); _ = obs.observe(torch.tensor([0.0, 4.0]))
        >>> obs.range()
        (tensor(0.), tensor(3.))
    """

    def __init__(self, spec: QuantSpec = QuantSpec(), averaging_constant: float = 0.01) -> None:
        if not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant!r}")
        self.averaging_constant = averaging_constant
        super().__init__(spec)

    def _update(self, rows: torch.Tensor) -> None:
        lo, hi = rows.amin(dim=1), rows.amax(dim=1)
        if self._min is None or self._max is None:
            self._min, self._max = lo, hi
            return
        self._min = self._min + self.averaging_constant * (lo - self._min)
        self._max = self._max + self.averaging_constant * (hi - self._max)


class _HistogramObserver(_Observer):
    """A per-channel histogram on ``[-R, R)`` that is exact under batching.

    ``R`` is a power of two above every |value| seen. When a batch exceeds it, ``R`` doubles and pairs of bins
    merge into the middle half; with ``bins`` divisible by 4 the old edges are new edges, so the counts (and the
    per-bin sums) are the same whichever way the data were split into batches. This avoids keeping the data:
    torch.quantile refuses inputs above 16M elements, and calibration data run to billions.
    """

    def __init__(self, spec: QuantSpec = QuantSpec(), bins: int = 2048) -> None:
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 8 or bins % 4:
            raise ValueError(f"bins must be an integer >= 8 and divisible by 4, got {bins!r}")
        self.bins = bins
        super().__init__(spec)

    def reset(self) -> None:
        super().reset()
        self._half_width: torch.Tensor | None = None  # R per channel, float64
        self._counts = torch.zeros(0, dtype=torch.float64)
        self._sums = torch.zeros(0, dtype=torch.float64)
        self._min = torch.zeros(0)
        self._max = torch.zeros(0)

    def _update(self, rows: torch.Tensor) -> None:
        channels, bins = rows.shape[0], self.bins
        values = rows.to(torch.float64)
        amax = values.abs().amax(dim=1)
        if self._half_width is None:
            # frexp: amax = m * 2**e with m in [0.5, 1), so 2**e > amax; the floor keeps an all-zero batch valid.
            _, exponent = torch.frexp(amax.clamp(min=_F32.tiny))
            self._half_width = torch.ldexp(torch.ones_like(amax), exponent)
            self._counts = torch.zeros(channels, bins, dtype=torch.float64, device=rows.device)
            self._sums = torch.zeros(channels, bins, dtype=torch.float64, device=rows.device)
            self._min, self._max = rows.amin(dim=1), rows.amax(dim=1)
        else:
            self._min = torch.minimum(self._min, rows.amin(dim=1))
            self._max = torch.maximum(self._max, rows.amax(dim=1))
        self._grow(amax)
        width = (2 * self._half_width / bins)[:, None]
        # x / width only rescales by a power of two, so it is exact and floor() bins every value on the right side
        # of an edge; (x + R) / width would round values within an ulp of R onto the wrong side.
        index = (torch.floor(values / width) + bins // 2).clamp_(0, bins - 1).long()
        flat = (index + torch.arange(channels, device=rows.device)[:, None] * bins).flatten()
        self._counts += torch.bincount(flat, minlength=channels * bins).view(channels, bins).to(torch.float64)
        self._sums += torch.bincount(flat, weights=values.flatten(), minlength=channels * bins).view(channels, bins)

    def _grow(self, amax: torch.Tensor) -> None:
        assert self._half_width is not None
        quarter, half = self.bins // 4, self.bins // 2
        while True:
            grow = self._half_width <= amax
            if not bool(grow.any()):
                return
            for name in ("_counts", "_sums"):
                old = getattr(self, name)
                widened = torch.zeros_like(old)
                widened[:, quarter : quarter + half] = old.view(old.shape[0], half, 2).sum(dim=2)
                setattr(self, name, torch.where(grow[:, None], widened, old))
            self._half_width = torch.where(grow, self._half_width * 2, self._half_width)

    def _bin_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower edge of every bin and the bin width, per channel (float64)."""
        assert self._half_width is not None
        width = 2 * self._half_width / self.bins
        steps = torch.arange(self.bins, dtype=torch.float64, device=width.device)
        lower = -self._half_width[:, None] + steps * width[:, None]
        return lower, width


class PercentileObserver(_HistogramObserver):
    """Clip the range to the ``percentile``-th and ``(100 - percentile)``-th percentiles of everything observed.

    With N values sorted as x_0 <= ... <= x_{N-1}, the range covers ``x_i`` to ``x_j`` for
    ``i = floor((1 - p/100)(N - 1))`` and ``j = ceil(p/100 (N - 1))``. It is read off a batch-exact histogram
    (see ``_HistogramObserver``), so each end is known to one bin width and is rounded outward, never past the
    observed min/max: ``x_j <= max <= x_j + 2R/bins`` and the mirror image for the min.

    Args:
        spec: the quantization the range is for.
        percentile: p in (50, 100]; 100 gives the min-max range.
        bins: histogram resolution (divisible by 4); memory is 16 bytes x bins per channel.

    Example:
        >>> obs = PercentileObserver(QuantSpec(symmetric=False), percentile=99.0)
        >>> _ = obs.observe(torch.cat([torch.linspace(0, 1, 1000), torch.tensor([50.0])]))
        >>> hi = obs.range()[1].item(); 0.99 < hi < 1.05
        True
    """

    def __init__(self, spec: QuantSpec = QuantSpec(), percentile: float = 99.99, bins: int = 2048) -> None:
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile!r}")
        self.percentile = float(percentile)
        super().__init__(spec, bins)

    def _range(self) -> tuple[torch.Tensor, torch.Tensor]:
        lower, width = self._bin_edges()
        cumulative = self._counts.cumsum(dim=1)
        last = cumulative[:, -1] - 1
        low_rank = torch.floor((100.0 - self.percentile) * last / 100.0)
        high_rank = torch.ceil(self.percentile * last / 100.0)
        # The bin holding the k-th smallest value (0-based) is the first whose cumulative count reaches k + 1.
        low_bin = torch.searchsorted(cumulative, (low_rank + 1)[:, None]).clamp(max=self.bins - 1)
        high_bin = torch.searchsorted(cumulative, (high_rank + 1)[:, None]).clamp(max=self.bins - 1)
        low_edge = lower.gather(1, low_bin)[:, 0]
        high_edge = lower.gather(1, high_bin)[:, 0] + width
        lo = torch.maximum(_to_float32_down(low_edge), self._min)
        hi = torch.minimum(_to_float32_up(high_edge), self._max)
        return lo, torch.maximum(hi, lo)


class MSEObserver(_HistogramObserver):
    """Pick, per channel, the clipping range that minimises the mean squared quantize-dequantize error.

    The candidates shrink the observed ``[min, max]`` by factors ``1, (K-1)/K, ..., 1/K`` (``K = candidates``);
    ties go to the wider range. The error of a candidate is estimated from the batch-exact histogram: every
    value in a bin is taken to quantize like the bin's mean, which is exact for bins that no rounding boundary
    crosses (the within-bin spread adds the same constant to every candidate and is left out).

    Args:
        spec: the quantization the range is for (its bits set how much clipping pays).
        candidates: number of clipping factors tried.
        bins: histogram resolution (divisible by 4).

    Example:
        >>> _ = torch.manual_seed(0); x = torch.cat([torch.randn(10000), torch.tensor([40.0])])
        >>> obs = MSEObserver(QuantSpec(bits=4)); _ = obs.observe(x)
        >>> obs.range()[1].item() < 40.0
        True
    """

    def __init__(self, spec: QuantSpec = QuantSpec(), candidates: int = 100, bins: int = 2048) -> None:
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise ValueError(f"candidates must be a positive integer, got {candidates!r}")
        self.candidates = candidates
        super().__init__(spec, bins)

    def _range(self) -> tuple[torch.Tensor, torch.Tensor]:
        counts = self._counts
        means = (self._sums / counts.clamp(min=1)).to(torch.float32)
        device = counts.device
        factors = torch.arange(self.candidates, 0, -1, dtype=torch.float32, device=device) / self.candidates
        best_error = torch.full((counts.shape[0],), math.inf, dtype=torch.float64, device=device)
        best_factor = torch.ones(counts.shape[0], device=device)
        for factor in factors:
            scale, zero_point = _scale_zero_point(factor * self._min, factor * self._max, self.spec)
            scale, zero_point = scale[:, None], zero_point.to(torch.float32)[:, None]
            unclamped = _round_unclamped(means, scale, zero_point)
            approx = (unclamped.clamp(self.spec.qmin, self.spec.qmax) - zero_point) * scale
            error = (counts * (means.double() - approx.double()) ** 2).sum(dim=1)
            better = error < best_error
            best_error = torch.where(better, error, best_error)
            best_factor = torch.where(better, factor, best_factor)
        return best_factor * self._min, best_factor * self._max


# ---------------------------------------------------------------------------------------------------------------
# INT4 packing
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedInt4:
    """4-bit values, two per byte: element ``2i`` in the low nibble of ``data[i]``, element ``2i + 1`` in the high.

    ``shape`` records the unpacked shape; when its element count is odd the last high nibble is zero padding.
    """

    data: torch.Tensor  # uint8, ceil(numel / 2) bytes
    shape: torch.Size
    signed: bool

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def padded(self) -> bool:
        return self.numel % 2 == 1


def pack_int4(values: torch.Tensor, signed: bool = True) -> PackedInt4:
    """Pack integers in ``[-8, 7]`` (signed) or ``[0, 15]`` into half as many bytes (rounded up).

    Example:
        >>> p = pack_int4(torch.tensor([1, -2, 3]))
        >>> p.data, p.padded
        (tensor([225,   3], dtype=torch.uint8), True)
    """
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise ValueError(f"pack_int4 expects integer values (e.g. quantize with bits=4), got dtype {values.dtype}")
    qmin, qmax = int_range(4, signed)
    flat = values.detach().flatten().to(torch.int16)
    if flat.numel() and (int(flat.min()) < qmin or int(flat.max()) > qmax):
        raise ValueError(
            f"pack_int4 got values in [{int(flat.min())}, {int(flat.max())}], outside the "
            f"{'signed' if signed else 'unsigned'} 4-bit range [{qmin}, {qmax}]"
        )
    # & 0xF keeps the two's complement nibble of a negative value (-1 -> 0b1111).
    nibbles = flat & 0xF
    if nibbles.numel() % 2:
        nibbles = torch.cat([nibbles, nibbles.new_zeros(1)])
    packed = nibbles[0::2] | (nibbles[1::2] << 4)
    return PackedInt4(packed.to(torch.uint8), torch.Size(values.shape), signed)


def unpack_int4(packed: PackedInt4) -> torch.Tensor:
    """The values given to :func:`pack_int4`, in their shape, as int8 (signed) or uint8.

    Example:
        >>> unpack_int4(pack_int4(torch.tensor([[1, -2, 3]])))
        tensor([[ 1, -2,  3]], dtype=torch.int8)
    """
    if packed.data.dtype != torch.uint8 or packed.data.numel() != (packed.numel + 1) // 2:
        raise ValueError(
            f"packed data must be {(packed.numel + 1) // 2} uint8 bytes for shape {tuple(packed.shape)}, got "
            f"{packed.data.numel()} of {packed.data.dtype}"
        )
    data = packed.data.flatten().to(torch.int16)
    nibbles = torch.stack([data & 0xF, data >> 4], dim=1).flatten()[: packed.numel]
    if packed.signed:
        # Sign-extend the nibble: 0..7 stay, 8..15 become -8..-1.
        return ((nibbles ^ 8) - 8).to(torch.int8).reshape(packed.shape)
    return nibbles.to(torch.uint8).reshape(packed.shape)


# ---------------------------------------------------------------------------------------------------------------
# n-bit packing (2..8 bits: the storage behind the size figure of weights below 4 bits)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedBits:
    """n-bit values as one little-endian bit stream: bit ``j`` of element ``i`` is stream bit ``i * bits + j``, and
    stream bit ``k`` is bit ``k % 8`` of ``data[k // 8]``.

    At 4 bits this is :class:`PackedInt4`'s layout (element ``2i`` in the low nibble); at 2 bits four values share
    a byte, at 3 bits eight values share three. The tail of the last byte is zero padding.
    """

    data: torch.Tensor  # uint8, ceil(numel * bits / 8) bytes
    shape: torch.Size
    bits: int
    signed: bool

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return packed_nbytes(self.numel, self.bits)


def packed_nbytes(numel: int, bits: int) -> int:
    """The bytes :func:`pack_bits` stores for ``numel`` values of ``bits`` bits."""
    return (numel * bits + 7) // 8


def _check_pack_bits(bits: Any) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"pack_bits packs 2..8-bit values, got bits={bits!r}")


def pack_bits(values: torch.Tensor, bits: int, signed: bool = True) -> PackedBits:
    """Pack integers of ``bits`` bits (2..8; signed or unsigned range) into ``ceil(numel * bits / 8)`` bytes.

    Example:
        >>> p = pack_bits(torch.tensor([1, -2, 3, 0, -1]), bits=3)
        >>> p.data.tolist(), p.nbytes
        ([241, 112], 2)
    """
    _check_pack_bits(bits)
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise ValueError(f"pack_bits expects integer values (e.g. quantize with bits={bits}), got dtype {values.dtype}")
    qmin, qmax = int_range(bits, signed)
    flat = values.detach().flatten().cpu().to(torch.int16)
    if flat.numel() and (int(flat.min()) < qmin or int(flat.max()) > qmax):
        raise ValueError(
            f"pack_bits got values in [{int(flat.min())}, {int(flat.max())}], outside the "
            f"{'signed' if signed else 'unsigned'} {bits}-bit range [{qmin}, {qmax}]"
        )
    # & mask keeps the two's complement code of a negative value (-1 -> all ones).
    codes = flat & ((1 << bits) - 1)
    stream = ((codes.unsqueeze(1) >> torch.arange(bits, dtype=torch.int16)) & 1).flatten()
    stream = torch.cat([stream, stream.new_zeros(-stream.numel() % 8)])
    data = (stream.reshape(-1, 8) << torch.arange(8, dtype=torch.int16)).sum(dim=1)
    return PackedBits(data.to(torch.uint8), torch.Size(values.shape), bits, signed)


def unpack_bits(packed: PackedBits) -> torch.Tensor:
    """The values given to :func:`pack_bits`, in their shape, as int8 (signed) or uint8.

    Example:
        >>> unpack_bits(pack_bits(torch.tensor([[1, -2], [0, -1]]), bits=2))
        tensor([[ 1, -2],
                [ 0, -1]], dtype=torch.int8)
    """
    _check_pack_bits(packed.bits)
    bits = packed.bits
    if packed.data.dtype != torch.uint8 or packed.data.numel() != packed.nbytes:
        raise ValueError(
            f"packed data must be {packed.nbytes} uint8 bytes for {bits}-bit shape {tuple(packed.shape)}, got "
            f"{packed.data.numel()} of {packed.data.dtype}"
        )
    data = packed.data.flatten().to(torch.int16)
    stream = ((data.unsqueeze(1) >> torch.arange(8, dtype=torch.int16)) & 1).flatten()[: packed.numel * bits]
    codes = (stream.reshape(-1, bits) << torch.arange(bits, dtype=torch.int16)).sum(dim=1)
    if packed.signed:
        # Sign-extend: codes at or above 2^(bits-1) are negative.
        half = 1 << (bits - 1)
        return ((codes ^ half) - half).to(torch.int8).reshape(packed.shape)
    return codes.to(torch.uint8).reshape(packed.shape)


# ---------------------------------------------------------------------------------------------------------------
# Error metrics
# ---------------------------------------------------------------------------------------------------------------


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum x^2 / sum (x - x')^2)`` in dB; +inf when exact.

    Example:
        >>> round(sqnr_db(torch.tensor([1.0, -1.0]), torch.tensor([1.5, -0.5])), 2)
        6.02
    """
    x, y = _metric_pair(reference, approx, "sqnr_db")
    signal, noise = float((x * x).sum()), float(((x - y) ** 2).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def max_abs_error(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Largest ``|x - x'|``.

    Example:
        >>> max_abs_error(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.0]))
        0.5
    """
    x, y = _metric_pair(reference, approx, "max_abs_error")
    return float((x - y).abs().max())


def mean_abs_error(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Mean ``|x - x'|``.

    Example:
        >>> mean_abs_error(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.0]))
        0.25
    """
    x, y = _metric_pair(reference, approx, "mean_abs_error")
    return float((x - y).abs().mean())


def relative_error(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """``||x - x'||_2 / ||x||_2`` over all elements; 0 when exact, +inf for a nonzero error on an all-zero x.

    Example:
        >>> relative_error(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 4.5]))
        0.1
    """
    x, y = _metric_pair(reference, approx, "relative_error")
    error, norm = float(torch.linalg.vector_norm(x - y)), float(torch.linalg.vector_norm(x))
    if error == 0.0:
        return 0.0
    return math.inf if norm == 0.0 else error / norm


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def _scale_zero_point(lo: torch.Tensor, hi: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 scale and int32 zero point for checked float32 ranges (any shape), as torch computes them."""
    qmin, qmax = spec.qmin, spec.qmax
    lo_neg = torch.minimum(lo, torch.zeros_like(lo))
    hi_pos = torch.maximum(hi, torch.zeros_like(hi))
    eps = torch.tensor(spec.eps, dtype=torch.float32, device=lo.device)
    if spec.symmetric:
        amax = torch.maximum(-lo_neg, hi_pos).to(torch.float64)
        zero_point = (qmin + qmax + 1) // 2  # 0 for signed, the midpoint 2**(bits-1) for unsigned (as torchao)
        steps = (qmax - qmin) / 2 if spec.symmetric_scale == "half_range" else min(qmax - zero_point, zero_point - qmin)
        scale = torch.maximum((amax / steps).to(torch.float32), eps)
        return scale, torch.full(scale.shape, zero_point, dtype=torch.int32, device=scale.device)
    span = hi_pos.to(torch.float64) - lo_neg.to(torch.float64)
    # Round the span to float32 first, as torch's float32 subtraction does, unless that overflows.
    span32 = span.to(torch.float32).to(torch.float64)
    span = torch.where(torch.isfinite(span32), span32, span)
    scale = torch.maximum((span / (qmax - qmin)).to(torch.float32), eps)
    zero_point = (qmin - torch.round(lo_neg / scale)).clamp(qmin, qmax)
    return scale, zero_point.to(torch.int32)


def _check_grid_fits_float32(scale: torch.Tensor, zero_point: torch.Tensor, spec: QuantSpec) -> None:
    scale64, zero64 = scale.to(torch.float64), zero_point.to(torch.float64)
    ends = torch.stack([scale64 * (spec.qmin - zero64), scale64 * (spec.qmax - zero64)])
    if bool((ends.abs() > _F32.max).any()):
        raise ValueError(
            f"the range is too wide for float32: the grid's ends would reach {float(ends.abs().max()):.4g} "
            f"(float32 max {_F32.max:.4g}); scale the values down before quantizing"
        )


def _round_unclamped(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    # The float32 reciprocal, then a product: what the kernels compute (see the module docstring).
    return torch.round(x * (1.0 / scale)) + zero_point


def _broadcast_qparams(qp: QParams, x: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point (both float32) shaped to broadcast against ``x`` along the spec's axis."""
    scale, zero_point = qp.scale, qp.zero_point.to(torch.float32)
    if qp.spec.axis is None:
        return scale, zero_point
    axis = _resolve_axis(qp.spec.axis, x.dim(), what)
    if x.shape[axis] != scale.numel():
        raise ValueError(
            f"{what}: the tensor has {x.shape[axis]} channels along axis {qp.spec.axis}, the parameters "
            f"{scale.numel()}"
        )
    shape = [1] * x.dim()
    shape[axis] = -1
    return scale.reshape(shape), zero_point.reshape(shape)


def _resolve_axis(axis: int, ndim: int, what: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"{what}: channel axis {axis} is out of range for a {ndim}-D tensor")
    return axis % ndim


def _channel_rows(x: torch.Tensor, axis: int | None, what: str) -> torch.Tensor:
    """Checked float32 data as ``(C, M)`` rows: one row per channel, or a single row per tensor."""
    x32 = _float32_input(x, what)
    _check_finite_nonempty(x32, what, was_float64=x.dtype == torch.float64)
    if axis is None:
        return x32.reshape(1, -1)
    axis = _resolve_axis(axis, x32.dim(), what)
    return x32.movedim(axis, 0).reshape(x32.shape[axis], -1)


def _float32_input(x: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} expects a floating-point tensor, got {kind}")
    x32 = x.detach().to(torch.float32)
    _reject_nan(x32, what)
    return x32


def _reject_nan(x: torch.Tensor, what: str) -> None:
    if bool(torch.isnan(x).any()):
        raise ValueError(f"{what} got NaN values in its input; remove or replace non-finite values first")


def _check_finite_nonempty(x: torch.Tensor, what: str, was_float64: bool = False) -> None:
    if x.numel() == 0:
        raise ValueError(f"{what} got an empty tensor; a range needs at least one value")
    _reject_nan(x, what)
    if bool(torch.isinf(x).any()):
        beyond = " (or float64 values beyond float32's range)" if was_float64 else ""
        raise ValueError(
            f"{what} got Inf values{beyond} in its input; remove or replace non-finite values before calibrating"
        )


def _as_tensor(value: torch.Tensor | float, device: torch.device | None = None) -> torch.Tensor:
    # A tensor stays where it is: torch.as_tensor would move it to a default device set by the caller
    # (torch.set_default_device), and qmath's results must live on their inputs' device.
    if isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(value, device=device)


def _checked_float32(value: torch.Tensor | float, what: str) -> torch.Tensor:
    tensor = _as_tensor(value)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float64)
    x32 = tensor.detach().to(torch.float32)
    _check_finite_nonempty(x32, what, was_float64=tensor.dtype == torch.float64)
    return x32


def _to_float32_down(x: torch.Tensor) -> torch.Tensor:
    """float64 -> the largest float32 <= x (rounding toward -inf keeps a range's lower end outside)."""
    y = x.to(torch.float32)
    return torch.where(y.to(torch.float64) > x, torch.nextafter(y, torch.full_like(y, -math.inf)), y)


def _to_float32_up(x: torch.Tensor) -> torch.Tensor:
    y = x.to(torch.float32)
    return torch.where(y.to(torch.float64) < x, torch.nextafter(y, torch.full_like(y, math.inf)), y)


def _metric_pair(reference: torch.Tensor, approx: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if reference.shape != approx.shape:
        raise ValueError(f"{what} needs tensors of one shape, got {tuple(reference.shape)} and {tuple(approx.shape)}")
    x, y = reference.detach().to(torch.float64), approx.detach().to(torch.float64)
    _check_finite_nonempty(x, f"{what} (reference)")
    _check_finite_nonempty(y, f"{what} (approx)")
    return x, y
