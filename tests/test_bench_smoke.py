"""A real (smoke-sized) `pytest bench --benchmark-save` run: tiny model, one shape, a few methods.

It runs the benchmarks in a child pytest, as a user would, saves into a temporary storage, and checks the
saved JSON holds every extra_info field of the schema for every benchmark, with the derived speedups.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quant_impl.history import main_compare
from quant_impl.methods import get_method
from quant_impl.schema import FIELD_NAMES

ROOT = Path(__file__).resolve().parents[1]
METHODS = "fp32,fp32-compiled,bf16,dynamic-int8,static-int8,ort-int8-dynamic,openvino-int8"
# The runs that check how cells are keyed per profile and per task need an int8 method, not a compiled one: torchao's
# eager int8 weights build in a second, where dynamic-int8's PT2E + Inductor compile (again in the memory child,
# again per shape) cost each of those runs about two minutes. The first run above covers the compiled methods.
CHEAP_INT8 = "intx-int8-weight-only"


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bench")
    storage = tmp / "storage"
    env = {**os.environ, "QUANTBENCH_CACHE": str(tmp / "cache")}
    command = [
        sys.executable, "-m", "pytest", "bench", "-q", "-p", "no:cacheprovider",
        "--quant-profile", "smoke", "--quant-methods", METHODS, "--quant-hardware", "cpu,cpu-1t,cuda",
        "--quant-batch-sizes", "2", "--quant-seq-lens", "16",
        f"--benchmark-storage=file://{storage}", "--benchmark-save=smoke",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = list(storage.glob("*/0001_smoke.json"))
    assert len(runs) == 1, list(storage.rglob("*"))
    return runs[0]


def test_every_benchmark_has_every_field(saved_run: Path) -> None:
    data = json.loads(saved_run.read_text())
    benches = data["benchmarks"]
    cells = {(b["extra_info"]["method"], b["extra_info"]["hardware"]) for b in benches}
    # cuda is skipped without a GPU; every CPU cell ran
    assert {(m, hw) for m in METHODS.split(",") for hw in ("cpu", "cpu-1t")} <= cells
    for bench in benches:
        info = bench["extra_info"]
        missing = [name for name in FIELD_NAMES if name not in info]
        assert not missing, (bench["name"], missing)
        assert info["eval_examples"] == 32 and 0.0 <= info["accuracy"] <= 1.0
        lo, hi = info["accuracy_ci95"]
        assert lo <= info["accuracy"] <= hi
        assert info["size_bytes"] > 0 and info["peak_rss_mb"] > 100  # a fresh process with torch loaded
        assert info["throughput_samples_per_s"] == pytest.approx(2 / bench["stats"]["median"])
        assert info["speedup_vs_fp32"] > 0 and info["speedup_vs_fp32_compiled"] > 0
        assert info["method_settings"]["config"]["_type"]
    # what ran, named by each engine: oneDNN's implementations under the torch int8 Linears, OpenVINO's execution
    # types, ONNX Runtime's op types (the same for cpu and cpu-1t: one record per method and device)
    kernels = {info["method"]: info["kernels_run"] for info in (b["extra_info"] for b in benches)}
    assert any(name.startswith(("matmul: ", "inner_product: ")) for name in kernels["static-int8"]), kernels
    assert any(name.startswith("FullyConnected: ") for name in kernels["openvino-int8"]), kernels
    assert any("MatMul" in name and "(CPU)" in name for name in kernels["ort-int8-dynamic"]), kernels
    fp32 = [b for b in benches if b["extra_info"]["method"] == "fp32"]
    assert all(b["extra_info"]["speedup_vs_fp32"] == pytest.approx(1.0) for b in fp32)
    assert all(b["extra_info"]["accuracy_drop_pts"] == 0.0 for b in fp32)
    assert all(b["extra_info"]["mcnemar_p"] == 1.0 for b in fp32)


def test_run_records_machine_and_config(saved_run: Path) -> None:
    data = json.loads(saved_run.read_text())
    extra = data["machine_info"]["quantbench"]
    assert {"cpu_model", "isa", "versions", "threads"} <= set(extra)
    assert {"avx512_vnni", "avx512_bf16", "amx_int8"} <= set(extra["isa"])
    assert data["quantbench"]["run_config"]["profile"] == "smoke"
    # Each method's rules are saved with the run, so the report judges it by them (not by later code).
    methods = data["quantbench"]["methods"]
    assert set(methods) == set(METHODS.split(","))
    assert methods["static-int8"] == json.loads(json.dumps(get_method("static-int8").metadata()))
    assert methods["fp32"]["threshold"] is None and methods["bf16"]["threshold"] > 0
    assert {"onnxruntime", "openvino", "nncf", "torch"} <= set(extra["versions"])
    baseline = data["quantbench"]["baseline"]
    assert baseline["split_sizes"] == {"train": 64, "calibration": 16, "test": 32}
    assert baseline["eval_examples"] == 32
    # The cache was empty, so the child fine-tuned: the figure is that fine-tune's wall clock as recorded with the
    # checkpoint (4 steps: 64 reviews in batches of 16, one epoch), and part of what getting the baseline took.
    from quant_impl.cache import BASELINE_RECORD

    record = json.loads((Path(baseline["checkpoint"]) / BASELINE_RECORD).read_text())["train"]
    assert baseline["cached"] is False and record["steps"] == 4 and record["seconds"] > 0
    assert baseline["train_seconds"] == round(record["seconds"], 1)
    assert baseline["train_seconds"] <= baseline["load_seconds"] + 0.05  # + rounding to 0.1 s
    skipped = {(s["method"], s["hardware"]): s["reason"] for s in data["quantbench"]["skipped"]}
    if not extra["gpu"]:
        assert {(m, "cuda") for m in METHODS.split(",")} == set(skipped)
        assert all("cuda" in reason.lower() for reason in skipped.values())


def test_compare_gates_a_changed_copy_of_the_run(saved_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The saved run against copies of itself: unchanged or within the rules passes; one cell's accuracy 1 point
    lower, or its median 20 % higher, fails that rule in that cell only."""
    rules = ["--fail-on", "accuracy_drop:0.5", "--fail-on", "median:10%", "--format", "json"]
    data = json.loads(saved_run.read_text())
    target = next(i for i, b in enumerate(data["benchmarks"])
                  if (b["extra_info"]["method"], b["extra_info"]["hardware"]) == ("static-int8", "cpu"))

    def compare_with(name: str, accuracy_change: float = 0.0, median_factor: float = 1.0) -> dict:
        doc = json.loads(json.dumps(data))
        doc["benchmarks"][target]["extra_info"]["accuracy"] += accuracy_change
        doc["benchmarks"][target]["stats"]["median"] *= median_factor
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        code = main_compare([str(saved_run), str(path), *rules])
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["same_machine"] and code == (0 if result["ok"] else 1)
        return result

    assert compare_with("unchanged")["ok"]
    assert compare_with("within", accuracy_change=-0.004, median_factor=1.05)["ok"]
    for name, change, rule in (("accuracy", {"accuracy_change": -0.01}, "accuracy_drop:0.5"),
                               ("median", {"median_factor": 1.2}, "median:10%")):
        result = compare_with(name, **change)
        assert [(f["rule"], f["cell"]["method"], f["cell"]["hardware"]) for f in result["failures"]] == [
            (rule, "static-int8", "cpu")], name


def test_two_profiles_in_one_run_each_against_its_own_fp32(tmp_path: Path) -> None:
    """``[tool.quantbench] bench_profiles``: two models in one saved run, cells keyed and compared per profile,
    each with its own baseline in the saved JSON and one report holding both."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.quantbench]\nbench_profiles = ["smoke", "smoke-b"]\n'
        '[tool.quantbench.profiles.smoke-b]\nextends = "smoke"\nseed = 1\nhead_tokens = 4\n', encoding="utf-8")
    storage = tmp_path / "storage"
    env = {**os.environ, "QUANTBENCH_CACHE": str(tmp_path / "cache")}
    command = [
        sys.executable, "-m", "pytest", str(ROOT / "bench"), "-q", "-p", "no:cacheprovider",
        "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
        "--quant-methods", f"fp32,{CHEAP_INT8}", "--quant-hardware", "cpu",
        "--quant-batch-sizes", "2", "--quant-seq-lens", "16",
        f"--benchmark-storage=file://{storage}", "--benchmark-save=models",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    saved = next(storage.glob("*/0001_models.json"))
    data = json.loads(saved.read_text())
    assert sorted(b["param"] for b in data["benchmarks"]) == sorted(
        f"{p}-{m}-cpu-b2-s16" for p in ("smoke", "smoke-b") for m in ("fp32", CHEAP_INT8))
    by_profile: dict[str, dict[str, dict]] = {}
    for bench in data["benchmarks"]:
        by_profile.setdefault(bench["extra_info"]["profile"], {})[bench["extra_info"]["method"]] = bench
    assert set(by_profile) == {"smoke", "smoke-b"}
    for profile, benches in by_profile.items():
        own_fp32 = benches["fp32"]["stats"]["median"]
        int8 = benches[CHEAP_INT8]
        assert int8["extra_info"]["speedup_vs_fp32"] == pytest.approx(own_fp32 / int8["stats"]["median"])
        assert int8["group"].startswith(f"{profile}: cpu batch 2")
    profiles = data["quantbench"]["profiles"]
    assert [profiles[p]["run_config"]["seed"] for p in ("smoke", "smoke-b")] == [0, 1]
    assert profiles["smoke"]["baseline"]["checkpoint"] != profiles["smoke-b"]["baseline"]["checkpoint"]
    # The report holds both models, each from its own baseline.
    from quant_impl.report import build_report

    report = build_report([saved])
    assert [m.profile for m in report.models] == ["smoke", "smoke-b"]
    accuracies = [m.run.reference.accuracy for m in report.models]
    assert accuracies == [profiles[p]["baseline"]["accuracy"] for p in ("smoke", "smoke-b")]


def test_tasks_in_one_run_each_against_its_own_fp32(tmp_path: Path) -> None:
    """``--quant-tasks``: a binary and a 6-class task in one saved run, cells keyed, sped up and reported per task
    (the report's "Tasks side by side" table), each task's registration and metric saved with it."""
    storage = tmp_path / "storage"
    env = {**os.environ, "QUANTBENCH_CACHE": str(tmp_path / "cache")}
    command = [
        sys.executable, "-m", "pytest", str(ROOT / "bench"), "-q", "-p", "no:cacheprovider",
        "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), "--quant-profile", "smoke",
        "--quant-tasks", "imdb,trec-6", "--quant-methods", f"fp32,{CHEAP_INT8}", "--quant-hardware", "cpu",
        "--quant-batch-sizes", "2", "--quant-seq-lens", "16",
        f"--benchmark-storage=file://{storage}", "--benchmark-save=tasks",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(next(storage.glob("*/0001_tasks.json")).read_text())
    assert sorted(b["param"] for b in data["benchmarks"]) == sorted(
        f"{s}-{m}-cpu-b2-s16" for s in ("smoke", "smoke/trec-6") for m in ("fp32", CHEAP_INT8))
    by_task = {(b["extra_info"]["task"], b["extra_info"]["method"]): b for b in data["benchmarks"]}
    for task in ("imdb", "trec-6"):
        fp32, int8 = by_task[(task, "fp32")], by_task[(task, CHEAP_INT8)]
        assert int8["extra_info"]["speedup_vs_fp32"] == pytest.approx(fp32["stats"]["median"] / int8["stats"]["median"])
        assert len(int8["extra_info"]["per_class_f1"]) == (2 if task == "imdb" else 6)
    assert by_task[("trec-6", "fp32")]["group"].startswith("smoke/trec-6: cpu batch 2")
    setups = data["quantbench"]["profiles"]
    assert setups["smoke/trec-6"]["task"]["labels"] == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert setups["smoke"]["task"]["name"] == "imdb"
    from quant_impl.report import build_report
    from quant_impl.report.render import render

    report = build_report([next(storage.glob("*/0001_tasks.json"))])
    assert report.cross_model["kind"] == "task" and [c["name"] for c in report.cross_model["columns"]] == ["imdb", "trec-6"]
    md, _ = render(report, "en", "md")
    assert "## Tasks side by side" in md and "Task trec-6 (ABBR, DESC, ENTY, HUM, LOC, NUM)" in md
    assert "Which class pays" in md  # the 6-class task's per-class table of the int8 method
