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
    ("int8 linear", r"qlinear|FullyConnected|MatMulInteger|DynamicQuantizeMatMul|QGemm|QAttention|quantized::linear|"
                    r"_weight_int8"),
    ("attention", r"scaled_dot_product|flash_attention|ScaledDotProductAttention|Attention|quantbench::bf16_attention"),
    ("float matmul", r"aten::(mm|bmm|addmm|matmul|baddbmm|linear)\b|MatMul|mkldnn::_linear|Gemm"),
    ("quantize / dequantize", r"quantize|dequantize|FakeQuantize|QuantizeLinear|Convert"),
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


@contextlib.contextmanager
def _stdout_to(path: str) -> Iterator[None]:
    """The process's file descriptor 1 (where oneDNN's C code prints) into ``path`` for the block."""
    import ctypes
    import os
    import sys

    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.dup2(target, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(target)


def onednn_implementations(lines: Iterator[str] | list[str]) -> dict[str, int]:
    """``primitive kind: implementation`` -> executions, from oneDNN verbose lines (both the v1 format and the
    older one without the version field).

    Example:
        >>> onednn_implementations(["onednn_verbose,v1,primitive,exec,cpu,inner_product,brg_matmul:avx2,"
        ...                         "forward_inference,src:u8,,mb8ic64oc64,0.02", "onednn_verbose,v1,info,cpu,isa:AVX2"])
        {'inner_product: brg_matmul:avx2': 1}
    """
    found: dict[str, int] = defaultdict(int)
    for line in lines:
        fields = line.strip().split(",")
        if not fields or fields[0] not in ("onednn_verbose", "dnnl_verbose") or "exec" not in fields[:5]:
            continue
        at = fields.index("exec")
        if len(fields) > at + 3 and fields[at + 1] == "cpu":
            found[f"{fields[at + 2]}: {fields[at + 3]}"] += 1
    return dict(found)


def torch_kernels(predict: Callable[..., Any], inputs: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """The oneDNN implementations one call runs (``inner_product: brg_matmul:avx2`` and so on, with how many times):
    which ISA's kernels serve the Linears, or a reference path (``ref``). Kernels outside oneDNN (ATen's, fbgemm's,
    Inductor's generated C++) are not listed; torch.profiler's op kinds cover them."""
    import os
    import tempfile

    predict(*inputs)  # first-call work (compiles, primitive creation) stays out
    if os.name != "posix" or not torch.backends.mkldnn.is_available():  # no fd 1 to borrow, or no oneDNN to ask
        return {}
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        with _stdout_to(log.name), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            predict(*inputs)
        return onednn_implementations(log.read().splitlines())


def kernels(built: Any, inputs: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """Which kernel implementations one call of a built method runs: the engine's own report where it has one
    (OpenVINO's per-layer execution types, ONNX Runtime's op types), else oneDNN's (torch)."""
    own = getattr(built.predict, "kernels", None)
    return own(inputs) if own is not None else torch_kernels(built.predict, inputs)


def op_times(built: Any, inputs: tuple[torch.Tensor, ...], rounds: int = 5) -> tuple[dict[str, float], str]:
    """(ms per call by op kind, which profiler) for a built method: the engine's own counters where it has them."""
    own = getattr(built.predict, "op_times", None)
    if own is not None:
        return own(inputs, rounds), getattr(built.predict, "profiler_name", "engine counters")
    return torch_op_times(built.predict, inputs, rounds), "torch.profiler (self CPU time)"
