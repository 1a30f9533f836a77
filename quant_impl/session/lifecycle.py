"""What keeps a long ``pytest bench`` run's work when it stops early, and tells how long it has left.

- SIGTERM (a CI timeout, ``kill``) is turned into the KeyboardInterrupt that Ctrl-C raises, so pytest ends the
  session normally and pytest-benchmark saves the cells timed so far.
- Each timed cell goes to the run's journal at once (quant_impl.session.journal); a run killed outright (SIGKILL,
  a lost VM) is turned into a run file by the next ``pytest bench`` in the same storage.
- A saved run that lacks cells is marked ``partial`` (``quantbench.partial``: why, and which cells are missing);
  the report says so and ``quantbench compare`` never passes a cell a run does not have.
- After each cell, one line: cells done of all, and the time left estimated from the cells timed so far.
"""

from __future__ import annotations

import hashlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from quant_impl.config import RESUME_OPTION
from quant_impl.session.journal import Journal, partial_document, unfinished
from quant_impl.session.results import add_speedups

JOURNAL = pytest.StashKey[Journal]()
CELL_IDS = pytest.StashKey[list[str]]()
PROGRESS = pytest.StashKey[dict[str, Any]]()
INTERRUPTED = pytest.StashKey[str]()
SKIPPED = pytest.StashKey[set]()
RESUMED = pytest.StashKey[dict]()


def install_sigterm(config: pytest.Config) -> None:
    """SIGTERM ends the run like Ctrl-C: pytest finishes the session and the timed cells are saved. Where the
    KeyboardInterrupt is swallowed (TorchDynamo falls back to eager on an exception while it compiles), the run
    stops after the cell at hand instead (:func:`after_cell`)."""

    def stop(signum: int, _frame: Any) -> None:
        config.stash[INTERRUPTED] = f"stopped by signal {signal.Signals(signum).name}"
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (pytest run inside another program): leave its handler
        pass


def _benchmark_session(config: pytest.Config) -> Any:
    return getattr(config, "_benchmarksession", None)


def _saving(config: pytest.Config) -> bool:
    bs = _benchmark_session(config)
    return bool(bs and (bs.save or bs.autosave) and not bs.disabled)


def recover(config: pytest.Config) -> list[Path]:
    """Turn the journals of runs that died before saving into run files marked partial; their paths."""
    bs = _benchmark_session(config)
    if bs is None or not hasattr(bs.storage, "path"):
        return []
    saved = []
    for content in unfinished(Path(bs.storage.path)):
        document = partial_document(content, "the run was killed before it saved (SIGKILL or a lost machine)")
        add_speedups(document["benchmarks"])
        name = f"partial-{content.header.get('save') or 'run'}"
        _save(bs, document, name, content.header.get("machine_id"))
        journal = Journal(content.path.parent.parent, content.path.stem)
        journal.end(name)
        saved.append(content.path)
        _say(config, f"quantbench: recovered the killed run {content.path.stem}: {len(content.entries)} of "
                     f"{len(content.header.get('cells', []))} cells saved as a partial run ({name})")
    return saved


def _save(bs: Any, document: dict[str, Any], name: str, machine_id: str | None) -> None:
    storage = bs.storage
    previous = storage.default_machine_id
    if machine_id:
        storage.default_machine_id = machine_id
    try:
        storage.save(document, name)
    finally:
        storage.default_machine_id = previous


def _cell_ids(items: list[pytest.Item]) -> list[str]:
    return [item.callspec.id for item in items if hasattr(item, "callspec") and "cell" in item.callspec.params]


def start(config: pytest.Config, items: list[pytest.Item]) -> None:
    """After collection: remember the run's cells, and open its journal when the run will be saved."""
    resumed = config.stash.get(RESUMED, None)
    ids = config.stash.get(CELL_IDS, None) if resumed else _cell_ids(items)
    config.stash[CELL_IDS] = ids
    config.stash[PROGRESS] = {"done": len(resumed["benchmarks"]) if resumed else 0, "timed_seconds": 0.0, "timed": 0}
    if not ids or not _saving(config):
        return
    bs = _benchmark_session(config)
    commit = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit)
    machine = bs.get_machine_info()
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + hashlib.sha256(" ".join(ids).encode()).hexdigest()[:8]
    journal = Journal(Path(bs.storage.path), run_id)
    from importlib.metadata import version

    from quant_impl.session.plugin import run_configs
    from quant_impl.session.results import methods_metadata
    from quant_impl.schema import SCHEMA_VERSION

    cfgs = run_configs(config)
    journal.start({
        "cells": ids, "save": bs.save or None, "machine_id": bs.storage.default_machine_id,
        "machine_info": machine, "commit_info": commit, "pytest_benchmark_version": version("pytest-benchmark"),
        "quantbench": {"schema_version": SCHEMA_VERSION, "run_config": cfgs[0].to_dict(),
                       "methods": methods_metadata(cfgs[0])},
    })
    config.stash[JOURNAL] = journal
    for entry in resumed["benchmarks"] if resumed else []:  # killed again, the recovered run keeps these too
        journal.record(entry)


def record_cell(config: pytest.Config, benchmark: Any) -> None:
    """Journal one timed cell, as pytest-benchmark will save it (its stats without the raw calls)."""
    journal = config.stash.get(JOURNAL, None)
    if journal is None or benchmark.stats is None:
        return
    entry = benchmark.stats.as_dict(include_data=False, flat=False, stats=True)
    journal.record(entry)


def record_skip(config: pytest.Config, cell_id: str, reason: str) -> None:
    """A cell its method cannot run: not missing from the run, and not to time again."""
    config.stash.setdefault(SKIPPED, set()).add(cell_id)
    journal = config.stash.get(JOURNAL, None)
    if journal is not None:
        journal.skip(cell_id, reason)


def after_cell(item: pytest.Item, report: pytest.TestReport) -> None:
    progress(item.config, report)
    stopped = item.config.stash.get(INTERRUPTED, None)
    if stopped and report.when == "teardown":
        item.session.shouldstop = stopped


def progress(config: pytest.Config, report: pytest.TestReport) -> None:
    """One line after each cell: done of all, and the time left from the mean of the cells timed so far."""
    ids = config.stash.get(CELL_IDS, None)
    state = config.stash.get(PROGRESS, None)
    ended = report.when == "call" or (report.when == "setup" and not report.passed)
    if not ids or state is None or not ended:
        return
    state["done"] += 1
    if report.when == "call" and report.passed:
        state["timed"] += 1
        state["timed_seconds"] += report.duration
    done, total = state["done"], len(ids)
    if state["timed"]:
        left = state["timed_seconds"] / state["timed"] * (total - done)
        eta = f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left"
    else:
        eta = "no cell timed yet"
    _say(config, f"quantbench: {done}/{total} cells done, {eta} (from the {state['timed']} timed so far)")


def mark_partial(config: pytest.Config, output_json: dict[str, Any]) -> None:
    """Mark a saved run that lacks some of its cells: why, and which are missing."""
    ids = config.stash.get(CELL_IDS, None) or []
    done = {bench.get("param") for bench in output_json.get("benchmarks", [])}
    skipped = config.stash.get(SKIPPED, set())
    missing = [cell for cell in ids if cell not in done and cell not in skipped]
    if not missing:
        return
    reason = config.stash.get(INTERRUPTED, None) or "the run ended before every cell was timed (interrupted or failed)"
    output_json["quantbench"]["partial"] = {"reason": reason, "missing": missing, "cells": len(ids), "ids": ids}


def finish(config: pytest.Config) -> None:
    """After pytest-benchmark saved (or had nothing to save): close the journal."""
    journal = config.stash.get(JOURNAL, None)
    if journal is not None:
        journal.end(str(getattr(_benchmark_session(config), "json", None) or "saved"))


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line, file=sys.stderr)


def resume(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--quant-resume [RUN]``: keep only the cells the partial run lacks (its cells are merged into the saved
    run); refused with one line when the commit, machine, settings or cells differ from the partial run's."""
    asked = config.getoption("quant_resume", None)
    if not asked:
        return
    from quant_impl.history.machines import machine_differences
    from quant_impl.saved_run import read_json
    from quant_impl.session.plugin import run_configs

    bs = _benchmark_session(config)
    if bs is None or not hasattr(bs.storage, "path"):
        raise pytest.UsageError(f"{RESUME_OPTION} needs pytest-benchmark's file storage (--benchmark-storage)")
    path = _partial_run(Path(bs.storage.path), bs.storage.default_machine_id, asked)
    doc = read_json(path)
    partial = (doc.get("quantbench") or {}).get("partial") or {}
    ids = _cell_ids(items)
    commit = config.hook.pytest_benchmark_generate_commit_info(config=config) or {}
    saved_config = dict((doc.get("quantbench") or {}).get("run_config") or {})
    now_config = run_configs(config)[0].to_dict()
    for side in (saved_config, now_config):
        side.pop("cache_dir", None)  # where the cache is changes no measurement
    problem = None
    if (doc.get("commit_info") or {}).get("id") != commit.get("id"):
        problem = f"it was run at commit {(doc.get('commit_info') or {}).get('id')}, this checkout is {commit.get('id')}"
    elif differences := machine_differences(doc.get("machine_info") or {}, bs.get_machine_info()):
        problem = f"it was run on another machine ({differences[0]})"
    elif changed := sorted(k for k in set(saved_config) | set(now_config) if saved_config.get(k) != now_config.get(k)):
        key = changed[0]
        problem = f"its setting {key} was {saved_config.get(key)!r}, now {now_config.get(key)!r}"
    elif set(partial.get("ids") or []) != set(ids):
        extra, lost = sorted(set(ids) - set(partial.get("ids") or [])), sorted(set(partial.get("ids") or []) - set(ids))
        problem = "its cells differ: " + "; ".join(
            part for part in (f"now also {', '.join(extra[:3])}" if extra else "",
                              f"no longer {', '.join(lost[:3])}" if lost else "") if part)
    if problem:
        raise pytest.UsageError(f"{RESUME_OPTION} {path.name}: refused, {problem}; start a new run instead")
    done = {bench.get("param") for bench in doc.get("benchmarks", [])}
    keep = [item for item in items if not (hasattr(item, "callspec") and item.callspec.id in done)]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    config.stash[CELL_IDS] = ids
    config.stash[RESUMED] = {"path": str(path), "benchmarks": list(doc.get("benchmarks", []))}
    _say(config, f"quantbench: resuming {path.name}: {len(done)} of {len(ids)} cells kept, timing the "
                 f"{len(ids) - len(done)} it lacks")


def merge_resumed(config: pytest.Config, output_json: dict[str, Any]) -> None:
    """The partial run's cells beside the ones timed now (before the speedups, which use every cell's median)."""
    resumed = config.stash.get(RESUMED, None)
    if resumed is None:
        return
    timed = {bench.get("param") for bench in output_json["benchmarks"]}
    output_json["benchmarks"][:0] = [b for b in resumed["benchmarks"] if b.get("param") not in timed]


def resumed_from(config: pytest.Config) -> str | None:
    resumed = config.stash.get(RESUMED, None)
    return resumed["path"] if resumed else None


def _partial_run(root: Path, machine_id: str | None, asked: str) -> Path:
    """The partial run ``asked`` names (a file, or a name in the storage), or the newest of this machine."""
    from quant_impl.saved_run import read_json

    candidate = Path(asked)
    if asked != "latest" and candidate.is_file():
        return candidate
    folder = root / machine_id if machine_id else root
    runs = sorted(folder.glob("*.json"))
    if asked != "latest":
        runs = [run for run in runs if asked in run.name]
    partial = [run for run in runs if ((read_json(run).get("quantbench") or {}).get("partial"))]
    if not partial:
        which = "no partial run" if asked == "latest" else f"no partial run named like {asked!r}"
        raise pytest.UsageError(f"{RESUME_OPTION}: {which} in {folder}; pass the run's file")
    return partial[-1]
