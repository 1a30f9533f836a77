"""intx-weight-only at 8, 4, 3 and 2 bits on the tiny model: what torchao stores, what the size counts (values
packed by qmath), closeness to FP32 per bit width, the simulated-kernel label, and its options."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchao", reason="intx-weight-only needs torchao (a core dependency): pip install quantbench")

from quant_impl.errors import QuantbenchError  # noqa: E402
from quant_impl.methods import get_method, make_config  # noqa: E402
from quant_impl.methods.intx_weight_only import _unpacked_type  # noqa: E402
from quant_impl.qmath import int_range, pack_bits, packed_nbytes, sqnr_db, unpack_bits  # noqa: E402

BY_BITS = {8: "intx-int8-weight-only", 4: "intx-weight-only", 3: "intx-int3-weight-only", 2: "intx-int2-weight-only"}
GOLDEN = Path(__file__).parents[1] / "data" / "benchmarks" / "Linux-CPython-3.11-64bit" / "0001_golden.json"


def _fp32(baseline, ids, mask) -> torch.Tensor:
    with torch.inference_mode():
        return baseline.model(input_ids=ids, attention_mask=mask).logits


def _intx_linears(built) -> list[torch.nn.Linear]:
    return [m for m in built.module.modules() if isinstance(m, torch.nn.Linear) and isinstance(m.weight, _unpacked_type())]


@pytest.mark.parametrize("bits", sorted(BY_BITS))
def test_every_encoder_linear_holds_n_bit_values_that_pack_and_dequantize_back(bits, built_on_cpu,
                                                                               tiny_baseline) -> None:
    built = built_on_cpu(BY_BITS[bits])
    linears = _intx_linears(built)
    all_linears = [m for m in tiny_baseline.model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == len(all_linears) - 1 == built.settings["quantized_linear_count"]
    assert built.settings["fp32_layers"] == ["classifier"]
    qmin, qmax = int_range(bits, signed=True)
    packed_total = 0
    for linear in linears:
        weight = linear.weight
        q = weight.qdata
        assert q.dtype == torch.int8 and int(q.min()) >= qmin and int(q.max()) <= qmax
        packed = pack_bits(q, bits, signed=True)
        assert packed.nbytes == packed_nbytes(q.numel(), bits) == packed.data.numel()
        assert torch.equal(unpack_bits(packed), q)
        packed_total += packed.nbytes
        # (q - zero point) * scale per group of 32 input features is the weight the forward uses
        groups = q.shape[1] // 32
        scale = weight.scale.reshape(q.shape[0], groups, 1).float()
        zero = weight.zero_point.reshape(q.shape[0], groups, 1).float()
        ours = ((q.reshape(q.shape[0], groups, 32).float() - zero) * scale).reshape(q.shape)
        torch.testing.assert_close(ours, weight.dequantize().float(), rtol=1e-5, atol=1e-6)
    assert f"-> {packed_total} packed" in built.settings["size_packing"]


def test_the_size_counts_the_packed_values_not_torchaos_int8_copy(built_on_cpu) -> None:
    fp32 = built_on_cpu("fp32").size_bytes
    sizes = {bits: built_on_cpu(name).size_bytes for bits, name in BY_BITS.items()}
    numel = sum(m.weight.qdata.numel() for m in _intx_linears(built_on_cpu("intx-weight-only")))
    for bits, size in sizes.items():
        # the same model but for the packed values: bits/8 bytes per weight, to the byte
        assert sizes[8] - size == numel - sum(packed_nbytes(m.weight.qdata.numel(), bits)
                                              for m in _intx_linears(built_on_cpu(BY_BITS[bits]))), bits
        # each fp32 weight (4 bytes) becomes bits/8 bytes, plus a 4-byte scale and a 1-byte zero point per 32
        ratio = built_on_cpu(BY_BITS[bits]).settings["linear_weight_ratio"]
        assert ratio == pytest.approx((bits / 8 + 5 / 32) / 4), bits
    # torch.save pickles each torchao tensor's metadata too (under 1.5 kB a Linear): the rest is what int8 saves
    saved = numel * 4 * (1 - (8 / 8 + 5 / 32) / 4)
    assert fp32 - saved < sizes[8] < fp32 - saved + 1500 * len(_intx_linears(built_on_cpu(BY_BITS[8])))
    assert sizes[2] < sizes[3] < sizes[4] < sizes[8] < fp32


def test_logits_stay_within_each_widths_bound_and_lose_more_as_bits_drop(built_on_cpu, tiny_baseline,
                                                                         tiny_batch) -> None:
    reference = _fp32(tiny_baseline, *tiny_batch)
    ids, mask = tiny_batch
    sqnr = {}
    for bits, name in BY_BITS.items():
        built = built_on_cpu(name)
        sqnr[bits] = sqnr_db(reference, built(*tiny_batch))
        assert sqnr[bits] >= get_method(name).min_sqnr_db, (name, sqnr[bits])
        one = built(ids[:1, :5], mask[:1, :5])  # another batch size and length through the same weights
        assert one.shape == (1, 2) and sqnr_db(_fp32(tiny_baseline, ids[:1, :5], mask[:1, :5]), one) >= \
            get_method(name).min_sqnr_db - 3
    assert sqnr[8] > sqnr[4] > sqnr[3] > sqnr[2]


@pytest.mark.parametrize("name", sorted(BY_BITS.values()))
def test_every_width_is_labelled_simulated_on_x86(name, built_on_cpu) -> None:
    spec = get_method(name)
    built = built_on_cpu(name)
    assert spec.kernel.kind == "simulated" and built.settings["kernel"]["kind"] == "simulated"
    assert "dequantize + F.linear" in built.settings["kernel"]["name"]
    assert spec.metadata()["section"] == "4.5w"


def test_bits_is_an_option_and_a_wrong_width_names_the_fix(tiny_baseline) -> None:
    from quant_impl.hardware import get_hardware
    from quant_impl.methods import apply

    assert make_config("intx-weight-only", {"bits": 6}).bits == 6
    with pytest.raises(QuantbenchError, match="bits must be one of"):
        make_config("intx-weight-only", {"bits": 9})
    with pytest.raises(QuantbenchError, match="intx-weight-only.bits=3"):
        make_config("intx-int2-weight-only", {"bits": 3})
    with pytest.raises(QuantbenchError, match="group_size must be a positive integer"):
        make_config("intx-weight-only", {"group_size": 0})
    with pytest.raises(QuantbenchError, match="group_size 48 does not divide the Linear input widths \\[32, 64\\]"):
        apply("intx-weight-only", tiny_baseline, get_hardware("cpu"), make_config("intx-weight-only", {"group_size": 48}))


def test_a_simulated_rows_report_line_says_so(tmp_path: Path) -> None:
    from quant_impl.report import build_report, render

    name = "intx-int2-weight-only"
    meta = get_method(name).metadata()
    doc = json.loads(GOLDEN.read_text())
    extra = [copy.deepcopy(b) for b in doc["benchmarks"] if b["extra_info"]["method"] == "bf16"]
    for bench in extra:
        bench["extra_info"]["method"] = name
        bench["extra_info"]["kernel"] = get_method(name).kernel.as_dict()
        bench["name"] = bench["name"].replace("bf16", name)
    doc["benchmarks"] += extra
    doc.setdefault("quantbench", {})["methods"] = {name: meta}
    path = tmp_path / "0001_intx.json"
    path.write_text(json.dumps(doc))
    md, _ = render(build_report([path]), "en", "md")
    rows = [line for line in md.split("| Method | Speedup")[1].split("\n\n")[0].splitlines() if name in line]
    assert rows and all("(simulated)" in row and "simulated: torchao IntxUnpackedToInt8Tensor" in row for row in rows)
