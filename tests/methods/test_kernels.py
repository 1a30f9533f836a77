"""Every method says whether its arithmetic ran natively or was simulated, and which kernel ran it: on its
registration, in its build's settings, in every saved cell, in `quantbench methods` and in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quant_impl.cli import main
from quant_impl.hardware import HARDWARE_IDS, get_hardware
from quant_impl.methods import get_method, kernels, method_names
from quant_impl.methods.kernels import Kernel
from quant_impl.schema import KERNEL_KINDS, kernel_fact

CPU = get_hardware("cpu")


def test_every_registration_names_a_kernel_for_every_device_it_runs_on() -> None:
    for name in method_names():
        spec = get_method(name)
        for hw in HARDWARE_IDS:
            hardware = get_hardware(hw)
            if hardware.device not in spec.devices:
                continue
            kernel = spec.kernel_on(hardware)
            assert isinstance(kernel, Kernel) and kernel.kind in KERNEL_KINDS and len(kernel.name) > 10, (name, hw)
        assert kernel_fact(spec.metadata()["kernel"]), name  # saved with every run


def test_a_kernel_of_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of"):
        Kernel("emulated", "x")
    assert kernel_fact({"kind": "native", "name": "n", "extra": 1}) == {"kind": "native", "name": "n"}
    assert kernel_fact("native") is None and kernel_fact({"kind": "fast", "name": "n"}) is None


@pytest.mark.parametrize("flags, fp16, bf16", [
    ({}, "simulated", "simulated"),                                   # AVX2 only
    ({"avx512_bf16": True}, "simulated", "native"),                    # Zen 4 / Cooper Lake
    ({"avx512_fp16": True, "amx_bf16": True}, "native", "native"),     # Sapphire Rapids
])
def test_half_precision_is_native_only_with_its_arithmetic(monkeypatch, flags, fp16, bf16) -> None:
    monkeypatch.setattr(kernels, "_isa", lambda: flags)
    assert kernels.half("fp16")(CPU).kind == fp16
    assert kernels.half("bf16")(CPU).kind == bf16
    assert get_method("fp16").kernel_on(CPU).kind == fp16
    mixed = get_method("mixed-int8-bf16").kernel_on(CPU)
    assert mixed.kind == bf16 and "fbgemm" in mixed.name
    if fp16 == "simulated":
        assert "converted to fp32" in kernels.half("fp16")(CPU).name


def test_a_build_records_the_kernel_its_options_chose(tiny_baseline) -> None:
    from quant_impl.methods import apply, make_config

    reference = apply("int4-weight-only", tiny_baseline, CPU, make_config("int4-weight-only", {"kernel": "reference"}))
    assert reference.settings["kernel"]["kind"] == "simulated" and "dequantized" in reference.settings["kernel"]["name"]
    eager = apply("dynamic-int8", tiny_baseline, CPU, make_config("dynamic-int8", {"engine": "torch-ao"}))
    assert eager.settings["kernel"] == {"kind": "native", "name": eager.settings["kernel"]["name"]}
    assert "fbgemm" in eager.settings["kernel"]["name"]
    plain = apply("fp32", tiny_baseline, CPU)
    assert plain.settings["kernel"] == get_method("fp32").kernel_on(CPU).as_dict()


def test_quantbench_methods_lists_every_kernel(capsys) -> None:
    assert main(["methods", "--json"]) == 0
    table = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(table) == set(method_names())
    for name, row in table.items():
        assert kernel_fact(row["kernel"]) and row["threshold"] == get_method(name).threshold, name
    assert main(["methods"]) == 0
    assert "native: oneDNN qlinear u8 x s8" in capsys.readouterr().out


def test_the_report_never_shows_a_simulated_speedup_without_saying_so(tmp_path: Path) -> None:
    from quant_impl.report import build_report, render

    full = Path(__file__).parents[1] / "data" / "benchmarks" / "quick-full" / "0001_quick.json"
    doc = json.loads(full.read_text())
    for bench in doc["benchmarks"]:
        method = bench["extra_info"]["method"]
        kind = "simulated" if method in ("fp16", "dynamic-int8") else "native"
        bench["extra_info"]["kernel"] = {"kind": kind, "name": f"kernel of {method}"}
        if method == "dynamic-int8":  # make it the fastest, so the headline's speed pick is a simulated method
            bench["extra_info"]["speedup_vs_fp32"] = 99.0
    path = tmp_path / "0001_k.json"
    path.write_text(json.dumps(doc))
    text, _ = render(build_report([path]), "en", "md")
    headline = text.split("| Method | Speedup")[1].split("\n\n")[0]
    rows = {line.split(" | ")[0].strip("| ").split("]")[0].lstrip("["): line for line in headline.splitlines()[2:]}
    assert "(simulated)" in rows["fp16"] and "simulated: kernel of fp16" in rows["fp16"]
    assert "(simulated)" not in rows["static-int8"] and "native: kernel of static-int8" in rows["static-int8"]
    assert "dynamic-int8 (simulated: its speed measures the simulation" in text.split("What to ship")[1].split("\n")[0]
