"""Where a built model's time goes, per kind of operation, so two engines can be compared op kind by op kind.

torch models run under ``torch.profiler`` (Inductor's generated C++ kernels appear as ``cpp_fused_*`` records
because the compile that built them had ``cpp.enable_kernel_profile`` on: :func:`kernel_profiling`); an engine
that profiles itself (OpenVINO's per-layer counters) offers ``op_times(inputs, rounds)`` on its predictor.
Either way the result is milliseconds per call by op kind, the kinds below, so the tables line up.

Profiling slows what it watches: quote its shares, and take latencies from ``quantbench speed``.
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from typing import Any, Callable, Iterator

import torch

# (kind, pattern over a torch op or kernel name or an OpenVINO layer type), first match wins.
# Inductor's fused kernels are named after every op they hold (cpp_fused_add_native_layer_norm_quantize_...), so
# they are one kind of their own, first; OpenVINO's Subgraph/Eltwise layers are its fused elementwise code.
KINDS: tuple[tuple[str, str], ...] = (
    ("fused elementwise", r"cpp_fused|Subgraph|Eltwise"),
    ("int8 linear", r"qlinear|FullyConnected|MatMulInteger|QAttention|quantized::linear|_weight_int8"),
    ("attention", r"scaled_dot_product|flash_attention|ScaledDotProductAttention|Attention|quantbench::bf16_attention"),
    ("float matmul", r"aten::(mm|bmm|addmm|matmul|baddbmm|linear)\b|MatMul|mkldnn::_linear|Gemm"),
    ("quantize / dequantize", r"quantize|dequantize|FakeQuantize|Convert"),
    ("softmax", r"softmax|SoftMax"),
    ("layer norm", r"layer_norm|MVN|LayerNorm"),
    ("embedding", r"embedding|Gather"),
    ("framework overhead", r"TorchDynamo|Compiled|Pregraph|AOTDispatcher|aten::(item|_local_scalar_dense|empty|view|"
                           r"as_strided|reshape|transpose|expand|empty_strided|empty_like)\b"),
)
OTHER = "other"


def op_kind(name: str) -> str:
    """The kind an op or kernel name belongs to.

    Example:
        >>> op_kind("onednn::qlinear_pointwise"), op_kind("FullyConnected"), op_kind("graph_0_cpp_fused_add_0")
        ('int8 linear', 'int8 linear', 'fused elementwise')
    """
    for kind, pattern in KINDS:
        if re.search(pattern, name):
            return kind
    return OTHER


@contextlib.contextmanager
def kernel_profiling() -> Iterator[None]:
    """Compile inside this block to have Inductor's generated kernels recorded by ``torch.profiler``."""
    import torch._inductor.config as inductor_config

    previous = inductor_config.cpp.enable_kernel_profile
    inductor_config.cpp.enable_kernel_profile = True
    try:
        yield
    finally:
        inductor_config.cpp.enable_kernel_profile = previous


def torch_op_times(predict: Callable[..., Any], inputs: tuple[torch.Tensor, ...], rounds: int = 5) -> dict[str, float]:
    """Milliseconds per call by op kind, from the self CPU time of ``torch.profiler`` events (leaf time, so nested
    records are not counted twice); the profiler's overhead lands in the kinds, so compare shares."""
    from torch.profiler import ProfilerActivity, profile

    predict(*inputs)  # warm: compiles and caches stay out of the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(rounds):
            predict(*inputs)
    times: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.self_cpu_time_total > 0:
            times[op_kind(event.key)] += event.self_cpu_time_total / 1000 / rounds
    return dict(times)


def op_times(built: Any, inputs: tuple[torch.Tensor, ...], rounds: int = 5) -> tuple[dict[str, float], str]:
    """(ms per call by op kind, which profiler) for a built method: the engine's own counters where it has them."""
    own = getattr(built.predict, "op_times", None)
    if own is not None:
        return own(inputs, rounds), getattr(built.predict, "profiler_name", "engine counters")
    return torch_op_times(built.predict, inputs, rounds), "torch.profiler (self CPU time)"
