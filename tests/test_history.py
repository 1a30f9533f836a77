"""``quantbench compare``: loading saved runs, selecting them, comparing cells and gating on rules.

The golden run (tests/data/benchmarks/.../0001_golden.json) is a hand-made pytest-benchmark file with four
methods x two cells; tests copy it into a private storage folder under this interpreter's machine id and
edit the copy, so nothing depends on the Python version the suite runs on.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from quant_impl.history import (
    METRICS,
    DifferenceCheck,
    PercentageCheck,
    add_compare_parser,
    compare_runs,
    default_rules,
    load_run,
    machine_differences,
    machine_id,
    main_compare,
    parse_rule,
    select_runs,
)
from quant_impl.cells import Cell
from quant_impl.errors import QuantbenchError

DATA = Path(__file__).parent / "data" / "benchmarks"
GOLDEN = DATA / "Linux-CPython-3.11-64bit" / "0001_golden.json"
PLAIN = DATA / "plain-pytest-benchmark.json"


def _golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def _edit(doc: dict[str, Any], method: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A copy of ``doc`` where ``change`` was applied to every benchmark of ``method``."""
    doc = copy.deepcopy(doc)
    for bench in doc["benchmarks"]:
        if bench["extra_info"].get("method") == method:
            change(bench)
    return doc


def _lower_accuracy(points: float) -> Callable[[dict[str, Any]], None]:
    def change(bench: dict[str, Any]) -> None:
        bench["extra_info"]["accuracy"] = round(bench["extra_info"]["accuracy"] - points / 100, 6)

    return change


def _slower(factor: float) -> Callable[[dict[str, Any]], None]:
    def change(bench: dict[str, Any]) -> None:
        for stat in ("median", "mean", "min"):
            bench["stats"][stat] *= factor

    return change


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    """A benchmark storage folder holding the golden run as this machine's run 0001."""
    root = tmp_path / ".benchmarks"
    (root / machine_id()).mkdir(parents=True)
    shutil.copy(GOLDEN, root / machine_id() / "0001_golden.json")
    return root


def _save(storage: Path, stem: str, doc: Any) -> Path:
    path = storage / machine_id() / f"{stem}.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=4), encoding="utf-8")
    return path


def _run(capsys: pytest.CaptureFixture, storage: Path | str, *argv: str) -> tuple[int, str, str]:
    code = main_compare(["--benchmark-storage", str(storage), *argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------ acceptance
def test_lowered_static_int8_accuracy_fails_accuracy_drop(capsys: pytest.CaptureFixture, storage: Path) -> None:
    _save(storage, "0002_lowered", _edit(_golden(), "static-int8", _lower_accuracy(5)))
    code, out, err = _run(capsys, storage, "--fail-on", "accuracy_drop:0.5")  # default: the two newest runs
    assert code == 1, err
    failures = out[out.index("FAILED"):].splitlines()[1:]
    assert len(failures) == 2 and all("static-int8" in line for line in failures)
    assert "accuracy dropped 5.00 points (0.8790 -> 0.8290), more than 0.5" in failures[0]
    assert "0001_golden" in out and "0002_lowered" in out


def test_run_compared_with_itself_passes_every_rule(capsys: pytest.CaptureFixture, storage: Path) -> None:
    rules = ["accuracy_drop:0", "f1_drop:0", "median:0%", "mean:0", "min:0%", "size:0%", "peak_rss:0", "speedup:0%"]
    code, out, _ = _run(capsys, storage, "1", "0001", *(arg for rule in rules for arg in ("--fail-on", rule)))
    assert code == 0
    assert "OK: no rule broken (8 rule(s) on 8 cell(s))" in out
    assert "BASE and NEW are the same file" in out
    assert main_compare([str(GOLDEN), str(GOLDEN), "--fail-on", "accuracy_drop:0.5"]) == 0


def test_json_output_has_deltas_and_failures(capsys: pytest.CaptureFixture, storage: Path) -> None:
    _save(storage, "0002_lowered", _edit(_golden(), "static-int8", _lower_accuracy(5)))
    code, out, _ = _run(capsys, storage, "--json", "--fail-on", "accuracy_drop:0.5")
    result = json.loads(out.strip().splitlines()[-1])
    assert code == 1 and result["ok"] is False and result["same_machine"] is True
    assert result["rules"] == ["accuracy_drop:0.5"] and result["rules_source"] == "--fail-on"
    assert {f["cell"]["method"] for f in result["failures"]} == {"static-int8"}
    cell = next(c for c in result["cells"] if c["method"] == "static-int8" and c["batch_size"] == 1)
    assert cell["status"] == "both" and cell["seq_len"] == 128 and cell["hardware"] == "cpu"
    assert cell["metrics"]["accuracy"]["delta"] == pytest.approx(-0.05)
    assert cell["metrics"]["median"]["delta_pct"] == pytest.approx(0.0)
    assert cell["failed"] == {"accuracy": "accuracy_drop:0.5"}


# ------------------------------------------------------------------------------------------ bad files
def test_corrupt_json_is_a_message_naming_the_file(capsys: pytest.CaptureFixture, storage: Path) -> None:
    broken = _save(storage, "0002_broken", GOLDEN.read_text(encoding="utf-8")[:5000])  # an interrupted save
    code, out, err = _run(capsys, storage, "1", str(broken))  # named: this message; unnamed: skipped (below)
    assert code == 2 and out == ""
    assert err.startswith("quantbench: error: ") and str(broken) in err and "not valid JSON" in err
    assert "line" in err and "Traceback" not in err


def test_empty_file_is_a_message(capsys: pytest.CaptureFixture, storage: Path) -> None:
    empty = _save(storage, "0002_empty", "")
    code, _, err = _run(capsys, storage, "1", str(empty))
    assert code == 2 and str(empty) in err and "empty" in err


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ('{"foo": 1}', "no 'benchmarks' list and no 'machine_info' object"),
        ('[1, 2, 3]', "the top level is a list"),
        ('{"benchmarks": [], "foo": 1}', "no 'machine_info' object"),
        ('{"machine_info": {}, "benchmarks": {"a": 1}}', "no 'benchmarks' list"),
    ],
)
def test_foreign_json_is_a_message(capsys: pytest.CaptureFixture, storage: Path, content: str, what: str) -> None:
    foreign = _save(storage, "0002_foreign", content)
    code, _, err = _run(capsys, storage, "1", str(foreign))
    assert code == 2
    assert f"{foreign}: not pytest-benchmark JSON" in err and what in err and "--benchmark-save" in err
    assert "Traceback" not in err


def test_plain_pytest_benchmark_run_is_skipped_with_a_note(capsys: pytest.CaptureFixture, storage: Path) -> None:
    code, out, _ = _run(capsys, storage, "1", str(PLAIN), "--fail-on", "accuracy_drop:0.5")
    assert code == 0
    assert "skipped 2 benchmark(s) without quantbench extra_info: tests/test_speed.py::test_tokenize" in out
    assert "holds no quantbench benchmarks" in out and "removed: only in BASE" in out
    code, out, _ = _run(capsys, storage, str(PLAIN), str(PLAIN))
    assert code == 0 and out.count("holds no quantbench benchmarks") == 2


def test_foreign_benchmarks_inside_a_quantbench_run_are_noted(capsys: pytest.CaptureFixture, storage: Path) -> None:
    doc = _golden()
    doc["benchmarks"] += json.loads(PLAIN.read_text(encoding="utf-8"))["benchmarks"]
    _save(storage, "0002_mixed", doc)
    code, out, _ = _run(capsys, storage, "--fail-on", "accuracy_drop:0.5")
    assert code == 0
    assert "NEW: skipped 2 benchmark(s) without quantbench extra_info" in out
    assert "OK: no rule broken (1 rule(s) on 8 cell(s))" in out


# ---------------------------------------------------------------------------------------- selection
def test_missing_run_number_is_a_message(capsys: pytest.CaptureFixture, storage: Path) -> None:
    code, _, err = _run(capsys, storage, "1", "0009")
    assert code == 2
    assert f"no run 0009 in {storage / machine_id()}" in err and "saved runs there: 0001_golden" in err
    code, _, err = _run(capsys, storage, "9", "1")
    assert code == 2 and "no run 0009" in err
    code, _, err = _run(capsys, storage, "nightly", "1")
    assert code == 2 and "no run named 'nightly'" in err
    code, _, err = _run(capsys, storage, "1", "missing.json")
    assert code == 2 and "missing.json: no such file" in err


def test_empty_storage_asks_for_two_saved_runs(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, _, err = _run(capsys, tmp_path / "nothing-here")
    assert code == 2
    assert "quantbench compare needs two saved runs in" in err and "(found 0)" in err
    assert "pytest bench --benchmark-save=NAME" in err


def test_one_saved_run_is_not_enough_without_selectors(capsys: pytest.CaptureFixture, storage: Path) -> None:
    code, _, err = _run(capsys, storage)
    assert code == 2 and "(found 1)" in err and "quantbench compare BASE NEW" in err


def test_selectors_numbers_names_paths_and_machine_folders(storage: Path, tmp_path: Path) -> None:
    folder = storage / machine_id()
    _save(storage, "0002_nightly", _golden())
    _save(storage, "0003_nightly", _golden())
    _save(storage, "0004_pr", _golden())
    golden = folder / "0001_golden.json"
    assert select_runs(storage, []) == (folder / "0003_nightly.json", folder / "0004_pr.json")
    assert select_runs(storage, ["1"]) == (golden, folder / "0004_pr.json")
    assert select_runs(storage, ["0001", "nightly"]) == (golden, folder / "0003_nightly.json")  # newest of a name
    assert select_runs(storage, ["0002_nightly", "4"])[0] == folder / "0002_nightly.json"
    assert select_runs(storage, [str(GOLDEN), f"{machine_id()}/pr"]) == (GOLDEN, folder / "0004_pr.json")
    other = storage / "Windows-CPython-3.12-64bit"
    shutil.copytree(folder, other)
    assert select_runs(storage, ["Windows-CPython-3.12-64bit/1", "pr"], machine="Windows-CPython-3.12-64bit") == (
        other / "0001_golden.json",
        other / "0004_pr.json",
    )
    with pytest.raises(QuantbenchError, match="at most two runs"):
        select_runs(storage, ["1", "2", "3"])


def test_file_url_storage_and_runs_of_another_machine_folder(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _run(capsys, f"file://{DATA}", "Linux-CPython-3.11-64bit/1", "Linux-CPython-3.11-64bit/golden")
    assert code == 0 and "BASE  Linux-CPython-3.11-64bit/0001_golden" in out
    code, _, err = _run(capsys, "elasticsearch+https://host/index", "1", "2")
    assert code == 2 and "file storage only" in err


# ---------------------------------------------------------------------------------------- machines
def _other_machine(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["machine_info"]["node"] = "laptop"
    doc["machine_info"]["cpu"]["brand_raw"] = "AMD Ryzen 7 7840U"
    return doc


def test_mismatched_machines_warn_and_skip_timing_rules(capsys: pytest.CaptureFixture, storage: Path) -> None:
    doc = _edit(_golden(), "static-int8", _lower_accuracy(5))
    _save(storage, "0002_laptop", _other_machine(_edit(doc, "fp32", _slower(1.5))))
    code, out, err = _run(capsys, storage, "--fail-on", "median:10%", "--fail-on", "accuracy_drop:0.5")
    assert code == 1
    assert "quantbench: warning: BASE and NEW come from different machines" in err
    assert "node: 'qb-ci-01' vs 'laptop'" in err and "--force-cross-machine" in err
    failures = out[out.index("FAILED"):]
    assert "static-int8" in failures and "median" not in failures  # accuracy still gated, timing not
    assert "median:10%: not applied, BASE and NEW come from different machines" in out
    assert "machine: DIFFERENT" in out

    code, out, err = _run(capsys, storage, "--fail-on", "median:10%", "--force-cross-machine")
    assert code == 1 and "applied anyway" in err
    failures = out[out.index("FAILED"):]
    assert "fp32 cpu batch 1 seq_len 128: median:10%: median rose by 50.0%" in failures


def test_mismatched_machines_only_timing_regression_passes(capsys: pytest.CaptureFixture, storage: Path) -> None:
    _save(storage, "0002_laptop", _other_machine(_edit(_golden(), "fp32", _slower(1.5))))
    for rule in ("median:10%", "peak_rss:1", "speedup:1%", "min:0.001", "throughput:5%"):
        code, _, _ = _run(capsys, storage, "--fail-on", rule)
        assert code == 0, rule


def test_latency_gates_are_refused_across_cpu_classes_even_forced(capsys: pytest.CaptureFixture,
                                                                   storage: Path) -> None:
    doc = _other_machine(_edit(_golden(), "fp32", _slower(1.5)))
    doc["machine_info"]["cpu"]["flags"] = ["avx", "avx2", "fma", "sse4_2"]  # an AVX2-only CPU: another class
    _save(storage, "0002_avx2", doc)
    code, out, _ = _run(capsys, storage, "--fail-on", "median:10%", "--fail-on", "peak_rss:1", "--force-cross-machine")
    assert code == 0
    assert ("median:10%: refused, BASE ran on an avx512-vnni CPU and NEW on an avx2 one; which method is fastest "
            "changes with the CPU class") in out
    assert "peak_rss:1: refused" not in out  # memory is not a latency: forcing still applies it


def test_p90_rule_gates_the_tail_latency_the_bench_saved(capsys: pytest.CaptureFixture, storage: Path) -> None:
    base = _golden()
    for bench in base["benchmarks"]:
        bench["extra_info"].update({"timed_calls": 100, "latency_p90_s": bench["stats"]["median"] * 1.2})

    def tail(bench: dict[str, Any]) -> None:
        bench["extra_info"]["latency_p90_s"] *= 1.3

    _save(storage, "0001_golden", base)
    _save(storage, "0002_tail", _edit(copy.deepcopy(base), "static-int8", tail))
    code, out, _ = _run(capsys, storage, "--fail-on", "p90:10%")
    assert code == 1
    assert "static-int8 cpu batch 1 seq_len 128: p90:10%: latency_p90_s rose by 30.0%" in out
    assert "fp32 cpu" not in out[out.index("FAILED"):]


def test_machine_identity_rules() -> None:
    base = {"node": "a", "machine": "x86_64", "processor": "", "cpu": {"brand_raw": "Xeon"}, "release": "6.1"}
    assert machine_differences(base, {**base, "release": "6.8", "python_version": "3.12"}) == []
    assert machine_differences(base, {**base, "cpu": {"brand_raw": "EPYC"}}) == ["cpu.brand_raw: 'Xeon' vs 'EPYC'"]
    assert machine_differences(base, {"node": "a"}) == []  # keys only one run recorded prove nothing
    tagged = {**base, "quantbench": {"cpu_model": "Xeon", "cpu_count": 2, "threads": 2, "versions": {"torch": "2.8"}}}
    retagged = {**base, "quantbench": {"cpu_count": 1, "threads": 1, "versions": {"torch": "2.9"}}}
    # a torch upgrade is no new machine, nor torch's thread count when the file was written (the last cell's)
    assert machine_differences(tagged, retagged) == ["quantbench.cpu_count: 2 vs 1"]
    assert machine_differences(tagged, base) == []


# ------------------------------------------------------------------------------------------- rules
def test_percentage_rule_math() -> None:
    median = parse_rule("median:10%")
    assert isinstance(median, PercentageCheck) and median.threshold == 10.0
    assert median.worsening(0.010, 0.011) == pytest.approx(10.0)
    assert median.fails(0.010, 0.011) is None  # exactly 10 % is allowed: only "more than" fails
    assert median.fails(0.010, 0.0090) is None  # faster is never a regression
    assert "median rose by 10.5% (10.000 -> 11.050 ms), more than 10%" == median.fails(0.010, 0.01105)
    speedup = parse_rule("speedup:5%")
    assert speedup.worsening(2.0, 1.8) == pytest.approx(10.0)  # higher is better: a fall is the regression
    assert "speedup_vs_fp32 fell by 10.0% (2.000x -> 1.800x)" in speedup.fails(2.0, 1.8)
    assert speedup.fails(2.0, 3.0) is None
    size = parse_rule("size:2.5%")
    assert size.fails(100e6, 102e6) is None and "size_bytes rose by 3.0%" in size.fails(100e6, 103e6)
    assert size.worsening(0, 1) == math.inf and size.worsening(0, 0) == 0.0


def test_difference_rule_math() -> None:
    accuracy = parse_rule("accuracy_drop:0.5")
    assert isinstance(accuracy, DifferenceCheck)
    assert accuracy.fails(0.883, 0.878) is None  # exactly 0.5 points despite float noise (0.883 - 0.878)
    assert accuracy.fails(0.883, 0.8779) == "accuracy dropped 0.51 points (0.8830 -> 0.8779), more than 0.5"
    assert accuracy.fails(0.883, 0.95) is None
    assert parse_rule("f1_drop:1").fails(0.90, 0.885) == "f1 dropped 1.50 points (0.9000 -> 0.8850), more than 1"
    latency = parse_rule("min:0.002")  # seconds, like pytest-benchmark's min:0.002
    assert latency.fails(0.010, 0.0119) is None and "min rose by 0.003000 s (3.000 ms)" in latency.fails(0.010, 0.013)
    peak_rss = parse_rule("peak_rss:50")
    assert peak_rss.fails(600.0, 660.0) == "peak_rss_mb rose by 60.0 MB (600.0 -> 660.0 MB), more than 50"
    assert parse_rule("size:1e6").fails(50e6, 51e6) is None
    assert parse_rule("speedup:0.1").fails(1.5, 1.35) is not None


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("median", "cannot read this rule; write METRIC:N% (change relative to BASE) or METRIC:X"),
        ("median:ten", "cannot read this rule"),
        ("median:-5%", "cannot read this rule"),
        ("median:10%%", "cannot read this rule"),
        ("latency:10%", "unknown metric 'latency'; choose one of accuracy_drop, f1_drop, primary_drop, median"),
        ("accuracy_drop:5%", "accuracy_drop is measured in percentage points, not relative to BASE"),
    ],
)
def test_bad_rule_is_a_message(capsys: pytest.CaptureFixture, storage: Path, rule: str, message: str) -> None:
    code, out, err = _run(capsys, storage, "1", "1", "--fail-on", "accuracy_drop:0.5", "--fail-on", rule)
    assert code == 2 and out == ""
    assert err.startswith(f"quantbench: error: --fail-on {rule!r}: ") and message in err


def test_latency_rule_median_10_percent(capsys: pytest.CaptureFixture, storage: Path) -> None:
    _save(storage, "0002_slow", _edit(_golden(), "dynamic-int8", _slower(1.15)))
    code, out, _ = _run(capsys, storage, "--fail-on", "median:10%")
    assert code == 1
    failures = out[out.index("FAILED"):].splitlines()[1:]
    assert len(failures) == 2 and all("dynamic-int8" in line and "rose by 15.0%" in line for line in failures)
    assert "<< median:10%" in out
    _save(storage, "0003_fine", _edit(_golden(), "dynamic-int8", _slower(1.05)))
    code, out, _ = _run(capsys, storage, "1", "3", "--fail-on", "median:10%")
    assert code == 0 and "+5.0%)" in out


def test_all_failures_are_collected(capsys: pytest.CaptureFixture, storage: Path) -> None:
    doc = _edit(_golden(), "static-int8", _lower_accuracy(1))

    def bigger(bench: dict[str, Any]) -> None:
        bench["extra_info"]["size_bytes"] *= 2

    _save(storage, "0002_worse", _edit(_edit(doc, "fp32", _slower(2)), "bf16", bigger))
    argv = ["--fail-on", "accuracy_drop:0.5", "--fail-on", "median:10%", "--fail-on", "size:5%"]
    code, out, _ = _run(capsys, storage, *argv)
    assert code == 1 and "FAILED: 6 rule violation(s)" in out
    for text in ("static-int8 cpu batch 32", "fp32 cpu batch 1", "bf16 cpu batch 32 seq_len 128: size:5%"):
        assert text in out


def test_missing_values_print_a_dash_and_are_not_evaluated(capsys: pytest.CaptureFixture, storage: Path) -> None:
    _save(storage, "0002_same", _golden())
    code, out, _ = _run(capsys, storage, "--fail-on", "peak_rss:10%")
    assert code == 0
    assert "peak_rss MB           - -> -          (-)" in out  # bf16's peak memory was not measured
    assert "peak_rss:10%: not evaluated on 2 cell(s) where peak_rss_mb was not measured: bf16 cpu batch 1" in out


def test_added_and_removed_cells_are_listed(capsys: pytest.CaptureFixture, storage: Path) -> None:
    doc = _golden()
    dropped = next(b for b in doc["benchmarks"] if b["extra_info"]["method"] == "bf16" and b["params"]["batch_size"] == 32)
    doc["benchmarks"].remove(dropped)
    added = copy.deepcopy(dropped)
    added["extra_info"].update(method="qat-int8")
    doc["benchmarks"].append(added)
    _save(storage, "0002_changed", doc)
    code, out, _ = _run(capsys, storage, "--fail-on", "accuracy_drop:0.5")
    assert code == 0
    assert "bf16               cpu      batch 32   seq_len 128   (removed: only in BASE)" in out
    assert "qat-int8           cpu      batch 32   seq_len 128   (added: only in NEW)" in out
    assert "OK: no rule broken (1 rule(s) on 7 cell(s))" in out


# -------------------------------------------------------------------------------- pyproject defaults
def _pyproject(folder: Path, body: str) -> Path:
    path = folder / "pyproject.toml"
    path.write_text("[tool.quantbench]\n" + body, encoding="utf-8")
    return path


def test_default_rules_come_from_pyproject(
    capsys: pytest.CaptureFixture, storage: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pyproject(tmp_path, '[tool.quantbench.compare]\nfail_on = ["accuracy_drop:0.5", "median:10%"]\n')
    monkeypatch.chdir(tmp_path)
    _save(storage, "0002_lowered", _edit(_golden(), "static-int8", _lower_accuracy(5)))
    code, out, _ = main_compare([]), *capsys.readouterr()  # storage is ./.benchmarks by default
    assert code == 1 and "rules: accuracy_drop:0.5, median:10% (from " in out and "[tool.quantbench.compare]" in out
    code, out, _ = _run(capsys, storage, "--no-default-rules")
    assert code == 0 and "rules: none" in out
    code, out, _ = _run(capsys, storage, "--fail-on", "median:10%")  # the flag replaces pyproject's rules
    assert code == 0 and "rules: median:10% (from --fail-on)" in out


def test_bad_default_rules_name_pyproject(tmp_path: Path) -> None:
    path = _pyproject(tmp_path, '[tool.quantbench.compare]\nfail_on = ["median:fast"]\n')
    texts, source = default_rules(path)
    assert texts == ["median:fast"] and source == f"{path} [tool.quantbench.compare] fail_on"
    with pytest.raises(QuantbenchError, match=r"\[tool.quantbench.compare\] fail_on 'median:fast': cannot read"):
        parse_rule(texts[0], source)
    with pytest.raises(QuantbenchError, match="fail_on must be a list of strings"):
        default_rules(_pyproject(tmp_path, '[tool.quantbench.compare]\nfail_on = "median:10%"\n'))
    with pytest.raises(QuantbenchError, match="unknown setting"):
        default_rules(_pyproject(tmp_path, '[tool.quantbench.compare]\nfail_onn = ["median:10%"]\n'))
    no_table = _pyproject(tmp_path, "")
    assert default_rules(no_table) == ([], f"{no_table} [tool.quantbench.compare] fail_on")


# ------------------------------------------------------------------------------------------- API and CLI
def test_golden_fixture_loads_as_eight_cells() -> None:
    run = load_run(GOLDEN)
    assert len(run.cells) == 8 and run.notes == ()
    assert {key.method for key in run.cells} == {"fp32", "dynamic-int8", "static-int8", "bf16"}
    assert {(key.hardware, key.batch_size, key.seq_len) for key in run.cells} == {("cpu", 1, 128), ("cpu", 32, 128)}
    result = compare_runs(run, run, [parse_rule("accuracy_drop:0.5")])
    assert result.ok and result.same_machine and [c.status for c in result.cells] == ["both"] * 8


def test_metric_directions_follow_the_schema() -> None:
    assert METRICS["accuracy_drop"].higher_is_better and METRICS["speedup"].higher_is_better
    assert not METRICS["size"].higher_is_better and not METRICS["peak_rss"].higher_is_better
    assert {name for name, m in METRICS.items() if m.machine_bound} == {
        "median", "mean", "min", "p90", "p99", "peak_rss", "speedup", "throughput"
    }
    # memory is comparable across CPU classes on one machine kind; which method is fastest is not
    assert {name for name, m in METRICS.items() if m.timing} == {
        "median", "mean", "min", "p90", "p99", "speedup", "throughput"
    }


def test_add_compare_parser_wires_a_handler(capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="quantbench")
    add_compare_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["compare", str(GOLDEN), str(GOLDEN), "--fail-on", "size:5%", "--json"])
    assert args.handler(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ok"] is True


def test_help_and_usage_errors_return_codes(capsys: pytest.CaptureFixture) -> None:
    assert main_compare(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--fail-on", "--benchmark-storage", "--force-cross-machine", "--no-default-rules", "--json"):
        assert flag in text
    assert main_compare(["--no-such-flag"]) == 2


def test_a_run_killed_while_saving_is_never_the_newest_run(storage: Path, caplog: pytest.LogCaptureFixture) -> None:
    """pytest-benchmark writes the run file in place: a save killed half-way leaves half a JSON file. compare and
    report skip it (with a warning naming it) instead of failing on it or taking it as the newest run."""
    folder = storage / machine_id()
    complete = _save(storage, "0002_complete", _golden())
    text = json.dumps(_golden(), indent=4)
    half = _save(storage, "0003_killed", text[: len(text) // 2])
    with caplog.at_level("WARNING"):
        assert select_runs(storage, []) == (folder / "0001_golden.json", complete)
    assert f"skipping {half}" in caplog.text


def _two_models(doc: dict[str, Any], base_change: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """``doc`` as profile quick plus a copy as profile base (4x slower): a run of ``--quant-profiles quick,base``."""
    doc = copy.deepcopy(doc)
    base = copy.deepcopy(doc["benchmarks"])
    for bench in base:
        bench["extra_info"]["profile"] = "base"
        _slower(4.0)(bench)
        if base_change and bench["extra_info"]["method"] == "static-int8":
            base_change(bench)
    doc["benchmarks"] = doc["benchmarks"] + base
    return doc


def test_cells_of_different_models_are_never_paired(capsys: pytest.CaptureFixture, storage: Path) -> None:
    # One model per run: quick in BASE, base (4x slower) in NEW: nothing is paired, so no rule can fire.
    only_base = _two_models(_golden())
    only_base["benchmarks"] = [b for b in only_base["benchmarks"] if b["extra_info"]["profile"] == "base"]
    _save(storage, "0002_base", only_base)
    code, out, _ = _run(capsys, storage, "--fail-on", "median:10%")
    assert code == 0 and "(removed: only in BASE)" in out and "(added: only in NEW)" in out
    # Two models in both runs, base's static-int8 lowered: only base's cells fail, each named with its profile.
    _save(storage, "0003_both", _two_models(_golden()))
    _save(storage, "0004_both", _two_models(_golden(), _lower_accuracy(5)))
    code, out, _ = _run(capsys, storage, "3", "4", "--fail-on", "accuracy_drop:0.5", "--fail-on", "median:10%")
    failures = out[out.index("FAILED"):].splitlines()[1:]
    assert code == 1 and len(failures) == 2
    assert all(line.startswith("  - base: static-int8 cpu batch") for line in failures), failures
    assert "== profile quick ==" in out and "== profile base ==" in out
    result = compare_runs(load_run(storage / machine_id() / "0003_both.json"),
                          load_run(storage / machine_id() / "0004_both.json"))
    assert {cell.status for cell in result.cells} == {"both"} and len(result.cells) == 2 * 8


def test_markdown_summary_puts_the_broken_cells_first(capsys: pytest.CaptureFixture, storage: Path) -> None:
    _save(storage, "0002_lowered", _edit(_golden(), "static-int8", _lower_accuracy(5)))
    code, out, _ = _run(capsys, storage, "--fail-on", "accuracy_drop:0.5", "--format", "markdown")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "### quantbench compare: **FAILED**: 2 rule violation(s) in 2 cell(s)"
    table = [line for line in lines[: lines.index("<details><summary>6 cell(s) within the rules</summary>")]
             if line.startswith("| static")]
    assert len(table) == 2 and all("**0.8290 (-5.00 pts)**" in row and "`accuracy_drop:0.5`" in row for row in table)
    folded = out[out.index("<details>"):]
    assert "| fp32 cpu b1 s128 | 0.8830 (+0.00 pts) |" in folded and "static-int8" not in folded
    code, out, _ = _run(capsys, storage, "1", "1", "--fail-on", "accuracy_drop:0.5", "--format", "markdown")
    assert code == 0 and out.startswith("### quantbench compare: **OK**: no rule broken (1 rule(s) on 8 cell(s))")
    _, as_json, _ = _run(capsys, storage, "--format", "json")
    _, legacy, _ = _run(capsys, storage, "--json")
    assert json.loads(as_json) == json.loads(legacy)
    code, _, err = _run(capsys, storage, "--format", "markdown", "--json")
    assert code == 2 and "pass one" in err


MAIN_7CB11CE = DATA / "main-7cb11ce" / "0001_main-7cb11ce.json"


def test_a_run_saved_by_the_previous_main_still_compares(tmp_path: Path) -> None:
    """A smoke run saved by main at 7cb11ce (before the one saved-run reader): its cells, values and the gate."""
    base = load_run(MAIN_7CB11CE)
    doc = json.loads(MAIN_7CB11CE.read_text())
    assert len(base.cells) == len(doc["benchmarks"]) == 18
    for bench in doc["benchmarks"]:
        info = bench["extra_info"]
        # saved before tasks: the cells name none and read as the default task, imdb
        cell = base.cells[Cell(info["method"], info["hardware"], info["batch_size"], info["seq_len"], info["profile"])]
        assert cell.key.task == "imdb" and cell.key.setup == "smoke"
        assert cell.values["accuracy"] == info["accuracy"] and cell.values["median"] == bench["stats"]["median"]
    lowered = copy.deepcopy(doc)
    for bench in lowered["benchmarks"]:
        if bench["extra_info"]["method"] == "static-int8":
            bench["extra_info"]["accuracy"] -= 0.02
    path = tmp_path / "0002_lowered.json"
    path.write_text(json.dumps(lowered))
    result = compare_runs(base, load_run(path), [parse_rule("accuracy_drop:0.5")])
    assert not result.ok and {f.cell.method for f in result.failures} == {"static-int8"}
    assert len(result.failures) == sum(b["extra_info"]["method"] == "static-int8" for b in doc["benchmarks"])
