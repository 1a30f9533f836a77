"""ort-int8/int4/int2-weight on the tiny model: the graph holds the MatMulNBits nodes it claims at their bit width,
logits stay within each width's bound, the native/simulated label follows MLAS's kernels, and bad options say
how to fix them."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnx_ir", reason="the ort-int*-weight methods need the 'peers' extra (onnx-ir): "
                                      "pip install 'quantbench[peers]'")
pytest.importorskip("onnxruntime", reason="the ort-int*-weight methods need the 'peers' extra: "
                                          "pip install 'quantbench[peers]'")

from quant_impl.errors import QuantbenchError  # noqa: E402
from quant_impl.methods import get_method, make_config  # noqa: E402
from quant_impl.methods.ort_weight_only import mlas_kernel  # noqa: E402
from quant_impl.qmath import sqnr_db  # noqa: E402

BY_BITS = {8: "ort-int8-weight", 4: "ort-int4-weight", 2: "ort-int2-weight"}


def _fp32(baseline, ids, mask) -> torch.Tensor:
    with torch.inference_mode():
        return baseline.model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("bits", sorted(BY_BITS))
def test_every_encoder_matmul_is_a_matmul_nbits_node_of_its_width(bits, built_on_cpu, tiny_baseline) -> None:
    import onnx
    from onnx import numpy_helper

    built = built_on_cpu(BY_BITS[bits])
    model = onnx.load(str(built.predict.model_path))
    nodes = [node for node in model.graph.node if node.op_type == "MatMulNBits"]
    layers = tiny_baseline.model.config.num_hidden_layers
    assert len(nodes) == 6 * layers  # Q, K, V, attention output, intermediate, output per layer
    initializers = {t.name: t for t in model.graph.initializer}
    for node in nodes:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes["bits"] == bits and attributes["block_size"] == 32 and attributes["accuracy_level"] == 4
        weight = initializers[node.input[1]]
        assert weight.data_type == onnx.TensorProto.UINT8
        # [N, blocks, block bytes]: 32 values of `bits` bits in 4 * bits bytes
        assert numpy_helper.to_array(weight).shape == (attributes["N"], attributes["K"] // 32, 4 * bits)
    assert built.settings["quantized"] == {"matmul_nbits_by_bits": {bits: 6 * layers},
                                           "matmul_left": 2 * layers,  # QK^T and AV: no constant weight
                                           "gemm_left": 2}  # pooler and classifier stay fp32


def test_logits_stay_within_each_widths_bound_and_the_graph_shrinks_with_the_bits(built_on_cpu, tiny_baseline,
                                                                                  tiny_batch) -> None:
    reference = _fp32(tiny_baseline, *tiny_batch)
    ids, mask = tiny_batch
    sqnr, sizes = {}, {}
    for bits, name in BY_BITS.items():
        built = built_on_cpu(name)
        sqnr[bits] = sqnr_db(reference, built(*tiny_batch))
        sizes[bits] = built.size_bytes
        assert sqnr[bits] >= get_method(name).min_sqnr_db, (name, sqnr[bits])
        short = built(ids[:3, :6], mask[:3, :6])
        assert short.shape == (3, 2) and sqnr_db(_fp32(tiny_baseline, ids[:3, :6], mask[:3, :6]), short) >= \
            get_method(name).min_sqnr_db - 6
    assert sqnr[8] > sqnr[4] > sqnr[2]
    fp32 = built_on_cpu("ort-fp32").size_bytes
    weights = sum(m.weight.numel() for n, m in tiny_baseline.model.named_modules()
                  if isinstance(m, torch.nn.Linear) and "encoder" in n)
    # between two widths only the packed weights differ: (b1 - b2) / 8 bytes per weight
    assert sizes[8] - sizes[4] == weights // 2 and sizes[4] - sizes[2] == weights // 4
    # fp32 -> 1 byte + a 4-byte scale per 32 weights at 8 bits, in the graph's tensors (the unfused attention
    # adds nodes to the file, so its bytes are compared with ort-fp32's tensors, not its file)
    assert _tensor_bytes(built_on_cpu("ort-int8-weight")) == pytest.approx(
        _tensor_bytes(built_on_cpu("ort-fp32")) - weights * (4 - 1 - 4 / 32), abs=1024)
    assert sizes[2] < sizes[4] < sizes[8] < fp32


def _tensor_bytes(built) -> int:
    import onnx
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(built.predict.model_path)).graph.initializer)


@pytest.mark.parametrize("bits, level, isa, kind", [
    (4, 4, {}, "native"), (4, 0, {}, "native"),
    (8, 4, {}, "native"), (8, 0, {"avx512_vnni": True}, "simulated"),
    (2, 4, {"avx512_vnni": True}, "native"), (2, 4, {"amx_int8": True}, "native"),
    (2, 4, {"avx2": True}, "simulated"),  # the AVX2 build's 2-bit entries are stubs
    (2, 0, {"avx512_vnni": True}, "simulated"),
])
def test_the_kernel_label_follows_mlas_dispatch(bits, level, isa, kind) -> None:
    kernel = mlas_kernel(bits, level, isa)
    assert kernel.kind == kind and f"{bits}-bit" in kernel.name
    if kind == "simulated":
        assert "unpacked to fp32" in kernel.name


@pytest.mark.parametrize("name", sorted(BY_BITS.values()))
def test_each_build_records_the_kernel_this_cpu_runs(name, built_on_cpu) -> None:
    from quant_impl.measure.machine import machine_info

    built = built_on_cpu(name)
    spec = get_method(name)
    bits = int(name.split("-")[1][3:])
    assert built.settings["kernel"] == mlas_kernel(bits, 4, machine_info()["isa"]).as_dict()
    assert spec.metadata()["section"] == "4.5w" and spec.engine == "onnxruntime"


@pytest.mark.parametrize("name, options, match", [
    ("ort-int4-weight", {"bits": 3}, "bits must be one of"),
    ("ort-int4-weight", {"bits": 2}, "--methods ort-int2-weight"),
    ("ort-int4-weight", {"block_size": 48}, "block_size must be a power of two"),
    ("ort-int4-weight", {"block_size": 8}, "block_size"),
    ("ort-int2-weight", {"accuracy_level": 5}, "accuracy_level must be one of"),
    ("ort-int8-weight", {"symmetric": "yes"}, "symmetric"),
])
def test_bad_options_are_refused_when_the_config_is_made(name, options, match) -> None:
    with pytest.raises(QuantbenchError, match=match):
        make_config(name, options)
