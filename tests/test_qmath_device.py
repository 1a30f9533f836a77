"""Every qmath result lives on its inputs' device, checked on a CPU-only machine.

On a GPU the inputs live on ``cuda`` while torch's default device stays ``cpu``, so a tensor that qmath creates
without naming a device (``torch.full(shape, ...)``, ``torch.arange(n)``) lands on the CPU and the next op fails
with "Expected all tensors to be on the same device" (issue 15: ``mixed-int8-fp16`` crashed that way). Here the
inputs stay on the CPU and the *default* device becomes ``meta``: the same mismatch, one device type over, so a
forgotten ``device=`` shows up as a meta tensor in a result or as a device error, without a GPU.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

from quant_impl import qmath
from quant_impl.qmath import QParams, QuantSpec

SPECS = {
    "int8-sym-tensor": QuantSpec(),
    "uint8-affine-tensor": QuantSpec(signed=False, symmetric=False),
    "int8-sym-channel": QuantSpec(axis=0),
    "uint8-sym-channel-noclip": QuantSpec(signed=False, axis=0, symmetric_scale="no_clip"),
    "int4-affine-channel": QuantSpec(bits=4, symmetric=False, axis=1),
}
OBSERVERS = (qmath.MinMaxObserver, qmath.MovingAverageMinMaxObserver, qmath.PercentileObserver, qmath.MSEObserver)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, QParams):
        return [value.scale, value.zero_point]
    if isinstance(value, qmath.PackedInt4):
        return [value.data]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    return []


def _on_cpu_with_meta_default(call: Callable[[], Any]) -> Any:
    """Run ``call`` with the default device set to meta; every tensor it returns must be on the CPU."""
    with torch.device("meta"):
        result = call()
    wrong = [t.device for t in _tensors(result) if t.device.type != "cpu"]
    assert not wrong, f"results on {wrong}, not on the inputs' device (cpu)"
    return result


def _data(spec: QuantSpec) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(6, 40) * 3


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_parameters_quantize_dequantize_and_fake_quantize_stay_on_the_input_device(spec: QuantSpec) -> None:
    x = _data(spec)
    qp = _on_cpu_with_meta_default(lambda: qmath.qparams_from_tensor(x, spec))
    rows = x.movedim(spec.axis, 0).reshape(x.shape[spec.axis], -1) if spec.axis is not None else x.reshape(1, -1)
    lo, hi = rows.amin(1), rows.amax(1)
    if spec.axis is None:
        lo, hi = lo.reshape(()), hi.reshape(())
    _on_cpu_with_meta_default(lambda: qmath.qparams_from_range(lo, hi, spec))
    _on_cpu_with_meta_default(lambda: QParams(qp.scale, qp.zero_point, spec))
    _on_cpu_with_meta_default(lambda: qmath.representable_range(qp))
    q = _on_cpu_with_meta_default(lambda: qmath.quantize(x, qp))
    _on_cpu_with_meta_default(lambda: qmath.dequantize(q, qp))
    leaf = x.clone().requires_grad_(True)
    y = _on_cpu_with_meta_default(lambda: qmath.fake_quantize(leaf, qp))
    with torch.device("meta"):
        y.sum().backward()
    assert leaf.grad is not None and leaf.grad.device.type == "cpu"


@pytest.mark.parametrize("observer", OBSERVERS, ids=lambda o: o.__name__)
@pytest.mark.parametrize("spec", [SPECS["uint8-affine-tensor"], SPECS["int8-sym-channel"]], ids=["tensor", "channel"])
def test_observers_stay_on_the_input_device(observer: type, spec: QuantSpec) -> None:
    obs = observer(spec)
    x = _data(spec)

    def observe_twice() -> QParams:
        obs.observe(x)
        obs.observe(x * 5)  # a wider batch makes the histogram observers grow their range
        return obs.qparams()

    _on_cpu_with_meta_default(observe_twice)
    _on_cpu_with_meta_default(obs.range)


@pytest.mark.parametrize("signed", [True, False])
def test_int4_packing_stays_on_the_input_device(signed: bool) -> None:
    values = torch.arange(-8, 7) if signed else torch.arange(0, 15)
    packed = _on_cpu_with_meta_default(lambda: qmath.pack_int4(values, signed=signed))
    back = _on_cpu_with_meta_default(lambda: qmath.unpack_int4(packed))
    assert torch.equal(back.to(values.dtype), values)


@pytest.mark.parametrize("metric", [qmath.sqnr_db, qmath.max_abs_error, qmath.mean_abs_error, qmath.relative_error])
def test_error_metrics_run_with_another_default_device(metric: Callable[..., float]) -> None:
    x = _data(QuantSpec())
    with torch.device("meta"):
        value = metric(x, x + 0.01)
    assert isinstance(value, float) and value == value


def test_the_check_catches_a_tensor_made_on_the_default_device() -> None:
    """The harness itself: a function that forgets ``device=`` is caught (so the tests above can fail)."""
    with pytest.raises(AssertionError, match="not on the inputs' device"):
        _on_cpu_with_meta_default(lambda: torch.full((3,), 1.0))
