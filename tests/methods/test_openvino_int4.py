"""openvino-int4-weight on the tiny model: 4-bit weights in the IR, closeness to FP32, size, options, and a report
section of its own that needs no template words (its registration carries its headings)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("nncf", reason="openvino-int4-weight needs the 'peers' extra: pip install 'quantbench[peers]'")

from quant_impl.errors import QuantbenchError  # noqa: E402
from quant_impl.hardware import get_hardware  # noqa: E402
from quant_impl.methods import get_method, make_config  # noqa: E402
from quant_impl.methods.openvino_int4 import default_group  # noqa: E402
from quant_impl.qmath import sqnr_db  # noqa: E402

NAME = "openvino-int4-weight"
GOLDEN = Path(__file__).parents[1] / "data" / "benchmarks" / "Linux-CPython-3.11-64bit" / "0001_golden.json"


@pytest.fixture(scope="module")
def built(built_on_cpu):
    reason = get_method(NAME).supports(get_hardware("cpu"))
    if reason:
        pytest.skip(reason)
    return built_on_cpu(NAME)


def _fp32(baseline, ids, mask) -> torch.Tensor:
    with torch.inference_mode():
        return baseline.model(input_ids=ids, attention_mask=mask).logits


def test_every_encoder_matmul_holds_4_bit_weights(built, tiny_baseline) -> None:
    linears = [m for m in tiny_baseline.model.modules() if isinstance(m, torch.nn.Linear)]
    # NNCF keeps the last MatMul (the classifier) and the embeddings at the backup precision, int8.
    assert built.settings["weight_constants"]["i4"] == len(linears) - 1
    assert built.settings["weight_constants"]["u8"] >= 1
    assert "group 32" in built.settings["compression"]  # the tiny model's widths are 32 and 64


def test_batches_of_any_size_and_length_stay_close_to_fp32(built, tiny_baseline, tiny_batch) -> None:
    ids, mask = tiny_batch
    half = ids.shape[1] // 2
    bound = get_method(NAME).min_sqnr_db
    for batch in ((ids[:1], mask[:1]), (ids, mask), (ids[:5, :half], mask[:5, :half])):
        logits = built(*batch)
        assert logits.shape == (len(batch[0]), 2) and logits.dtype == torch.float32
        assert sqnr_db(_fp32(tiny_baseline, *batch), logits) >= bound, batch[0].shape


def test_the_ir_is_smaller_than_the_fp32_and_int8_irs(built, built_on_cpu) -> None:
    fp32 = built_on_cpu("openvino-fp32")
    int8 = built_on_cpu("openvino-int8")
    # Linear weights go from 4 bytes to half a byte (+ a 2-byte scale per 32 weights); embeddings to 1 byte.
    assert built.size_bytes < 0.35 * fp32.size_bytes
    assert built.size_bytes < int8.size_bytes
    assert "model.bin" in built.size_note


def test_default_group_divides_every_width() -> None:
    def model(*widths: int) -> torch.nn.Module:
        return torch.nn.Sequential(*[torch.nn.Linear(w, 8) for w in widths])

    assert default_group(model(384, 1536)) == 128
    assert default_group(model(384, 96)) == 32
    assert default_group(model(32, 64)) == 32


@pytest.mark.parametrize("options, match", [
    ({"ratio": 0}, "ratio must be a number in \\(0, 1\\]"),
    ({"ratio": "all"}, "ratio must be a number"),
    ({"backup_mode": "int4"}, "backup_mode must be one of"),
    ({"group_size": 0}, "group_size must be"),
    ({"bits": 2}, "unknown key"),
])
def test_bad_options_are_refused_when_the_config_is_made(options, match) -> None:
    with pytest.raises(QuantbenchError, match=match):
        make_config(NAME, options)


def test_its_section_and_heading_come_from_the_registration_in_each_language(tmp_path: Path) -> None:
    """A method with a section of its own renders it in both languages with no entry in lang/*.toml."""
    from quant_impl.formatting import escape_markdown
    from quant_impl.report import build_report, render

    meta = get_method(NAME).metadata()
    assert meta["section"] == "4.5w" and set(meta["section_title"]) == {"en", "zh"}
    doc = json.loads(GOLDEN.read_text())
    extra = [copy.deepcopy(b) for b in doc["benchmarks"] if b["extra_info"]["method"] == "bf16"]
    for bench in extra:
        bench["extra_info"]["method"] = NAME
        bench["name"] = bench["name"].replace("bf16", NAME)
    doc["benchmarks"] += extra
    doc.setdefault("quantbench", {})["methods"] = {NAME: meta}
    path = tmp_path / "0001_int4.json"
    path.write_text(json.dumps(doc))
    report = build_report([path])
    for lang in ("en", "zh"):
        md, _ = render(report, lang, "md")
        assert f"## {escape_markdown(meta['section_title'][lang])}" in md
        assert f"### {escape_markdown(meta['heading'][lang])}" in md  # read from the run: escaped like any value
        html, _ = render(report, lang, "html")
        assert f"<h2>{meta['section_title'][lang]}</h2>" in html


@pytest.mark.parametrize("name, element", [("openvino-int3-weight", "u3"), ("openvino-int2-weight", "u2")])
def test_below_4_bits_every_encoder_matmul_holds_3_or_2_bit_weights(name, element, built_on_cpu, tiny_baseline,
                                                                   tiny_batch) -> None:
    spec = get_method(name)
    reason = spec.supports(get_hardware("cpu"))
    if reason:
        pytest.skip(reason)
    low = built_on_cpu(name)
    linears = [m for m in tiny_baseline.model.modules() if isinstance(m, torch.nn.Linear)]
    assert low.settings["weight_constants"][element] == len(linears) - 1  # the classifier stays at the backup
    assert "i4" not in low.settings["weight_constants"]
    assert low.settings["compression"].startswith(f"nncf.compress_weights INT{element[1]}_SYM")
    assert spec.precision == f"int{element[1]}" and spec.metadata()["section"] == "4.5w"
    assert low.settings["kernel"]["kind"] == "native" and element in low.settings["kernel"]["name"]
    logits = low(*tiny_batch)
    assert sqnr_db(_fp32(tiny_baseline, *tiny_batch), logits) >= spec.min_sqnr_db
    assert low.size_bytes < 0.4 * built_on_cpu("openvino-fp32").size_bytes


@pytest.mark.parametrize("options, algorithms", [({"gptq": True}, "gptq"),
                                                 ({"awq": True, "scale_estimation": True}, "awq, scale_estimation")])
def test_data_aware_compression_calibrates_on_the_calibration_split(options, algorithms, tiny_baseline,
                                                                    tiny_batch) -> None:
    from quant_impl.methods import apply

    hardware = get_hardware("cpu")
    if get_method(NAME).supports(hardware):
        pytest.skip(get_method(NAME).supports(hardware))
    built = apply(NAME, tiny_baseline, hardware, make_config(NAME, options))
    texts = len(tiny_baseline.data["calibration"])
    assert built.settings["data_aware"] == f"{algorithms}, calibrated on {min(texts, 4 * 16)} calibration-split texts"
    linears = [m for m in tiny_baseline.model.modules() if isinstance(m, torch.nn.Linear)]
    assert built.settings["weight_constants"]["i4"] == len(linears) - 1
    assert sqnr_db(_fp32(tiny_baseline, *tiny_batch), built(*tiny_batch)) >= get_method(NAME).min_sqnr_db


def test_all_layers_compresses_the_embeddings_and_the_classifier_too(built, tiny_baseline) -> None:
    from quant_impl.methods import apply

    every = apply(NAME, tiny_baseline, get_hardware("cpu"), make_config(NAME, {"all_layers": True}))
    assert "u8" not in every.settings["weight_constants"] and "u8" in built.settings["weight_constants"]
    assert every.settings["weight_constants"]["i4"] > built.settings["weight_constants"]["i4"]
    assert every.settings["embeddings"] == "at the primary mode (all_layers)"
    assert every.size_bytes < built.size_bytes


@pytest.mark.parametrize("options, match", [
    ({"awq": "yes"}, "awq must be"),
    ({"sensitivity_metric": "loss"}, "sensitivity_metric must be one of"),
    ({"calibration_batches": 0}, "calibration_batches must be"),
])
def test_bad_data_aware_options_are_refused(options, match) -> None:
    with pytest.raises(QuantbenchError, match=match):
        make_config(NAME, options)
