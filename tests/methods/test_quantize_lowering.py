"""quantbench's lowering of a run-time-scale quantize (quant_impl.methods.quantize_lowering): the values eager
torch computes, vector code where torch's own lowering is a scalar loop (AVX2), and chosen only there by "auto"."""

from __future__ import annotations

import pytest
import torch

from quant_impl.hardware import get_hardware
from quant_impl.methods import apply, quantize_lowering
from quant_impl.methods.dynamic_int8 import DynamicInt8Config
from quant_impl.qmath import sqnr_db

from test_forced_cpu_class import _can_force, _child


def _dynamic_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, quant_max: int) -> torch.Tensor:
    import torchao  # noqa: F401  (registers quantized_decomposed)

    return torch.ops.quantized_decomposed.quantize_per_tensor.tensor(x, scale, zero_point, 0, quant_max, torch.uint8)


def _compiled(enabled: bool, quant_max: int):
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, s, z: _dynamic_quantize(x, s, z, quant_max))

    def run(*args: torch.Tensor) -> torch.Tensor:
        with quantize_lowering.patched(enabled):
            return compiled(*args)

    return run


@pytest.mark.parametrize("quant_max", [255, 127])
def test_the_vector_lowering_computes_what_eager_torch_does(quant_max: int) -> None:
    """Every value within one step of eager torch's round(x / scale) + zero point (its multiply rounds before the
    sum, the lowering's fma after it), nearly all equal; and the clamp to quant_max holds where the scale is too
    small for the data (a 7-bit range that only a clamp keeps below 128)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, 96, generator=generator) * 3
    scale = ((x.max() - x.min()) / quant_max).reshape(1)
    zero_point = torch.round(-x.min() / scale).to(torch.int64).reshape(1)
    for s in (scale, scale / 4):  # the second overflows both ends
        expected = _dynamic_quantize(x, s, zero_point, quant_max)
        got = _compiled(True, quant_max)(x, s, zero_point)
        assert got.dtype == torch.uint8 and got.shape == x.shape
        assert int(got.max()) <= quant_max
        step = (got.int() - expected.int()).abs()
        assert int(step.max()) <= 1 and float((step > 0).float().mean()) < 1e-3, step.sum()
    assert int(expected.max()) == quant_max and int(expected.min()) == 0  # the overflow case did clamp


def test_auto_picks_the_vector_lowering_only_where_inductor_compiles_for_avx2(monkeypatch: pytest.MonkeyPatch) -> None:
    for isa, enabled in (("avx2", True), ("avx512", False), ("avx512 avx512_vnni", False), ("", False)):
        monkeypatch.setattr(quantize_lowering, "inductor_vec_isa", lambda isa=isa: isa)
        used, note = quantize_lowering.resolve("auto")
        assert used is enabled and note.startswith("vector (auto" if enabled else "torch (auto"), (isa, note)
    assert quantize_lowering.resolve("vector") == (True, "vector (asked)")
    assert quantize_lowering.resolve("torch") == (False, "torch (asked)")


def test_the_patch_is_undone_and_unknown_choices_are_refused() -> None:
    from torch._inductor.lowering import lowerings

    op = torch.ops.quantized_decomposed.quantize_per_tensor.tensor
    before = lowerings[op]
    with quantize_lowering.patched(True):
        assert lowerings[op] is not before
    assert lowerings[op] is before
    with pytest.raises(ValueError, match="quantize_lowering.*auto.*torch.*vector"):
        DynamicInt8Config(quantize_lowering="scalar")


def test_dynamic_int8_keeps_its_logits_with_either_lowering(built_on_cpu, tiny_baseline, tiny_batch) -> None:
    shared = built_on_cpu("dynamic-int8")  # the session's build: "auto"
    auto_used_vector = shared.settings["quantize_lowering"].startswith("vector (auto")
    assert auto_used_vector == (quantize_lowering.inductor_vec_isa() == "avx2"), shared.settings["quantize_lowering"]
    other = "torch" if auto_used_vector else "vector"
    built = apply("dynamic-int8", tiny_baseline, get_hardware("cpu"), DynamicInt8Config(quantize_lowering=other))
    assert built.settings["quantize_lowering"] == f"{other} (asked)"
    assert sqnr_db(shared(*tiny_batch).float(), built(*tiny_batch).float()) >= 30.0


def test_under_forced_avx2_torch_lowers_to_a_scalar_loop_and_ours_to_vector_code(tmp_path) -> None:
    """The reason for the lowering, checked where the suite runs: a process forced to AVX2 compiles Inductor's
    kernels for AVX2, where torch's lowering ends in ``round_convert`` (ATen's generic per-element loop there) and
    quantbench's does not, and "auto" picks quantbench's."""
    _can_force("avx2")
    seen = _child("""
        import json, torch, torchao
        from torch._inductor.utils import run_and_get_cpp_code
        from quant_impl.methods import quantize_lowering
        q = torch.ops.quantized_decomposed.quantize_per_tensor.tensor
        x = torch.randn(2, 16, 64)
        args = (x, torch.tensor([0.05]), torch.tensor([128]))
        code = {}
        for enabled in (False, True):
            torch._dynamo.reset()
            with quantize_lowering.patched(enabled):
                _, code[enabled] = run_and_get_cpp_code(torch.compile(lambda x, s, z: q(x, s, z, 0, 255, torch.uint8)),
                                                        *args)
        print(json.dumps({"isa": quantize_lowering.inductor_vec_isa(), "auto": quantize_lowering.resolve("auto")[0],
                          "torch_round_convert": "round_convert" in code[False],
                          "ours_round_convert": "round_convert" in code[True],
                          "ours_vectorized": "at::vec::convert<uint8_t>" in code[True]}))
    """, "avx2", tmp_path)
    assert seen == {"isa": "avx2", "auto": True, "torch_round_convert": True, "ours_round_convert": False,
                    "ours_vectorized": True}
