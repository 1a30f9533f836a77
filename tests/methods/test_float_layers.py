"""float_layers on the PT2E int8 methods: the named Linears stay FP32 (quantbench tune's per-layer fallback)."""

from __future__ import annotations

import pytest
import torch

from quant_impl.errors import QuantbenchError
from quant_impl.hardware import get_hardware
from quant_impl.methods import apply, get_method, make_config
from quant_impl.methods.sensitivity import encoder_linears

CPU = get_hardware("cpu")


def _fp32_linears(built) -> int:
    """Linears whose weight is a plain tensor, not a dequantized int8 one. (Counting int8 weights instead misses
    the fallback: query and key kept FP32 leave value a Linear of its own, where the default fuses the three.)"""
    return sum(1 for n in built.module.graph.nodes
               if n.target is torch.ops.aten.linear.default and n.args[1].op == "get_attr")


def test_named_linears_stay_fp32_in_the_static_graph(tiny_baseline, built_on_cpu, tiny_batch) -> None:
    layers = list(encoder_linears(tiny_baseline.model))[:2]
    fallback = apply("static-int8", tiny_baseline, CPU, make_config("static-int8", {"float_layers": layers}))
    assert _fp32_linears(fallback) - _fp32_linears(built_on_cpu("static-int8")) == len(layers)
    assert fallback.settings["float_layers"] == layers
    assert fallback.size_bytes > built_on_cpu("static-int8").size_bytes  # two FP32 weight matrices shipped
    assert fallback(*tiny_batch).shape == (len(tiny_batch[0]), 2)


def test_an_unknown_layer_is_one_error_naming_it(tiny_baseline) -> None:
    with pytest.raises(QuantbenchError, match="nope not a Linear of this model"):
        apply("static-int8", tiny_baseline, CPU, make_config("static-int8", {"float_layers": ["nope"]}))


@pytest.mark.parametrize("value", ["bert.encoder.layer.0.output.dense", [3], [""]])
def test_float_layers_must_be_a_list_of_names(value) -> None:
    with pytest.raises(QuantbenchError, match="float_layers must be a list"):
        make_config("static-int8", {"float_layers": value})


def test_the_registry_knows_which_methods_take_float_layers() -> None:
    assert {name for name in ("static-int8", "qat-int8", "dynamic-int8", "bf16", "ort-int8-static")
            if get_method(name).takes_float_layers} == {"static-int8", "qat-int8", "dynamic-int8"}
    with pytest.raises(QuantbenchError, match="needs engine='pt2e'"):
        make_config("dynamic-int8", {"engine": "torch-ao", "float_layers": ["x"]})
