"""Linears that read the same tensor (an attention block's query, key and value) become one Linear and a split.

Applied to the exported FP32 graph before the quantizer sees it, so the int8 graph has one oneDNN call per
attention block where it had three. Why: at batch 1 the 128-row GEMMs are small and each call carries its own
dispatch and Python-wrapper cost (quantbench profile: "framework overhead"). Measured on the quick MiniLM, Zen 4,
2 threads, interleaved (README "Methods"): 1.00-1.17x faster at batch 1 (static, QAT, dynamic int8), within noise
at batch 32.

The result is the same, not merely close: weights are per output channel, so their scales are unchanged by the
concatenation; the three Linears already read one activation tensor, so its (static or dynamic) scale is the
same; and int8 products are summed exactly in int32. The tests check the logits are bit-identical.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from typing import Any

import torch

LINEAR = torch.ops.aten.linear.default
SPLIT = torch.ops.aten.split_with_sizes.default


def module_name(node: torch.fx.Node) -> str:
    """The module path a node was traced from (``""`` when the graph does not say)."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def fuse_shared_input_linears(graph_module: torch.fx.GraphModule, keep: tuple[str, ...] = ()) -> int:
    """Fuse every group of >= 2 Linears with one input, constant weights of one width and all or no biases, in
    place; Linears whose module path is in ``keep`` (e.g. float_layers, as paths in the exported module) stay as
    they are, with their group. Returns the number of groups fused."""
    groups: dict[torch.fx.Node, list[torch.fx.Node]] = defaultdict(list)
    for node in graph_module.graph.nodes:
        if node.target is LINEAR and _constant_params(node):
            groups[node.args[0]].append(node)
    fused = 0
    for source, linears in groups.items():
        if len(linears) >= 2 and _compatible(graph_module, linears) and not {module_name(n) for n in linears} & set(keep):
            _fuse(graph_module, source, linears, fused)
            fused += 1
    if fused:
        graph_module.graph.lint()
        graph_module.recompile()
    return fused


def _constant_params(node: torch.fx.Node) -> bool:
    params = [arg for arg in node.args[1:3] if arg is not None]
    return len(node.args) >= 2 and not node.kwargs and all(
        isinstance(arg, torch.fx.Node) and arg.op == "get_attr" for arg in params)


def _param(graph_module: torch.fx.GraphModule, node: torch.fx.Node | None) -> torch.Tensor | None:
    return None if node is None else _attr(graph_module, node.target)


def _owner(graph_module: torch.fx.GraphModule, target: str) -> tuple[torch.nn.Module, str]:
    """The module holding a get_attr target, and the attribute's name in it."""
    owner, _, leaf = target.rpartition(".")
    return graph_module.get_submodule(owner), leaf


def _attr(graph_module: torch.fx.GraphModule, target: str) -> Any:
    return getattr(*_owner(graph_module, target))


def _bias(node: torch.fx.Node) -> torch.fx.Node | None:
    return node.args[2] if len(node.args) > 2 else None


def _compatible(graph_module: torch.fx.GraphModule, linears: list[torch.fx.Node]) -> bool:
    weights = [_param(graph_module, n.args[1]) for n in linears]
    with_bias = {_bias(n) is not None for n in linears}
    return (len(with_bias) == 1 and all(w.dim() == 2 for w in weights)
            and len({(w.shape[1], w.dtype, w.requires_grad) for w in weights}) == 1)


def _fuse(graph_module: torch.fx.GraphModule, source: torch.fx.Node, linears: list[torch.fx.Node], index: int) -> None:
    graph = graph_module.graph
    weights = [_param(graph_module, n.args[1]) for n in linears]
    biases = [_param(graph_module, _bias(n)) for n in linears]
    sizes = [w.shape[0] for w in weights]
    name = f"fused_linear_{index}"
    trainable = weights[0].requires_grad  # QAT trains the fused weight as it would the three
    graph_module.register_parameter(f"{name}_weight",
                                    torch.nn.Parameter(torch.cat([w.detach() for w in weights]), trainable))
    if biases[0] is not None:
        graph_module.register_parameter(f"{name}_bias",
                                        torch.nn.Parameter(torch.cat([b.detach() for b in biases]), trainable))
    first = linears[0]  # groups were gathered in graph order
    with graph.inserting_before(first):
        weight = graph.get_attr(f"{name}_weight")
        bias = graph.get_attr(f"{name}_bias") if biases[0] is not None else None
        out = graph.call_function(LINEAR, (source, weight, bias) if bias is not None else (source, weight))
        parts = graph.call_function(SPLIT, (out, sizes, -1))
        items = [graph.call_function(operator.getitem, (parts, i)) for i in range(len(linears))]
    _copy_meta(graph_module, first, source, weight, bias, out, parts, items, sizes)
    old_params = []
    for linear, item in zip(linears, items):
        linear.replace_all_uses_with(item)
        old_params += [arg for arg in linear.args[1:3] if isinstance(arg, torch.fx.Node)]
        graph.erase_node(linear)
    for param in dict.fromkeys(old_params):  # the FP32 copies would otherwise stay in the module, and in its memory
        if param.users:
            continue
        graph.erase_node(param)
        if not any(node.op == "get_attr" and node.target == param.target for node in graph.nodes):  # tied weights
            delattr(*_owner(graph_module, param.target))


def _copy_meta(graph_module: torch.fx.GraphModule, first: torch.fx.Node, source: torch.fx.Node,
               weight: torch.fx.Node, bias: torch.fx.Node | None, out: torch.fx.Node, parts: torch.fx.Node,
               items: list[torch.fx.Node], sizes: list[int]) -> None:
    """The fused Linear carries the first Linear's trace metadata (its module path and source function: the
    quantizer finds Linears and their per-module settings by them), the split the enclosing module's path; all
    get fake values the quantizer's passes can read, computed in the graph's own fake mode."""
    from torch._guards import detect_fake_mode
    from torch.fx.passes.shape_prop import _extract_tensor_metadata

    out.meta.update({k: v for k, v in first.meta.items() if k not in ("val", "tensor_meta")})
    # The split belongs to the module around the Linears: with the Linear's module path or source function the
    # quantizer would take it for a Linear (torch's get_source_partitions goes by both).
    outer = dict(list((first.meta.get("nn_module_stack") or {}).items())[:-1])
    for node in (parts, *items):
        node.meta["nn_module_stack"] = outer
        if "stack_trace" in first.meta:
            node.meta["stack_trace"] = first.meta["stack_trace"]
    value = source.meta.get("val")
    fake_mode = detect_fake_mode([value]) if value is not None else None
    if fake_mode is None:
        return
    with fake_mode:
        w = fake_mode.from_tensor(_param(graph_module, weight))
        b = fake_mode.from_tensor(_param(graph_module, bias)) if bias is not None else None
        out.meta["val"] = LINEAR(value, w, b) if b is not None else LINEAR(value, w)
        parts.meta["val"] = SPLIT(out.meta["val"], sizes, -1)
    weight.meta["val"], out.meta["tensor_meta"] = w, _extract_tensor_metadata(out.meta["val"])
    if bias is not None:
        bias.meta["val"] = b
    for i, item in enumerate(items):
        item.meta["val"] = parts.meta["val"][i]
        item.meta["tensor_meta"] = _extract_tensor_metadata(item.meta["val"])
