"""quantbench profile: time per op kind, torch.profiler for torch models and an engine's own counters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from quant_impl.cli import main
from quant_impl.measure.profile import OTHER, kernel_profiling, op_kind, torch_kernels, torch_op_times


@pytest.mark.parametrize("name, kind", [
    ("onednn::qlinear_pointwise", "int8 linear"),
    ("graph_1_cpp_fused_add_native_layer_norm_quantize_per_tensor_4", "fused elementwise"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
    ("quantbench::bf16_attention", "attention"),
    ("quantbench::bf16_attention_quantized", "attention"),  # not "quantize / dequantize"
    ("aten::addmm", "float matmul"),
    ("aten::native_layer_norm", "layer norm"),
    ("FullyConnected", "int8 linear"),
    ("ScaledDotProductAttention", "attention"),
    ("MVN", "layer norm"),
    ("TorchDynamo Cache Lookup", "framework overhead"),
    ("aten::tanh", OTHER),
])
def test_op_kinds(name: str, kind: str) -> None:
    assert op_kind(name) == kind


def test_torch_profile_sees_inductor_kernels_when_compiled_for_it() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.GELU(), torch.nn.LayerNorm(16)).eval()
    with kernel_profiling():
        compiled = torch.compile(model)
        times = torch_op_times(lambda x, _mask: compiled(x), (torch.randn(8, 16), torch.ones(8, 16)), rounds=2)
    assert times.get("fused elementwise", 0) > 0 and times.get("float matmul", 0) > 0


def test_torch_kernels_names_onednn_implementations_and_leaves_stdout_alone(capfd: pytest.CaptureFixture) -> None:
    linear = torch.nn.Linear(32, 32)
    run = lambda x, _mask: torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, "none", [], "")
    print("before")
    with torch.no_grad():
        found = torch_kernels(run, (torch.randn(4, 32), None))
    print("after")
    assert found and all(name.startswith(("inner_product: ", "matmul: ")) and count >= 1 for name, count in found.items())
    out = capfd.readouterr().out
    assert "before" in out and "after" in out and "onednn_verbose" not in out


def test_torch_kernels_is_empty_without_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torch built without oneDNN (or where its verbose mode is missing) records no kernels instead of failing."""
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    calls = []
    assert torch_kernels(lambda x, _mask: calls.append(x), (torch.ones(1), None)) == {}
    assert len(calls) == 1  # the warm call still ran


def test_profile_command_puts_engines_side_by_side(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="openvino is in the 'peers' extra")
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'peers' extra")
    args = ["profile", "--profile", "smoke", "--cache-dir", str(tmp_path), "--methods",
            "fp32,openvino-int8,ort-int8-dynamic",
            "--batch-size", "1,4", "--seq-len", "16", "--rounds", "2", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["batches"]) == {"1", "4"}
    assert "PERF_COUNT" in result["profilers"]["openvino-int8"] and "torch.profiler" in result["profilers"]["fp32"]
    assert "ONNX Runtime" in result["profilers"]["ort-int8-dynamic"]
    for per_method in result["batches"].values():
        assert per_method["fp32"]["float matmul"] > 0 and per_method["openvino-int8"]["int8 linear"] > 0
        assert per_method["ort-int8-dynamic"]["int8 linear"] > 0  # ORT's own trace, not torch.profiler's nothing
    for per_kernel in result["kernels"].values():  # each engine names what it ran: execution types, op types
        assert any(name.startswith("FullyConnected: ") for name in per_kernel["openvino-int8"]), per_kernel
        assert any("(CPU)" in name and "MatMul" in name for name in per_kernel["ort-int8-dynamic"]), per_kernel
