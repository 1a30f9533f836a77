"""Pieces every method shares: a logits-only wrapper for export, eager and compiled predictors."""

from __future__ import annotations

import copy
from typing import Any

import torch

from quant_impl.methods.options import check_choice
from quant_impl.methods.registry import Predict


class LogitsModel(torch.nn.Module):
    """``(input_ids, attention_mask) -> logits`` around an HF classifier: the signature torch.export and the
    benchmarks use, with no ModelOutput dataclass in the graph."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def fp32_copy(baseline: Any) -> torch.nn.Module:
    """A private FP32 copy of the baseline in eval mode (methods must never modify the shared baseline)."""
    return copy.deepcopy(baseline.model).float().eval()


# How a method's copy computes attention (transformers' attn_implementation): "sdpa" is one
# scaled_dot_product_attention op (Inductor keeps it as the CPU flash kernel); "eager" is matmul -> softmax -> matmul
# (Inductor fuses mask and softmax; the X86InductorQuantizer then also quantizes the matmul inputs). Measured in
# static-int8 on the quick checkpoint, 30 interleaved rounds: 117.6 vs 117.3 ms at batch 32 x 128, 5.5 vs 5.6 at
# batch 1 -- no difference, so the int8 methods keep sdpa; ORT needs eager to fuse its Attention op.
ATTENTIONS = ("eager", "sdpa")
# The PT2E int8 methods also take "fused-bf16": exported with sdpa, then each SDPA op of the converted graph runs
# quantbench's own kernel (quant_impl.methods.fused_attention); and "auto" (their default): fused-bf16 where the
# machine can run the kernel, else sdpa. Measured on the quick checkpoint (this repo's 2-core AVX512-BF16 VM, 20
# interleaved rounds): static-int8 5.2 vs 6.8 ms at batch 1 and 88.4 vs 132.1 ms at batch 32 x 128, drop 0.25 pt.
PT2E_ATTENTIONS = ATTENTIONS + ("fused-bf16", "auto")


def check_attention(config: Any, allowed: tuple[str, ...] = ATTENTIONS) -> None:
    """Raise the one-line error for a config whose ``attention`` is not in ``allowed``."""
    check_choice(config, "attention", allowed)


def export_attention(attention: str) -> str:
    """transformers' attention implementation a copy is exported with for the ``attention`` option."""
    return "sdpa" if attention in ("fused-bf16", "auto") else attention


def set_attention(model: torch.nn.Module, attention: str) -> str:
    """Switch an HF model's attention implementation (before export) and return the name for the settings.

    For "fused-bf16" and "auto" the model gets sdpa; call :func:`finish_attention` on the converted graph."""
    model.set_attn_implementation(export_attention(attention))
    return attention


def finish_attention(graph: torch.fx.GraphModule, attention: str, cache_dir: Any) -> str:
    """Apply the ``attention`` option to a converted PT2E graph (in place); returns the settings' entry, which
    says what ran (for "auto", which of the two and why).

    "fused-bf16" on a machine without the kernel's instructions or compiler is an error naming the reason: a run
    that asked for it must not quietly measure sdpa instead."""
    if attention not in ("fused-bf16", "auto"):
        return attention
    from quant_impl.errors import QuantbenchError
    from quant_impl.methods import fused_attention

    reason = fused_attention.unavailable_reason()
    if reason and attention == "auto":
        return f"sdpa (auto: {reason})"
    if reason:
        raise QuantbenchError(f"attention='fused-bf16': {reason}. Set attention = \"sdpa\" (or \"auto\") for this "
                              "method ([tool.quantbench.method_options.<method>] in pyproject.toml).")
    try:
        counts = fused_attention.fuse(graph, fused_attention.kernel_dir(cache_dir))
    except (RuntimeError, OSError) as error:  # the build failed (compiler, headers): the graph is still untouched
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if attention == "auto":
            return f"sdpa (auto: the fused-bf16 kernel did not build: {first_line})"
        raise QuantbenchError(f"attention='fused-bf16': the kernel did not build ({first_line}); its build folder is "
                              f"{fused_attention.kernel_dir(cache_dir)}. Set attention = \"sdpa\" or \"auto\" for this method.") from error
    if not counts["fused"]:
        return f"sdpa ({'auto' if attention == 'auto' else 'fused-bf16 asked'}: the graph has no SDPA op the kernel computes)"
    return (f"fused-bf16 ({counts['fused']} SDPA ops on quantbench's AVX512-BF16 kernel, "
            f"{counts['int8_output']} writing the next Linear's uint8 input)")


def eager_predictor(module: torch.nn.Module, device: str = "cpu") -> Predict:
    module = module.to(device).eval()

    @torch.inference_mode()
    def predict(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return module(input_ids.to(device), attention_mask.to(device))

    return predict


def compiled_predictor(module: torch.nn.Module, example: tuple[torch.Tensor, torch.Tensor],
                       freezing: bool = True, vector_quantize: bool = False) -> Predict:
    """``torch.compile`` with Inductor freezing, compiled once on ``example`` (so build time holds it).

    Freezing folds weights into the graph as constants; without it Inductor keeps int8 PT2E graphs as
    q/dq in eager speed (measured: no gain), and FP32 loses its fair compiled comparison. ``dynamic=True`` with
    ``backed_size_oblivious`` gives one graph for every batch size, 1 included (without it batch 1 is
    specialised and compiled again: measured on static-int8, one graph instead of two, 7 s less per thread
    count, and the same latency at batch 1 and 32 within noise). A new thread count still compiles anew
    (Inductor bakes the count into its code), and that compile is made on ``example`` too, before the caller's
    batch: a graph compiled on a batch of 1 under ``backed_size_oblivious`` can be wrong for larger batches
    (measured on int4-weight-only's bf16 graph: one compiled on batch 1 read ``12 // batch`` attention heads, and
    its cells at batch 32 died of SIGFPE in SDPA's flash-attention kernel; tests/test_compiled_threads.py).

    Both settings are patched around every call, never set for the process: torch.compile compiles lazily, at
    the first call and at any recompile, and Dynamo itself reads ``freezing`` while tracing (it decides whether
    parameters become graph constants), so ``torch.compile(options={"freezing": True})``, which reaches only the
    Inductor backend, is not the same. ``freezing=False`` is for graphs freezing would harm (int4-weight-only).
    ``vector_quantize`` compiles with quantbench's lowering of a run-time-scale quantize
    (quant_impl.methods.quantize_lowering), patched in the same way.
    """
    import torch._inductor.config as inductor_config
    import torch.fx.experimental._config as fx_config

    from quant_impl.methods.quantize_lowering import patched

    compiled = torch.compile(module, dynamic=True)
    compiled_for: set[int] = set()  # thread counts a graph was compiled for, on ``example``

    @torch.no_grad()
    def predict(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if torch.is_inference_mode_enabled() or input_ids.is_inference() or attention_mask.is_inference():
            # Dynamo guards on a tensor's dispatch keys, and inference tensors lack autograd's: a caller inside
            # torch.inference_mode (evaluate, most tests) got a second full compile, 12-15 s per int8 method cold
            # (measured on Zen 4). Ordinary copies of the inputs reuse the graph compiled on ``example``.
            with torch.inference_mode(False):
                return predict(input_ids.clone(), attention_mask.clone())
        with (fx_config.patch(backed_size_oblivious=True), inductor_config.patch(freezing=freezing),
              patched(vector_quantize)):
            threads = torch.get_num_threads()
            if threads not in compiled_for:
                compiled(*example)
                compiled_for.add(threads)
            return compiled(input_ids, attention_mask)

    predict(*example)
    return predict


def example_inputs(baseline: Any, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A real batch from the calibration split (export and compile trace shapes from it)."""
    rows = baseline.data["calibration"][:batch_size]
    return rows["input_ids"], rows["attention_mask"]


def calibration_batches(baseline: Any, batch_size: int, limit: int | None = None):
    """Yield (input_ids, attention_mask) batches of the calibration split."""
    split = baseline.data["calibration"]
    stop = len(split) if limit is None else min(len(split), limit * batch_size)
    for first in range(0, stop, batch_size):
        rows = split[first : min(first + batch_size, stop)]
        yield rows["input_ids"], rows["attention_mask"]


# The report section every weight-only method (a registration's weight_bits) below torch's int4 shares.
WEIGHT_ONLY_SECTION = dict(section="4.5w", section_title={"en": "4.5w Weight-only compression below 8 bits",
                                                          "zh": "4.5w 低于 8 位的仅权重压缩"})
