"""The report's bits curve: weight-only methods by engine and width, their speed vs FP32 and vs the fastest int8
method of the run, the native/simulated label on every row, and the one-sentence answer, in both languages."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from quant_impl.methods import get_method
from quant_impl.report import build_report, render

GOLDEN = Path(__file__).parent / "data" / "benchmarks" / "Linux-CPython-3.11-64bit" / "0001_golden.json"
# name: (drop in points, speedup at batch 1, speedup at batch 32, kernel kind)
FAKE = {
    "intx-weight-only": (0.40, 0.50, 0.60, "simulated"),
    "ort-int4-weight": (0.30, 3.00, 0.90, "native"),
    "ort-int2-weight": (9.00, 2.50, 0.80, "native"),  # within int2's 12-point threshold
    "intx-int3-weight-only": (2.50, 0.55, 0.65, "simulated"),  # over its 2-point threshold
}


def _run(tmp_path: Path, fake: dict = FAKE) -> Path:
    doc = json.loads(GOLDEN.read_text())
    template = {b["extra_info"]["batch_size"]: b for b in doc["benchmarks"] if b["extra_info"]["method"] == "bf16"}
    fp32_accuracy = next(b["extra_info"]["accuracy"] for b in doc["benchmarks"] if b["extra_info"]["method"] == "fp32")
    methods = {}
    for name, (drop, b1, b32, kind) in fake.items():
        for batch, speedup in ((1, b1), (32, b32)):
            bench = copy.deepcopy(template[batch])
            info = bench["extra_info"]
            info.update(method=name, speedup_vs_fp32=speedup, accuracy_drop_pts=drop, agreement_with_fp32=0.99,
                        accuracy=fp32_accuracy - drop / 100, kernel={"kind": kind, "name": f"kernel of {name}"})
            bench["name"] = bench["name"].replace("bf16", name)
            doc["benchmarks"].append(bench)
        methods[name] = get_method(name).metadata()
    doc.setdefault("quantbench", {})["methods"] = methods
    path = tmp_path / "0001_bits.json"
    path.write_text(json.dumps(doc))
    return path


def _speedups(doc_path: Path, method: str) -> dict[int, float]:
    doc = json.loads(doc_path.read_text())
    return {b["extra_info"]["batch_size"]: b["extra_info"]["speedup_vs_fp32"] for b in doc["benchmarks"]
            if b["extra_info"]["method"] == method}


def test_each_row_is_measured_against_the_fastest_int8_of_the_run(tmp_path: Path) -> None:
    path = _run(tmp_path)
    bits = build_report([path]).bits
    assert [(r["method"], r["bits"]) for r in bits["rows"]] == [
        ("ort-int4-weight", 4), ("ort-int2-weight", 2),  # engine by engine, widest first
        ("intx-weight-only", 4), ("intx-int3-weight-only", 3)]
    int8 = {name: _speedups(path, name) for name in ("static-int8", "dynamic-int8")}
    for (name, speedup), cell in zip(bits["fastest_int8"], bits["cells"]):
        batch = cell[1]
        assert speedup == max(s[batch] for s in int8.values()) and int8[name][batch] == speedup
    ort4 = next(r for r in bits["rows"] if r["method"] == "ort-int4-weight")
    for s, (name, speedup) in zip(ort4["speeds"], bits["fastest_int8"]):
        assert s["vs_fp32"] == FAKE["ort-int4-weight"][1 if s["cell"][1] == 1 else 2]
        assert s["vs_int8"] == pytest.approx(s["vs_fp32"] / speedup)
    assert bits["best_4"]["method"] == "ort-int4-weight" and bits["best_4"]["drop"] == pytest.approx(0.30)
    # the smallest drop below 4 bits, even over its threshold (the answer says what 3 and 2 bits cost)
    assert bits["best_low"]["method"] == "intx-int3-weight-only" and bits["best_low"]["bits"] == 3
    intx3 = next(r for r in bits["rows"] if r["method"] == "intx-int3-weight-only")
    assert intx3["passed"] is False and intx3["simulated"]
    faster = {(x["method"], x["cell"][1]) for x in bits["faster_than_int8"]}
    expected = {(r["method"], s["cell"][1]) for r in bits["rows"] for s in r["speeds"]
                if r["bits"] < 8 and r["passed"] is not False and s["vs_int8"] and s["vs_int8"] > 1}
    assert faster == expected and ("ort-int4-weight", 1) in faster


def test_weight_only_int8_is_not_an_int8_method_of_the_engine_comparison(tmp_path: Path) -> None:
    fake = {"ort-int8-weight": (0.1, 9.0, 9.0, "native"), "intx-int8-weight-only": (0.1, 9.0, 9.0, "simulated")}
    report = build_report([_run(tmp_path, fake)])
    assert not {"ort-int8-weight", "intx-int8-weight-only"} & set(report.engines["torch_methods"] if report.engines
                                                                  else [])
    assert all(name not in ("ort-int8-weight", "intx-int8-weight-only") for name, _ in report.bits["fastest_int8"])
    assert report.bits["faster_than_int8"] == []  # 8-bit weights are on the curve but never "below 8 bits"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_section_shows_every_row_its_kernel_and_the_answer(tmp_path: Path, lang: str) -> None:
    from quant_impl.report.render import words

    t = words(lang)
    report = build_report([_run(tmp_path)])
    md, _ = render(report, lang, "md")
    section = md.split(f"### {t['headings']['bits_curve']}")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines() if line.startswith("| ")}
    for name, (_drop, b1, _b32, kind) in FAKE.items():
        row = rows[name.replace("-", "\\-") if name.replace("-", "\\-") in rows else name]
        assert f"| {t['text']['kernel_' + kind]} |" in row and f"{b1:.2f}x" in row
        assert (t["text"]["simulated_mark"] in row) == (kind == "simulated")
    answer = t["text"]["bits_lead"].split("{")[0]
    assert answer in section and "ort" in section.split(answer)[1]
    html, _ = render(report, lang, "html")
    assert t["headings"]["bits_curve"] in html and 'id="bits-curve-table"' in html


def test_a_run_without_weight_only_methods_has_no_curve() -> None:
    report = build_report([GOLDEN])
    assert report.bits is None
    md, _ = render(report, "en", "md")
    assert "bits curve" not in md.lower()
