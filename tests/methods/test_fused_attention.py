"""The fused-bf16 attention kernel (quant_impl.methods.fused_attention): it computes SDPA to bf16 accuracy for every
shape and mask form the exported models pass it, and ``attention="fused-bf16"`` really puts it in the int8 graphs.

Error bound: the kernel rounds Q, K, V and the probabilities to bf16 (8 bits of mantissa), so its error is measured
against torch's own SDPA run on bf16 inputs, the same rounding done by someone else; each case must stay within
twice that (and a small floor for cases where torch's bf16 path happens to be nearly exact).
"""

from __future__ import annotations

import os

import pytest
import torch

from quant_impl.errors import QuantbenchError
from quant_impl.hardware import get_hardware
from quant_impl.methods import apply, fused_attention
from quant_impl.methods.dynamic_int8 import DynamicInt8Config
from quant_impl.methods.qat_int8 import QatInt8Config, qat_state_path
from quant_impl.methods.static_int8 import StaticInt8Config
from quant_impl.qmath import sqnr_db

REASON = fused_attention.unavailable_reason()
needs_kernel = pytest.mark.skipif(REASON is not None, reason=f"{REASON}")


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory):
    return fused_attention.register(str(tmp_path_factory.mktemp("kernels")))


@pytest.fixture(scope="module")
def op(ops):
    return ops["float"]


def _inputs(batch: int, heads: int, length: int, head: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    # [B, S, H, D] transposed to [B, H, S, D]: the strided layout transformers hands SDPA
    return [torch.randn(batch, length, heads, head, generator=gen).transpose(1, 2) for _ in range(3)]


def _padding(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """[B, S] bool, True = a real token; every row keeps at least its first token."""
    lengths = torch.randint(1, length + 1, (batch,), generator=torch.Generator().manual_seed(seed))
    return torch.arange(length)[None, :] < lengths[:, None]


def _sdpa(q, k, v, mask, dtype=torch.float32):
    mask = mask if mask is None or mask.dtype == torch.bool else mask.to(dtype)
    out = torch.nn.functional.scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), attn_mask=mask)
    return out.float().transpose(1, 2)


@needs_kernel
@pytest.mark.parametrize("shape", [(2, 12, 128, 32), (1, 3, 37, 32), (3, 2, 5, 64), (2, 4, 130, 16), (1, 1, 1, 16)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mask_kind", ["none", "bool-keys", "float-keys", "bool-full"])
def test_kernel_matches_sdpa_to_bf16_accuracy(op, shape, mask_kind) -> None:
    batch, heads, length, head = shape
    q, k, v = _inputs(*shape)
    keep = _padding(batch, length)
    gen = torch.Generator().manual_seed(1)
    mask = {
        "none": None,
        "bool-keys": keep[:, None, None, :].expand(batch, 1, length, length),  # what the sdpa export passes
        "float-keys": torch.zeros(batch, 1, 1, length).masked_fill(~keep[:, None, None, :], float("-inf")),
        "bool-full": keep[:, None, None, :] & (torch.rand(batch, heads, length, length, generator=gen) > 0.3) |
                     torch.eye(length, dtype=torch.bool),  # per-head, per-query masks; the diagonal always kept
    }[mask_kind]
    out = op(q, k, v, mask, head ** -0.5)
    assert out.shape == (batch, length, heads, head)
    reference = _sdpa(q, k, v, mask)
    bound = max(2 * (_sdpa(q, k, v, mask, torch.bfloat16) - reference).abs().max().item(), 4e-3)
    assert (out - reference).abs().max().item() <= bound


@needs_kernel
def test_kernel_never_attends_to_masked_keys(op) -> None:
    """Huge values behind the mask must not leak into any output (an off-by-one at the masked tail would)."""
    q, k, v = _inputs(2, 2, 21, 16)
    keep = torch.zeros(2, 21, dtype=torch.bool)
    keep[:, :10] = True
    v = v.clone()
    v[:, :, 10:] = 1e6
    out = op(q, k, v, keep[:, None, None, :], 0.25)
    assert out.abs().max().item() < 10


@needs_kernel
def test_quantized_output_is_quantize_per_tensor_of_the_float_output(ops) -> None:
    import torchao.quantization.pt2e  # noqa: F401 -- registers torch.ops.quantized_decomposed

    q, k, v = _inputs(3, 4, 50, 32)
    mask = _padding(3, 50)[:, None, None, :]
    reference = torch.ops.quantized_decomposed.quantize_per_tensor.default(ops["float"](q, k, v, mask, 0.2), 0.005, 120,
                                                                           0, 255, torch.uint8)
    out = ops["uint8"](q, k, v, mask, 0.2, 0.005, 120)
    assert out.dtype == torch.uint8 and out.shape == reference.shape
    diff = (out.int() - reference.int()).abs()
    # the kernel multiplies by 1/scale where torch divides: a value on a rounding boundary may land one step off
    assert diff.max().item() <= 1 and (diff == 0).float().mean().item() > 0.999
    # most values fall inside the range (so the check is about rounding, not only saturation), some at each end
    inside = (out > 0) & (out < 255)
    assert inside.float().mean().item() > 0.9 and (out == 0).any() and (out == 255).any()


def _sdpa_ops(graph: torch.fx.GraphModule) -> int:
    return sum(node.target is torch.ops.aten.scaled_dot_product_attention.default for node in graph.graph.nodes)


def _kernel_ops(graph: torch.fx.GraphModule) -> int:
    return sum("quantbench.bf16_attention" in str(node.target) for node in graph.graph.nodes)


def _static_qparams(graph: torch.fx.GraphModule) -> list[tuple[float, int]]:
    """(scale, zero point) of every fixed-scale activation quantizer, the fused kernel's own included."""
    found = []
    for node in graph.graph.nodes:
        if node.target is torch.ops.quantized_decomposed.quantize_per_tensor.default:
            found.append((node.args[1], node.args[2]))
        elif "quantbench.bf16_attention_quantized" in str(node.target):
            found.append((node.args[5], node.args[6]))
    return found


def _quantize_ops(graph: torch.fx.GraphModule) -> int:
    return sum(node.target is torch.ops.quantized_decomposed.quantize_per_tensor.default for node in graph.graph.nodes)


@needs_kernel
@pytest.mark.parametrize("name,config_cls,options,int8_output", [
    ("static-int8", StaticInt8Config, {"observer": "minmax"}, True),
    ("dynamic-int8", DynamicInt8Config, {}, False),  # its next Linear quantizes per batch, at run time
    ("qat-int8", QatInt8Config, {}, True),
], ids=["static", "dynamic", "qat"])
def test_option_swaps_every_attention_and_keeps_logits(tiny_baseline, tiny_batch, built_on_cpu, name, config_cls,
                                                       options, int8_output) -> None:
    cpu = get_hardware("cpu")
    fused = apply(name, tiny_baseline, cpu, config_cls(**options, attention="fused-bf16"))
    layers = tiny_baseline.model.config.num_hidden_layers
    assert _kernel_ops(fused.module) == layers and _sdpa_ops(fused.module) == 0
    assert fused.settings["attention"].startswith(f"fused-bf16 ({layers} SDPA ops")
    assert f"{layers if int8_output else 0} writing the next Linear's uint8 input" in fused.settings["attention"]
    # the same method on torch's SDPA: the swap costs no more than bf16 rounding of attention
    plain = apply(name, tiny_baseline, cpu, config_cls(**options, attention="sdpa"))
    assert _sdpa_ops(plain.module) == layers and _kernel_ops(plain.module) == 0
    # with int8 output, the kernel took over exactly the quantize of attention's output (one per layer), with the
    # same calibrated scale and zero point (both builds calibrate alike)
    assert sorted(_static_qparams(plain.module)) == sorted(_static_qparams(fused.module))
    assert _quantize_ops(plain.module) - _quantize_ops(fused.module) == (layers if int8_output else 0)
    assert sqnr_db(plain.predict(*tiny_batch), fused.predict(*tiny_batch)) >= 30.0
    # the default ("auto") is the kernel on a machine that runs it
    assert _kernel_ops(built_on_cpu(name).module) == layers


def test_auto_falls_back_to_sdpa_and_says_why(tiny_baseline, monkeypatch) -> None:
    monkeypatch.setattr(fused_attention, "unavailable_reason", lambda: "this CPU has no avx512_bf16 (test)")
    built = apply("dynamic-int8", tiny_baseline, get_hardware("cpu"), DynamicInt8Config())
    assert built.settings["attention"] == "sdpa (auto: this CPU has no avx512_bf16 (test))"
    assert _sdpa_ops(built.module) == tiny_baseline.model.config.num_hidden_layers and _kernel_ops(built.module) == 0


def test_a_kernel_that_does_not_build_falls_back_under_auto_only(tiny_baseline, monkeypatch) -> None:
    def broken(build_root):
        raise RuntimeError("Error building extension 'quantbench_bf16_attention'\n(compiler output)")

    monkeypatch.setattr(fused_attention, "unavailable_reason", lambda: None)
    monkeypatch.setattr(fused_attention, "register", broken)
    cpu = get_hardware("cpu")
    built = apply("dynamic-int8", tiny_baseline, cpu, DynamicInt8Config())
    assert built.settings["attention"] == ("sdpa (auto: the fused-bf16 kernel did not build: "
                                           "Error building extension 'quantbench_bf16_attention')")
    assert _sdpa_ops(built.module) == tiny_baseline.model.config.num_hidden_layers
    with pytest.raises(QuantbenchError, match=r"did not build \(Error building extension.*build folder is .*kernels"):
        apply("dynamic-int8", tiny_baseline, cpu, DynamicInt8Config(attention="fused-bf16"))


def test_graph_without_sdpa_is_left_alone(tiny_baseline) -> None:
    """eager attention (MPNet's own, or attention="eager") leaves the kernel nothing to swap: nothing changes."""
    from quant_impl.methods import _pt2e
    from quant_impl.methods._common import LogitsModel, example_inputs, fp32_copy, set_attention

    model = fp32_copy(tiny_baseline)
    set_attention(model, "eager")
    graph = _pt2e.export(LogitsModel(model), example_inputs(tiny_baseline))
    before = [str(node.target) for node in graph.graph.nodes]
    assert fused_attention.fuse(graph, tiny_baseline.config.cache_dir / "kernels") == {"fused": 0, "int8_output": 0}
    assert [str(node.target) for node in graph.graph.nodes] == before


class _Attention(torch.nn.Module):
    def forward(self, query, key, value, mask):
        return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)


def _sdpa_graph(value_head: int = 16) -> tuple[torch.fx.GraphModule, tuple[torch.Tensor, ...]]:
    """One exported SDPA on [1, 2, 8, 16] query and key, a [1, 1, 8, 8] boolean mask, ``value_head`` for V."""
    gen = torch.Generator().manual_seed(0)
    query, key = (torch.randn(1, 2, 8, 16, generator=gen) for _ in range(2))
    inputs = (query, key, torch.randn(1, 2, 8, value_head, generator=gen), torch.rand(1, 1, 8, 8, generator=gen) > 0.2)
    return torch.export.export(_Attention(), inputs).module(), inputs


def _sdpa_node(graph: torch.fx.GraphModule) -> torch.fx.Node:
    (node,) = [n for n in graph.graph.nodes if n.target is torch.ops.aten.scaled_dot_product_attention.default]
    return node


@pytest.mark.parametrize("change", ["none", "float64-mask", "int-mask", "mask-per-5-heads", "mask-5d", "meta-mask",
                                    "meta-value", "value-float64"])
def test_replaceable_checks_what_the_kernel_checks(change) -> None:
    """What the kernel's TORCH_CHECKs would refuse (at the compiled graph's first call, past the fallback) is left
    alone. The traced values are swapped for tensors of the shape, dtype or device under test."""
    graph, _ = _sdpa_graph()
    node = _sdpa_node(graph)
    mask, value = node.args[3] if len(node.args) > 3 else node.kwargs["attn_mask"], node.args[2]
    swap = {
        "none": None,
        "float64-mask": (mask, torch.zeros(1, 1, 8, 8, dtype=torch.float64)),
        "int-mask": (mask, torch.zeros(1, 1, 8, 8, dtype=torch.int64)),
        "mask-per-5-heads": (mask, torch.zeros(1, 5, 8, 8, dtype=torch.bool)),  # the graph has 2 heads
        "mask-5d": (mask, torch.zeros(1, 1, 1, 8, 8, dtype=torch.bool)),
        "meta-mask": (mask, torch.zeros(1, 1, 8, 8, dtype=torch.bool, device="meta")),
        "meta-value": (value, torch.zeros(1, 2, 8, 16, device="meta")),
        "value-float64": (value, torch.zeros(1, 2, 8, 16, dtype=torch.float64)),
    }[change]
    if swap:
        swap[0].meta["val"] = swap[1]
    assert (fused_attention._replaceable(node) is None) == (change != "none")


def test_sdpa_the_kernel_cannot_compute_is_left_alone_and_auto_still_runs(tmp_path) -> None:
    """V with a head size of its own (legal SDPA, refused by the kernel): nothing is swapped, so "auto" keeps sdpa
    and the graph still runs (it used to be swapped and fail the kernel's shape check at the first call)."""
    from quant_impl.methods._common import finish_attention

    graph, inputs = _sdpa_graph(value_head=32)
    assert fused_attention._replaceable(_sdpa_node(graph)) is None
    before = [str(node.target) for node in graph.graph.nodes]
    attention = finish_attention(graph, "auto", tmp_path)
    assert attention.startswith("sdpa (auto: ")
    assert [str(node.target) for node in graph.graph.nodes] == before
    expected = torch.nn.functional.scaled_dot_product_attention(*inputs[:3], attn_mask=inputs[3])
    assert torch.equal(graph(*inputs), expected)


def test_qat_shares_the_trained_state_of_sdpa(tiny_baseline) -> None:
    """Training runs the exported (sdpa) attention either way; only conversion differs, so no second training."""
    sdpa = qat_state_path(tiny_baseline, QatInt8Config(attention="sdpa"))
    assert qat_state_path(tiny_baseline, QatInt8Config(attention="fused-bf16")) == sdpa
    assert qat_state_path(tiny_baseline, QatInt8Config()) == sdpa
    assert qat_state_path(tiny_baseline, QatInt8Config(attention="eager")) != \
        qat_state_path(tiny_baseline, QatInt8Config(attention="sdpa"))


def test_unavailable_kernel_is_an_error_not_a_silent_sdpa(tiny_baseline, monkeypatch) -> None:
    monkeypatch.setattr(fused_attention, "unavailable_reason", lambda: "this CPU has no avx512_bf16 (test)")
    with pytest.raises(QuantbenchError, match=r"fused-bf16.*no avx512_bf16 \(test\).*attention = \"sdpa\""):
        apply("dynamic-int8", tiny_baseline, get_hardware("cpu"), DynamicInt8Config(attention="fused-bf16"))


def test_only_pt2e_methods_take_the_option() -> None:
    with pytest.raises(ValueError, match="needs engine='pt2e'"):
        DynamicInt8Config(engine="torch-ao", attention="fused-bf16")
    from quant_impl.methods.onnxruntime_engine import OrtInt8DynamicConfig
    with pytest.raises(ValueError, match="attention must be one of"):
        OrtInt8DynamicConfig(attention="fused-bf16")
    assert StaticInt8Config().attention == DynamicInt8Config().attention == QatInt8Config().attention == "auto"


def test_ninja_wheel_is_found_off_path(monkeypatch) -> None:
    """A venv's python run by full path has no venv bin on PATH; the ninja dependency's binary is found anyway."""
    ninja = pytest.importorskip("ninja")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert fused_attention._ninja_on_path()
    assert os.environ["PATH"].split(os.pathsep)[0] == ninja.BIN_DIR


def test_kernel_folder_is_the_cache_unless_shared(tiny_baseline, tmp_path, monkeypatch) -> None:
    """$QUANTBENCH_KERNEL_CACHE moves the build out of the cache (private caches share one), and the build error
    names the folder actually used."""
    monkeypatch.delenv(fused_attention.KERNEL_CACHE_ENV, raising=False)
    assert fused_attention.kernel_dir(tmp_path / "cache") == tmp_path / "cache" / "kernels"
    shared = tmp_path / "shared-kernels"
    monkeypatch.setenv(fused_attention.KERNEL_CACHE_ENV, str(shared))
    assert fused_attention.kernel_dir(tmp_path / "cache") == shared
    asked = []

    def broken(build_root):
        asked.append(build_root)
        raise RuntimeError("Error building extension 'quantbench_bf16_attention'")

    monkeypatch.setattr(fused_attention, "unavailable_reason", lambda: None)
    monkeypatch.setattr(fused_attention, "register", broken)
    with pytest.raises(QuantbenchError, match=f"build folder is {shared}"):
        apply("dynamic-int8", tiny_baseline, get_hardware("cpu"), DynamicInt8Config(attention="fused-bf16"))
    assert asked == [str(shared)]
