"""openvino-fp32 and openvino-int8 on the tiny model: dynamic shapes, closeness to FP32, size, precision, threads."""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytest.importorskip("openvino", reason="the OpenVINO methods need the 'peers' extra: pip install 'quantbench[peers]'")

from quant_impl.errors import QuantbenchError  # noqa: E402
from quant_impl.hardware import get_hardware  # noqa: E402
from quant_impl.methods import apply, get_method, make_config  # noqa: E402
from quant_impl.methods.openvino_engine import OpenVinoFp32Config  # noqa: E402
from quant_impl.qmath import sqnr_db  # noqa: E402

METHODS = ("openvino-fp32", "openvino-int8")
# openvino-fp32 with the f32 hint computes what torch computes, up to summation order: measured 137 dB.
FP32_MIN_SQNR_DB = 50.0


def _fp32(baseline, ids, mask) -> torch.Tensor:
    with torch.inference_mode():
        return baseline.model(input_ids=ids, attention_mask=mask).logits


def _built(name, built_on_cpu):
    reason = get_method(name).supports(get_hardware("cpu"))
    if reason:
        pytest.skip(reason)
    return built_on_cpu(name)


@pytest.mark.parametrize("name", METHODS)
def test_batches_of_any_size_and_length_stay_close_to_fp32(name, built_on_cpu, tiny_baseline, tiny_batch) -> None:
    built = _built(name, built_on_cpu)
    bound = FP32_MIN_SQNR_DB if name == "openvino-fp32" else get_method(name).min_sqnr_db
    ids, mask = tiny_batch
    half = ids.shape[1] // 2
    # batch 1, batch 5, and 5 reviews cut to half length: the IR has dynamic batch and sequence axes
    for batch in ((ids[:1], mask[:1]), (ids[:5], mask[:5]), (ids[:5, :half], mask[:5, :half])):
        logits = built(*batch)
        assert logits.shape == (len(batch[0]), 2) and logits.dtype == torch.float32
        assert sqnr_db(_fp32(tiny_baseline, *batch), logits) >= bound, (name, batch[0].shape)
    assert sqnr_db(_fp32(tiny_baseline, ids, mask), built(ids, mask)) >= bound


def test_size_is_the_ir_files_and_int8_is_smaller(built_on_cpu) -> None:
    built = {name: _built(name, built_on_cpu) for name in METHODS}
    for name, model in built.items():
        files = model.predict.files
        assert [f.name for f in files] == ["model.xml", "model.bin"], name
        assert model.size_bytes == sum(f.stat().st_size for f in files), name
        assert "OpenVINO IR" in model.size_note
    assert built["openvino-int8"].size_bytes < built["openvino-fp32"].size_bytes


def test_int8_settings_record_the_quantization(built_on_cpu, tiny_baseline) -> None:
    settings = _built("openvino-int8", built_on_cpu).settings
    assert settings["fake_quantize_ops"] > 0
    assert settings["smooth_quant"] is True and settings["fast_bias_correction"] is True
    config = settings["config"]["_data"]
    split, batches = len(tiny_baseline.data["calibration"]), config["calibration_batches"]
    expected = split if batches is None else min(split, config["calibration_batch_size"] * batches)
    assert settings["calibration_examples"] == expected
    assert settings["engine"].startswith("openvino ") and settings["nncf"]
    assert settings["ir_weights_fp16_compressed"] is False


@pytest.mark.parametrize("precision", ["f32", "bf16", "default"])
def test_the_precision_hint_is_applied_and_recorded(precision, tiny_baseline) -> None:
    import openvino as ov

    config = OpenVinoFp32Config(inference_precision=precision)
    built = apply("openvino-fp32", tiny_baseline, get_hardware("cpu"), config)
    compiled, _request = built.predict.sessions.get()
    reported = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    settings = built.settings
    assert settings["inference_precision_hint"] == precision and settings["inference_precision"] == reported
    assert settings["plugin_default_precision"] in ("f32", "bf16", "f16")
    if precision == "f32":
        assert reported == "f32"
    elif precision == "default":
        assert reported == settings["plugin_default_precision"]
    elif "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert reported == "bf16"


def test_each_thread_count_gets_its_own_compiled_model(built_on_cpu, tiny_batch) -> None:
    built = _built("openvino-int8", built_on_cpu)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        built(*tiny_batch)
        compiled, _request = built.predict.sessions.get()
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
        assert 1 in built.predict.sessions.thread_counts
    finally:
        torch.set_num_threads(threads)


def test_options_are_validated() -> None:
    assert make_config("openvino-int8", {"inference_precision": "bf16"}).inference_precision == "bf16"
    with pytest.raises(QuantbenchError, match=r"inference_precision must be one of \('f32', 'bf16', 'default'\)"):
        make_config("openvino-fp32", {"inference_precision": "fp16"})
    with pytest.raises(QuantbenchError, match="calibration_batches must be >= 1"):
        make_config("openvino-int8", {"calibration_batches": 0})


def test_a_missing_package_names_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "nncf" else real(name, *args))
    reason = get_method("openvino-int8").supports(get_hardware("cpu"))
    assert reason and "nncf" in reason and "peers" in reason and "pip install" in reason
    assert get_method("openvino-fp32").supports(get_hardware("cpu")) is None  # needs openvino only
