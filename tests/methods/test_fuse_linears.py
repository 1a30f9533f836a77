"""quant_impl.methods.fuse_linears: Linears that read one tensor become one Linear and a split, with the same
results, before the quantizer sees the graph; and the PT2E int8 methods use it unless ``fuse_qkv = false``."""

from __future__ import annotations

import pytest
import torch

from quant_impl.hardware import get_hardware
from quant_impl.methods import _pt2e, apply
from quant_impl.methods.fuse_linears import LINEAR, fuse_shared_input_linears
from quant_impl.methods.static_int8 import StaticInt8Config

WIDTH = 16


class Block(torch.nn.Module):
    """An attention block's shape: query, key and value read ``x``; ``out`` reads their mix (another tensor)."""

    def __init__(self, value_bias: bool = True) -> None:
        super().__init__()
        self.query = torch.nn.Linear(WIDTH, WIDTH)
        self.key = torch.nn.Linear(WIDTH, WIDTH)
        self.value = torch.nn.Linear(WIDTH, 2 * WIDTH, bias=value_bias)
        self.out = torch.nn.Linear(2 * WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.softmax(self.query(x) @ self.key(x).transpose(-1, -2), dim=-1) @ self.value(x)
        return self.out(torch.relu(mixed))


def _exported(block: torch.nn.Module) -> tuple[torch.fx.GraphModule, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(3, 8, WIDTH)
    batch = torch.export.Dim("batch", min=1, max=64)
    return torch.export.export(block.eval(), (x,), dynamic_shapes=({0: batch},)).module(), x


def _linears(graph: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [node for node in graph.graph.nodes if node.target is LINEAR]


def test_query_key_value_become_one_linear_with_the_same_result() -> None:
    torch.manual_seed(1)
    graph, x = _exported(Block())
    expected = graph(x)
    assert fuse_shared_input_linears(graph) == 1
    linears = _linears(graph)
    assert len(linears) == 2  # the fused one and out
    fused = next(node for node in linears if node.args[0].op == "placeholder")
    weight = graph.get_parameter(fused.args[1].target)
    assert weight.shape == (4 * WIDTH, WIDTH)  # 16 + 16 + 32 output rows
    torch.testing.assert_close(graph(x), expected)
    torch.testing.assert_close(graph(torch.randn(5, 8, WIDTH)).shape, torch.Size([5, 8, WIDTH]))  # still any batch
    # the three FP32 weights left the module with their Linears (nothing unused stays in memory)
    names = {name for name, _ in graph.named_parameters()}
    assert not any(part in name for name in names for part in ("query.weight", "key.weight", "value.weight"))
    # the fused Linear keeps the first one's module path (what per-module quantizer settings match)
    assert list(fused.meta["nn_module_stack"].values())[-1][0].endswith("query")


def test_kept_layers_and_mismatched_linears_are_left_alone() -> None:
    graph, x = _exported(Block())
    assert fuse_shared_input_linears(graph, keep=("key",)) == 0  # a float layer keeps its whole group apart
    assert len(_linears(graph)) == 4
    graph, _ = _exported(Block(value_bias=False))
    assert fuse_shared_input_linears(graph) == 0  # one of three without a bias: not one Linear
    assert len(_linears(graph)) == 4


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_int8_graphs_of_fused_and_separate_linears_compute_the_same(dynamic: bool) -> None:
    """Per-channel weight scales and the shared input's scale do not change, and int8 products sum exactly: the
    quantized graphs agree to the bit, not within a tolerance."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    torch.manual_seed(2)
    block = Block()
    results = []
    for fuse in (False, True):
        graph, x = _exported(block)
        if fuse:
            assert fuse_shared_input_linears(graph) == 1
        prepared = prepare_pt2e(graph, _pt2e.x86_quantizer(is_dynamic=dynamic))
        with torch.no_grad():
            prepared(x)  # calibration
            converted = convert_pt2e(prepared)
            results.append(converted(x))
        assert sum(node.target is LINEAR for node in converted.graph.nodes) == (2 if fuse else 4)
    assert torch.equal(results[0], results[1])


def test_static_int8_fuses_each_attention_block_and_its_logits_do_not_move(built_on_cpu, tiny_baseline, tiny_batch):
    fused = built_on_cpu("static-int8")
    layers = tiny_baseline.model.config.num_hidden_layers
    assert fused.settings["fused_linears"].startswith(f"{layers} groups")
    separate = apply("static-int8", tiny_baseline, get_hardware("cpu"), StaticInt8Config(fuse_qkv=False))
    assert separate.settings["fused_linears"] == "off (fuse_qkv = false)"
    assert torch.equal(fused(*tiny_batch), separate(*tiny_batch))


def test_fuse_qkv_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="fuse_qkv"):
        StaticInt8Config(fuse_qkv="yes")
