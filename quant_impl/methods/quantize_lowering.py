"""A vectorized Inductor lowering for the quantize of a run-time scale (dynamic int8's per-batch activations).

Inductor lowers ``quantized_decomposed.quantize_per_tensor.tensor`` on CPU to ``fma(x, 1/scale, zero_point)`` and
``at::vec::round_convert<uint8_t>``. torch 2.13's ATen has that conversion in AVX-512 code only; on AVX2 it is a
generic loop that spills the vector and calls ``std::round`` per element. Measured on a Zen 4 forced to AVX2
(``QUANTBENCH_CPU_CLASS=avx2``): dynamic-int8's quantize of a GELU output at batch 32 took 25 ms against 1.8 ms
unforced, 228 of its 558 ms per call. The scalar-scale quantize (static-int8) lowers to round, clamp and a plain
conversion, which AVX2 has, and stayed fast.

:func:`vector_lowering` computes the same affine quantize from those vector ops: ``fma``, ``round`` (half to even,
as ``round_convert``'s AVX-512 code), a clamp to ``quant_min..quant_max`` (the bound the saturating conversion
implied for 0..255 and left implicit for 7-bit 0..127), then the conversion. :func:`patched` swaps it in while a
graph compiles.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

import torch

CHOICES = ("auto", "torch", "vector")


def inductor_vec_isa() -> str:
    """The vector ISA Inductor compiles CPU kernels for in this process ("avx2", "avx512", ...; "" for none)."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    return str(pick_vec_isa())


def resolve(choice: str) -> tuple[bool, str]:
    """Whether ``choice`` ("auto", "torch" or "vector") uses :func:`vector_lowering` here, and the settings' note."""
    if choice == "vector":
        return True, "vector (asked)"
    if choice == "torch":
        return False, "torch (asked)"
    isa = inductor_vec_isa()
    if isa == "avx2":
        return True, "vector (auto: Inductor compiles for avx2, whose ATen has no vector float-to-uint8 rounding)"
    return False, f"torch (auto: Inductor compiles for {isa or 'no vector ISA'}, which has it)"


def vector_lowering(input: Any, scale: Any, zero_point: Any, quant_min: int, quant_max: int,
                    dtype: torch.dtype) -> Any:
    """Inductor IR for ``quantize_per_tensor.tensor``: round(fma(x, 1/scale, zp)) clamped, then converted."""
    from torch._inductor import lowering
    from torch._inductor.ir import Pointwise
    from torch._inductor.virtualized import ops

    if input.get_dtype() == torch.bfloat16:
        input = lowering.to_dtype(input, torch.float32)
    if input.get_dtype() != torch.float32:
        raise TypeError(f"quantize_per_tensor.tensor expects a float32 input, got {input.get_dtype()}")
    for name, tensor in (("scale", scale), ("zero point", zero_point)):
        size = tensor.get_size()
        if len(size) > 1 or (len(size) == 1 and size[0] != 1):
            raise TypeError(f"quantize_per_tensor.tensor expects a one-element {name}, got size {list(size)}")
    load_input, load_scale, load_zero = input.make_loader(), scale.make_loader(), zero_point.make_loader()
    scale_index = (0,) if len(scale.get_size()) == 1 else ()
    zero_index = (0,) if len(zero_point.get_size()) == 1 else ()

    def inner_fn(index: Any) -> Any:
        s, zp = load_scale(scale_index), load_zero(zero_index)
        if scale.get_dtype() != torch.float32:
            s = ops.to_dtype(s, torch.float32)
        if zero_point.get_dtype() != torch.float32:
            zp = ops.to_dtype(zp, torch.float32)
        value = ops.round(ops.fma(load_input(index), ops.reciprocal(s), zp))
        low, high = ops.constant(quant_min, torch.float32), ops.constant(quant_max, torch.float32)
        return ops.to_dtype(ops.minimum(ops.maximum(value, low), high), dtype)

    return Pointwise.create(device=input.get_device(), dtype=dtype, inner_fn=inner_fn, ranges=input.get_size())


@functools.cache
def _registered() -> dict[Any, Any]:
    """:func:`vector_lowering` wrapped by Inductor's own registration (argument handling, IR checks), kept apart
    from Inductor's table until :func:`patched` swaps it in."""
    from torch._inductor.lowering import register_lowering

    table: dict[Any, Any] = {}
    register_lowering(torch.ops.quantized_decomposed.quantize_per_tensor.tensor, type_promotion_kind=None,
                      lowering_dict=table)(vector_lowering)
    return table


@contextlib.contextmanager
def patched(enabled: bool) -> Iterator[None]:
    """Inductor compiles ``quantize_per_tensor.tensor`` with :func:`vector_lowering` inside (when ``enabled``)."""
    if not enabled:
        yield
        return
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    from torch._inductor.lowering import lowerings

    ours = _registered()
    saved = {op: lowerings.get(op) for op in ours}
    lowerings.update(ours)
    try:
        # The compile caches' keys do not hold the lowering table: a graph compiled with torch's lowering must not
        # be served from them, nor ours stored where torch's is looked up. (Frozen int8 graphs bypass them anyway.)
        with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False):
            yield
    finally:
        for op, previous in saved.items():
            if previous is None:
                lowerings.pop(op, None)
            else:
                lowerings[op] = previous
