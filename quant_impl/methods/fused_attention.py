"""``attention="fused-bf16"`` for the int8 methods: every ``scaled_dot_product_attention`` of a converted PT2E graph
replaced by quantbench's own fused kernel (``csrc/bf16_attention.cpp``).

Why: at batch 32 x 128 the int8 Linears cost the same in torch and OpenVINO; the gap was attention, torch's fp32
flash kernel against OpenVINO's int8 MHA (issue #11). torchao's int8 SDPA needs AMX, and bf16 through Inductor
loses its matmul gain in a slow bf16 softmax. The kernel keeps one block of query rows in L1, runs Q K^T and P V on
``vdpbf16ps`` (AVX512-BF16, no AMX) with fp32 accumulation and keeps scale, mask and softmax in fp32.

It is a C++ extension built once per machine and torch version into the cache (``kernels/``, about 16 s with the
system compiler; ``$QUANTBENCH_KERNEL_CACHE`` names another folder, so several caches can share one build). :func:`unavailable_reason` says why a machine cannot use it: ``attention="auto"`` then keeps
sdpa and says why in the settings, while an explicit ``"fused-bf16"`` is refused with that reason rather than
silently measuring something else.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from quant_impl.measure.cpu_class import BF16_CLASSES
from quant_impl.measure.machine import FORCE_CPU_CLASS_ENV, effective_cpu_class

KERNEL_SOURCE = Path(__file__).with_name("csrc") / "bf16_attention.cpp"
# The instruction sets the kernel is written in; never -march=native, so a cached build moves with the cache.
# -fopenmp: at::parallel_for is inline and runs serially without it (measured: 2 threads no faster than 1).
CFLAGS = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-mfma", "-fopenmp"]
LDFLAGS = ["-fopenmp"]
HEAD_MULTIPLE = 16  # the kernel holds 16 lanes of a head per vector
BUILD_BYTES = 1_000_000  # the build folder's size (measured 0.8 MB: gcc 12, torch 2.13), for a full disk's message
# The build depends on the machine and torch only, not on the cache's models: runs with private caches (the test
# suite's child runs, a CI matrix) point this at one folder instead of compiling again in each.
KERNEL_CACHE_ENV = "QUANTBENCH_KERNEL_CACHE"


def kernel_dir(cache_dir: Path) -> Path:
    """Where the kernel is built: ``$QUANTBENCH_KERNEL_CACHE`` if set, else ``<cache_dir>/kernels``."""
    shared = os.environ.get(KERNEL_CACHE_ENV)
    return Path(shared).expanduser() if shared else Path(cache_dir) / "kernels"


def unavailable_reason() -> str | None:
    """Why this machine cannot run the kernel, or None when it can."""
    if not torch.cpu._is_avx512_bf16_supported():
        return "the fused-bf16 attention kernel needs a CPU with avx512_bf16 (this one has none)"
    forced = os.environ.get(FORCE_CPU_CLASS_ENV)
    if forced and effective_cpu_class() not in BF16_CLASSES:
        return f"the fused-bf16 attention kernel needs avx512_bf16, which {FORCE_CPU_CLASS_ENV}={forced} takes away"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"the fused-bf16 attention kernel is compiled on first use, and there is no C++ compiler ({compiler!r}) on PATH"
    if not _ninja_on_path():
        return "the fused-bf16 attention kernel is built with ninja, which is not on PATH (pip install ninja)"
    return None


def _ninja_on_path() -> bool:
    """True when torch's extension builder will find ninja; puts the ``ninja`` wheel's binary on PATH if needed
    (a venv's bin folder is not on PATH when its python is run by full path, as CI and cron jobs do)."""
    if shutil.which("ninja"):
        return True
    try:
        import ninja
    except ImportError:
        return False
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    return shutil.which("ninja") is not None


def _extension(build_root: str) -> Any:
    from torch.utils.cpp_extension import load

    from quant_impl.cache import DiskFull, disk_full, tree_bytes

    version = torch.__version__.replace("+", "_")
    build_dir = Path(build_root) / f"bf16_attention-torch{version}"
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        if not any(build_dir.glob("*.so")):
            print(f"quantbench: compiling the fused-bf16 attention kernel into {build_dir} (once, about 16 s)",
                  file=sys.stderr, flush=True)
        # torch's loader locks the folder (two runs sharing a cache wait for one build) and rebuilds on a changed source
        return load(name="quantbench_bf16_attention", sources=[str(KERNEL_SOURCE)], extra_cflags=CFLAGS,
                    extra_ldflags=LDFLAGS, build_directory=str(build_dir), verbose=False)
    except Exception as exc:
        code = disk_full(exc)
        if code is None:
            raise
        # A full disk is the user's to fix, not a reason for "auto" to measure sdpa instead; the half-built
        # folder goes, so the message's "nothing half-written was kept" holds and the next build starts clean.
        written = tree_bytes(build_dir)
        shutil.rmtree(build_dir, ignore_errors=True)
        raise DiskFull(build_dir, BUILD_BYTES, estimated=True, written=written, code=code) from None


_registered: dict[str, Any] = {}


def register(build_root: str) -> dict[str, Any]:
    """Build (once per cache) and register the kernel's two ops (once per process); returns them by name:

    - ``float``: ``quantbench::bf16_attention(q, k, v, mask, scale)`` -> float32 [B, S, H, D];
    - ``uint8``: ``quantbench::bf16_attention_quantized(q, k, v, mask, scale, out_scale, out_zero_point)`` -> the
      same quantized to uint8 as ``quantize_per_tensor`` would.
    """
    if _registered:
        return _registered
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    extension = _extension(build_root)

    @torch.library.custom_op("quantbench::bf16_attention", mutates_args=())
    def bf16_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                       scale: float) -> torch.Tensor:
        return extension.attention(query, key, value, mask, scale, 0.0, 0)

    @torch.library.custom_op("quantbench::bf16_attention_quantized", mutates_args=())
    def bf16_attention_quantized(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 mask: torch.Tensor | None, scale: float, out_scale: float,
                                 out_zero_point: int) -> torch.Tensor:
        return extension.attention(query, key, value, mask, scale, out_scale, out_zero_point)

    def fake(query, key, value, mask, scale, *quantized):
        batch, heads, length, head = query.shape
        return query.new_empty((batch, length, heads, head), dtype=torch.uint8 if quantized else torch.float32)

    bf16_attention.register_fake(fake)
    bf16_attention_quantized.register_fake(fake)
    _registered.update(float=torch.ops.quantbench.bf16_attention.default,
                       uint8=torch.ops.quantbench.bf16_attention_quantized.default)
    return _registered


def _replaceable(node: torch.fx.Node) -> float | None:
    """The scale to pass the kernel when ``node`` is an SDPA it computes exactly as torch would, else None.

    Every TORCH_CHECK of ``csrc/bf16_attention.cpp`` is checked here on the traced shapes: the kernel runs only
    when the compiled graph is first called, outside ``finish_attention``'s fallback, so an SDPA it would refuse
    must be left as it is. Symbolic sizes count as equal only when they are provably so.
    """
    query, key, value = (_traced(arg) for arg in node.args[:3])
    kwargs = dict(zip(("attn_mask", "dropout_p", "is_causal"), node.args[3:]), **node.kwargs)
    if query is None or key is None or value is None or query.dim() != 4:
        return None
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in (query, key, value)):
        return None
    # one [B, H, S, D] for all three: no cross-attention lengths, no value head size of its own, no GQA
    if not (_same_sizes(key.shape, query.shape) and _same_sizes(value.shape, query.shape)) or kwargs.get("enable_gqa"):
        return None
    head = query.shape[-1]
    if not isinstance(head, int) or head % HEAD_MULTIPLE or kwargs.get("dropout_p", 0.0) or kwargs.get("is_causal"):
        return None
    if not _kernel_mask(kwargs.get("attn_mask"), query):
        return None
    return kwargs.get("scale") or head ** -0.5


def _traced(arg: Any) -> torch.Tensor | None:
    value = arg.meta.get("val") if isinstance(arg, torch.fx.Node) else None
    return value if isinstance(value, torch.Tensor) else None


def _known_equal(a: Any, b: Any) -> bool:
    from torch.fx.experimental.symbolic_shapes import statically_known_true

    return statically_known_true(a == b)  # never guards: an unknown answer is "no"


def _same_sizes(left: Any, right: Any) -> bool:
    return len(left) == len(right) and all(_known_equal(a, b) for a, b in zip(left, right))


def _kernel_mask(mask: Any, query: torch.Tensor) -> bool:
    """None, or a CPU mask the kernel reads as SDPA does: boolean or float32 (additive), broadcastable to
    [B, H, S, S] (the kernel expands it so)."""
    if mask is None:
        return True
    traced = _traced(mask)
    if traced is None or traced.dtype not in (torch.bool, torch.float32) or traced.device.type != "cpu":
        return False
    if traced.dim() > 4:
        return False
    target = tuple(query.shape[:3]) + (query.shape[2],)
    return all(_known_equal(size, 1) or _known_equal(size, want)
               for size, want in zip(reversed(traced.shape), reversed(target)))


_RESHAPES = (torch.ops.aten.reshape.default, torch.ops.aten.view.default)


def _quantized_output(node: torch.fx.Node) -> tuple[list[torch.fx.Node], torch.fx.Node] | None:
    """(the view nodes, the quantize node) when ``node``'s output only goes, through transformers' own
    reshape -> transpose(1, 2) -> reshape to [B, S, H * D], into a uint8 ``quantize_per_tensor`` with constant
    scale and zero point (the static int8 graphs: the next Linear's input); else None."""
    chain, current, transposed = [], node, False
    while True:
        users = list(current.users)
        if len(users) != 1:
            return None
        (user,) = users
        if user.target is torch.ops.quantized_decomposed.quantize_per_tensor.default:
            scale, zero_point, low, high, dtype = user.args[1:6]
            flat = user.args[0].meta["val"]
            heads, head = node.meta["val"].shape[1], node.meta["val"].shape[3]
            if (transposed and (low, high, dtype) == (0, 255, torch.uint8) and isinstance(scale, float)
                    and isinstance(zero_point, int) and flat.dim() == 3 and flat.shape[-1] == heads * head):
                return chain, user
            return None
        if user.target is torch.ops.aten.transpose.int and not transposed and sorted(user.args[1:3]) == [1, 2]:
            transposed = True
        elif user.target not in _RESHAPES or user.meta["val"].dim() != (3 if transposed else 4):
            return None
        chain.append(user)
        current = user


def fuse(graph: torch.fx.GraphModule, build_root: Path) -> dict[str, int]:
    """Swap every SDPA node of ``graph`` the kernel computes for the kernel (in place); returns how many
    (``fused``) and how many of those also quantize their output for the next Linear (``int8_output``).

    The kernel writes [B, S, H, D], the layout transformers transposes SDPA's output into, so the swapped node is
    a transposed view of it and the model's own transpose back costs nothing.
    """
    sdpa = torch.ops.aten.scaled_dot_product_attention.default
    nodes = [node for node in graph.graph.nodes if node.op == "call_function" and node.target is sdpa]
    replaceable = [(node, scale) for node in nodes if (scale := _replaceable(node)) is not None]
    counts = {"fused": 0, "int8_output": 0}
    if not replaceable:
        return counts
    ops = register(str(build_root))
    for node, scale in replaceable:
        query, key, value = node.args[:3]
        mask = node.args[3] if len(node.args) > 3 else node.kwargs.get("attn_mask")
        quantized = _quantized_output(node)
        if quantized:
            chain, quantize = quantized
            out_scale, out_zero_point = quantize.args[1:3]
            with graph.graph.inserting_before(quantize):
                fused = graph.graph.call_function(ops["uint8"], (query, key, value, mask, float(scale),
                                                                 float(out_scale), int(out_zero_point)))
                flat = graph.graph.call_function(torch.ops.aten.flatten.using_ints, (fused, 2))
            quantize.replace_all_uses_with(flat)
            for dead in [quantize, *reversed(chain), node]:
                graph.graph.erase_node(dead)
            counts["int8_output"] += 1
        else:
            with graph.graph.inserting_before(node):
                fused = graph.graph.call_function(ops["float"], (query, key, value, mask, float(scale)))
                view = graph.graph.call_function(torch.ops.aten.transpose.int, (fused, 1, 2))
            node.replace_all_uses_with(view)
            graph.graph.erase_node(node)
        counts["fused"] += 1
    graph.graph.lint()
    graph.recompile()
    return counts
