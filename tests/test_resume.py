"""An interrupted bench run keeps what it measured, and resumes (quant_impl.session.journal and lifecycle).

Child `pytest bench` runs on the smoke profile (tiny model), as a user would run them: stopped by SIGTERM or killed
by SIGKILL once their journal holds a few timed cells, then resumed with --quant-resume.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quant_impl.history import compare_runs, parse_rules
from quant_impl.saved_run import load_saved_run
from quant_impl.schema import FIELD_NAMES
from quant_impl.session.journal import JOURNAL_DIR, read_journal

ROOT = Path(__file__).resolve().parents[1]
# A quantized method that builds in a second (torchao's eager int8 weights): resuming is about cells and journals,
# and dynamic-int8's compile (again in the memory child, again per shape) made each child run minutes long.
METHODS = "fp32,intx-int8-weight-only"
CELLS = 4  # 2 methods x batch 1, 2
GOLDEN = ROOT / "tests" / "data" / "benchmarks" / "Linux-CPython-3.11-64bit" / "0001_golden.json"


def _command(storage: Path, *extra: str, methods: str = METHODS) -> list[str]:
    return [sys.executable, "-m", "pytest", "bench", "-q", "-p", "no:cacheprovider", "--quant-profile", "smoke",
            "--quant-methods", methods, "--quant-hardware", "cpu", "--quant-batch-sizes", "1,2",
            "--quant-seq-lens", "16", f"--benchmark-storage=file://{storage}", "--benchmark-save=smoke", *extra]


def _journal_cells(storage: Path) -> int:
    journals = list((storage / JOURNAL_DIR).glob("*.jsonl"))
    if not journals:
        return 0
    content = read_journal(journals[0])
    return len(content.entries) if content else 0


def _stopped_run(tmp: Path, sig: signal.Signals, after: int) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A child bench stopped by ``sig`` once its journal holds ``after`` cells; returns (storage, cache, result)."""
    storage, cache = tmp / "storage", tmp / "cache"
    env = {**os.environ, "QUANTBENCH_CACHE": str(cache)}
    child = subprocess.Popen(_command(storage), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    deadline = time.monotonic() + 900
    while _journal_cells(storage) < after and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.poll() is None, "the child ended before it was stopped: " + child.stdout.read()[-3000:]
    child.send_signal(sig)
    out, _ = child.communicate(timeout=600)
    return storage, cache, subprocess.CompletedProcess(child.args, child.returncode, out, "")


def _resume(storage: Path, cache: Path, *extra: str, methods: str = METHODS) -> subprocess.CompletedProcess:
    env = {**os.environ, "QUANTBENCH_CACHE": str(cache)}
    return subprocess.run(_command(storage, "--quant-resume", *extra, methods=methods), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def _runs(storage: Path) -> list[Path]:
    return sorted(p for p in storage.glob("*/*.json"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopped_run_is_partial_and_resumes_to_a_complete_run(sig: signal.Signals, tmp_path: Path) -> None:
    storage, cache, stopped = _stopped_run(tmp_path, sig, after=2)
    journal = read_journal(next((storage / JOURNAL_DIR).glob("*.jsonl")))
    timed = {entry["param"] for entry in journal.entries}
    assert len(timed) >= 2 and len(journal.header["cells"]) == CELLS
    if sig == signal.SIGKILL:
        assert not _runs(storage), "a killed process cannot save; the next run recovers it"
        # any bench start in this storage recovers the killed run (here: the resume itself)
    else:
        assert stopped.returncode != 0
        partial_doc = json.loads(_runs(storage)[0].read_text())
        partial = partial_doc["quantbench"]["partial"]
        assert partial["reason"] == "stopped by signal SIGTERM"
        # exactly the cells journaled before the signal, the rest missing
        assert {b["param"] for b in partial_doc["benchmarks"]} == timed
        assert set(partial["missing"]) == set(journal.header["cells"]) - timed and partial["cells"] == CELLS
    resumed = _resume(storage, cache)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    out = resumed.stdout + resumed.stderr
    if sig == signal.SIGKILL:
        assert "recovered the killed run" in out
    assert "resuming" in out and f"{CELLS - len(timed)} it lacks" in out
    assert "cells done" in out and "left" in out  # the progress line
    runs = _runs(storage)
    assert len(runs) == 2, runs
    partial_run, complete = (json.loads(p.read_text()) for p in runs)
    assert "partial" in partial_run["quantbench"] and "partial" not in complete["quantbench"]
    assert complete["quantbench"]["resumed_from"].endswith(runs[0].name)
    benches = complete["benchmarks"]
    assert sorted(b["param"] for b in benches) == sorted(journal.header["cells"])
    kept = {b["param"]: b for b in partial_run["benchmarks"]}
    for bench in benches:
        assert not [name for name in FIELD_NAMES if name not in bench["extra_info"]], bench["param"]
        assert bench["extra_info"]["speedup_vs_fp32"] > 0
        if bench["param"] in kept:  # the partial run's timings are kept, not measured again
            assert bench["stats"]["median"] == kept[bench["param"]]["stats"]["median"]


def test_resume_refuses_another_method_list_or_commit(tmp_path: Path) -> None:
    storage, cache, _ = _stopped_run(tmp_path, signal.SIGTERM, after=1)
    refused = _resume(storage, cache, methods="fp32")
    assert refused.returncode == 4, refused.stdout[-2000:] + refused.stderr[-2000:]
    line = next(line for line in (refused.stdout + refused.stderr).splitlines() if "refused" in line)
    assert "--quant-resume" in line and "methods" in line and "start a new run instead" in line
    path = _runs(storage)[0]
    doc = json.loads(path.read_text())
    doc["commit_info"]["id"] = "0" * 40
    path.write_text(json.dumps(doc))
    refused = _resume(storage, cache)
    assert refused.returncode == 4
    assert f"it was run at commit {'0' * 40}" in refused.stdout + refused.stderr


def test_compare_never_passes_a_cell_a_partial_run_lacks(tmp_path: Path) -> None:
    doc = json.loads(GOLDEN.read_text())
    partial = copy.deepcopy(doc)
    dropped = partial["benchmarks"].pop()
    partial.setdefault("quantbench", {})["partial"] = {"reason": "stopped by signal SIGTERM",
                                                       "missing": [dropped["param"]], "cells": len(doc["benchmarks"])}
    base, new = tmp_path / "0001_full.json", tmp_path / "0002_partial.json"
    base.write_text(json.dumps(doc))
    new.write_text(json.dumps(partial))
    result = compare_runs(load_saved_run(base), load_saved_run(new), parse_rules(["accuracy_drop:0.5"]))
    assert not result.ok
    assert [f.rule for f in result.failures] == ["partial"]
    assert "missing from NEW, a partial run (stopped by signal SIGTERM)" in str(result.failures[0])
    assert any("partial run" in note for note in result.notes)
