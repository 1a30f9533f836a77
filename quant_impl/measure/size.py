"""Model size as the bytes a deployment has to ship: the serialized tensors the model really uses."""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Size:
    bytes: int
    note: str  # what was counted and how
    unit: str = "bytes"

    @property
    def megabytes(self) -> float:
        return self.bytes / 1e6


def serialized_bytes(tensors: dict[str, object]) -> int:
    """Length of ``torch.save`` of a name -> tensor (or packed-params) mapping, in bytes.

    Example:
        >>> serialized_bytes({"w": torch.zeros(1000, dtype=torch.int8)}) > 1000
        True
    """
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getbuffer().nbytes


def module_size(module: torch.nn.Module) -> Size:
    """Size of an eager module's state_dict (quantize_dynamic's packed int8 weights serialize as int8)."""
    return Size(serialized_bytes(module.state_dict()), "torch.save of the module's state_dict")


def graph_size(graph_module: torch.fx.GraphModule) -> Size:
    """Size of the tensors a converted PT2E graph reads (its ``get_attr`` nodes).

    A converted graph keeps the original FP32 weights as unused attributes (``torch.export.save`` of it
    ships them too); counting only what the graph reads measures the int8 program a deployment needs.
    """
    used: dict[str, torch.Tensor] = {}
    for node in graph_module.graph.nodes:
        if node.op == "get_attr":
            value = _fetch_attr(graph_module, node.target)
            if isinstance(value, torch.Tensor):
                used[node.target] = value
    return Size(serialized_bytes(used), "torch.save of the tensors the converted graph reads (get_attr nodes)")


def _fetch_attr(module: torch.nn.Module, target: str) -> object:
    owner, _, name = target.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, name)
