"""The one reader of saved runs: a pytest-benchmark JSON file -> :class:`SavedRun` of :class:`SavedCell` (one per
profile, method, hardware, batch size and length), with a one-line error for anything that is not such a file.

``quantbench compare`` (``quant_impl.history``) and the report (``quant_impl.report``) both read runs through
this module, and only the run: the rules and facts of each method (threshold, section, precision, engine, the
seed's expectation) come from the ``quantbench`` table the bench saved with it. No torch import, so a checkout
without torch, or one that no longer knows a run's methods, still reads and renders it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from quant_impl.cells import DEFAULT_TASK, Cell, setup_key
from quant_impl.errors import QuantbenchError
from quant_impl.measure.cpu_class import cpu_class
from quant_impl.schema import EMBEDDING_FIELDS, FIELD_NAMES, KERNEL_FIELDS, KERNELS_RUN_FIELDS, LATENCY_FIELDS, LEGACY_METHODS_FILE, SCHEMA_VERSION, TASK_FIELDS

SAVE_HINT = "pytest bench --benchmark-save=NAME"
# What a run saved before tasks existed measured (its cells name no task).
IMDB_BEFORE_TASKS = {"name": "imdb", "kind": "classification", "labels": ["neg", "pos"], "primary_metric": "accuracy",
                     "metric_reason": "balanced classes (12,500 / 12,500)", "text_pair": False}
# pytest-benchmark's ``stats`` keys a cell's values hold beside the schema's (seconds, counts).
STATS_KEYS = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "rounds", "iterations", "ops", "total")


def number(value: Any) -> float | None:
    """A finite number, else None (bools, strings, NaN and a missing key are 'not measured')."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def integer(value: Any) -> int | None:
    found = number(value)
    return None if found is None else int(found)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class SavedCell:
    """One quantbench benchmark of a run: its key, its ``extra_info`` and ``stats`` as saved, and their numbers."""

    key: Cell
    name: str
    extra: Mapping[str, Any]
    stats: Mapping[str, Any]

    @cached_property
    def values(self) -> dict[str, float | None]:
        """Every schema field and stats key as a number (None when not measured). The two key sets never overlap."""
        out = {name: number(self.extra.get(name)) for name in FIELD_NAMES}
        out.update({key: number(self.stats.get(key)) for key in STATS_KEYS})
        return out

    def text(self, key: str) -> str | None:
        value = self.extra.get(key)
        return None if value is None else str(value)


@dataclass(frozen=True)
class SavedRun:
    """One saved pytest-benchmark file: its cells and what the bench saved beside them."""

    path: Path
    label: str
    machine_info: dict[str, Any]
    commit_info: dict[str, Any]
    datetime: str | None
    cells: dict[Cell, SavedCell]
    quantbench: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """The label with when and at which commit the run was saved."""
        parts = [self.label]
        if self.datetime:
            parts.append(str(self.datetime)[:19])
        commit = self.commit_info.get("id")
        if commit:
            dirty = "+dirty" if self.commit_info.get("dirty") else ""
            branch = f" ({self.commit_info['branch']})" if self.commit_info.get("branch") else ""
            parts.append(f"commit {str(commit)[:10]}{dirty}{branch}")
        return "  ".join(parts)

    @property
    def commit(self) -> str | None:
        commit = self.commit_info.get("id")
        return str(commit)[:10] if commit else None

    @property
    def profiles(self) -> list[str | None]:
        """The setups (profile = model, and task: ``quick``, ``quick/trec-6``) the run holds, in the order it ran
        them; ``[None]`` for a run that names none."""
        found: list[str | None] = []
        for key in self.cells:
            if key.setup not in found:
                found.append(key.setup)
        return found or [None]

    def cells_of(self, profile: str | None = None) -> list[SavedCell]:
        """The cells of one setup (all of them for None), in saved order."""
        return [cell for key, cell in self.cells.items() if profile is None or key.setup == profile]

    def table(self, profile: str | None = None) -> dict[str, Any]:
        """The bench's ``quantbench`` table of ``profile`` (its own under ``profiles``), else the run's."""
        own = _dict(self.quantbench.get("profiles")).get(profile) if profile is not None else None
        return own if isinstance(own, dict) else self.quantbench

    def run_config(self, profile: str | None = None) -> dict[str, Any]:
        return _dict(self.table(profile).get("run_config"))

    def baseline(self, profile: str | None = None) -> dict[str, Any] | None:
        baseline = self.table(profile).get("baseline")
        return baseline if isinstance(baseline, dict) else None

    def task(self, profile: str | None = None) -> dict[str, Any]:
        """The registration of the task a setup measured, as saved; runs from before tasks measured IMDB."""
        saved = _dict(self.table(profile).get("task"))
        return saved or dict(IMDB_BEFORE_TASKS)

    def skipped(self, profile: str | None = None) -> list[dict[str, Any]]:
        return [s for s in self.quantbench.get("skipped") or []
                if isinstance(s, dict) and (profile is None or s.get("profile") is None
                                            or setup_key(s.get("profile"), s.get("task")) == profile)]

    def methods(self, profile: str | None = None) -> dict[str, dict[str, Any]]:
        """Each method's registration as the run saved it (threshold, section, precision, engine, seed...).

        A method the run saved no registration for (runs from before the bench wrote them) gets the facts the
        registrations held then (``LEGACY_METHODS_FILE``, a frozen copy) with the run's own threshold overrides:
        never today's code, which may have changed or dropped the method.
        """
        saved = _dict(self.table(profile).get("methods")) or _dict(self.quantbench.get("methods"))
        overrides = _dict(self.run_config(profile).get("thresholds"))
        legacy = _legacy_methods()
        names = {key.method for key in self.cells if profile is None or key.setup == profile}
        out = {name: {**legacy[name], "threshold": overrides.get(name, legacy[name]["threshold"])}
               for name in sorted(names) if name in legacy}
        out.update({str(name): meta for name, meta in saved.items() if isinstance(meta, dict)})
        return out

    def missing_fields(self, profile: str | None = None) -> list[str]:
        """Schema fields some benchmark lacks (an older quantbench wrote the run): the report lists them."""
        cells = self.cells_of(profile)
        before_tasks = not any("task" in cell.extra for cell in cells)
        before_tails = not any("timed_calls" in cell.extra for cell in cells)
        before_embeddings = not any("embedding" in cell.extra for cell in cells)
        before_kernels = not any("kernel" in cell.extra for cell in cells)
        before_kernels_run = not any("kernels_run" in cell.extra for cell in cells)
        return sorted({name for cell in cells for name in FIELD_NAMES
                       if name not in cell.extra and not (before_tasks and name in TASK_FIELDS)
                       and not (before_tails and name in LATENCY_FIELDS)
                       and not (before_embeddings and name in EMBEDDING_FIELDS)
                       and not (before_kernels and name in KERNEL_FIELDS)
                       and not (before_kernels_run and name in KERNELS_RUN_FIELDS)})

    @property
    def partial(self) -> dict[str, Any] | None:
        """``{"reason", "missing": [cell ids], "cells"}`` when the run stopped before timing every cell, else None."""
        partial = self.quantbench.get("partial")
        return partial if isinstance(partial, dict) else None

    @property
    def machine(self) -> dict[str, Any]:
        """The machine, normalised: CPU model, ISA flags, versions, threads, GPU (from pytest-benchmark's
        machine_info and the bench's ``quantbench`` part of it)."""
        info = self.machine_info
        extra, cpu = _dict(info.get("quantbench")), _dict(info.get("cpu"))
        isa = extra.get("isa") or {flag: True for flag in cpu.get("flags", []) if isinstance(flag, str)}
        return {
            "node": info.get("node"),
            "cpu_model": cpu.get("brand_raw") or extra.get("cpu_model") or info.get("processor"),
            "cpu_count": extra.get("cpu_count") or cpu.get("count"),
            "threads": extra.get("threads"),
            "isa": isa,
            # Runs saved before the class was recorded get it from their flags.
            "cpu_class": extra.get("cpu_class") or cpu_class(isa),
            "torch_cpu_capability": extra.get("torch_cpu_capability"),
            "versions": extra.get("versions") or {},
            "gpu": extra.get("gpu"),
            "python": info.get("python_version"),
            "system": " ".join(str(info[k]) for k in ("system", "release") if info.get(k)),
            "machine_tag": extra.get("machine_tag"),
        }

    @property
    def machine_name(self) -> str:
        """Which machine the run was timed on, for grouping a report's runs: the ``--quant-machine-tag`` it was
        saved with (a CI matrix job names its runner kind), else its CPU model and GPU. Not the host name: CI
        runners get a new one every job, and a history of one runner kind must stay one history."""
        machine = self.machine
        if machine["machine_tag"]:
            return str(machine["machine_tag"])
        parts = [machine["cpu_model"], machine["gpu"]]
        return " + ".join(str(p) for p in parts if p) or "unknown machine"


def load_saved_run(path: Path, label: str | None = None) -> SavedRun:
    """Read one pytest-benchmark JSON file.

    Args:
        path: the file.
        label: how comparisons and reports name it (default: the path).

    Raises:
        QuantbenchError: the file cannot be read, is not JSON, or is not pytest-benchmark JSON.

    Example:
        >>> run = load_saved_run(Path("tests/data/benchmarks/Linux-CPython-3.11-64bit/0001_golden.json"))
        >>> sorted({key.method for key in run.cells})
        ['bf16', 'dynamic-int8', 'fp32', 'static-int8']
    """
    path = Path(path)
    doc = read_json(path)
    benchmarks, machine_info = checked_shape(doc, path)
    cells: dict[Cell, SavedCell] = {}
    foreign: list[str] = []
    notes: list[str] = []
    for index, bench in enumerate(benchmarks):
        if not isinstance(bench, dict):
            raise QuantbenchError(
                f"{path}: benchmark #{index} is not a JSON object; the file is damaged, save the run again"
            )
        name = str(bench.get("fullname") or bench.get("name") or f"#{index}")
        extra = bench.get("extra_info")
        if not isinstance(extra, dict) or not extra.get("method"):
            foreign.append(name)
            continue
        cell = SavedCell(_key(extra), name, extra, _dict(bench.get("stats")))
        if cell.key in cells:
            notes.append(f"{cell.key.label}: two benchmarks ({cells[cell.key].name}, {name}); kept the later one")
        cells[cell.key] = cell
        version = extra.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION and not any("newer" in n for n in notes):
            notes.append(f"written with extra_info schema {version}, newer than this quantbench's {SCHEMA_VERSION}")
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        notes.append(f"skipped {len(foreign)} benchmark(s) without quantbench extra_info: {shown}")
    partial = _dict(_dict(doc.get("quantbench")).get("partial"))
    if partial:
        missing = partial.get("missing") if isinstance(partial.get("missing"), list) else []
        notes.append(f"partial run ({partial.get('reason') or 'interrupted'}): {len(missing)} cell(s) missing")
    return SavedRun(
        path=path,
        label=label or str(path),
        machine_info=machine_info,
        commit_info=_dict(doc.get("commit_info")),
        datetime=doc.get("datetime") if isinstance(doc.get("datetime"), str) else None,
        cells=cells,
        quantbench=_dict(doc.get("quantbench")),
        notes=tuple(notes),
    )


def read_json(path: Path) -> Any:
    """A JSON file's content, or a QuantbenchError naming the file and what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QuantbenchError(f"{path}: no such file; pass an existing run file, run number or name") from None
    except IsADirectoryError:
        raise QuantbenchError(f"{path}: is a folder, not a run file; pass a NNNN_NAME.json file inside it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QuantbenchError(f"{path}: cannot read it ({exc}); check the file or compare other runs") from None
    if not text.strip():
        raise QuantbenchError(f"{path}: the file is empty (an interrupted save?); delete it or compare other runs")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise QuantbenchError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); the file is damaged "
            "(an interrupted save?): delete it or compare other runs"
        ) from None


def checked_shape(doc: Any, path: Path) -> tuple[list[Any], dict[str, Any]]:
    """The benchmarks and machine_info of a pytest-benchmark document, or a QuantbenchError saying what is off."""
    fix = f"pass a file written by `{SAVE_HINT}` or `pytest --benchmark-json=PATH`"
    if not isinstance(doc, dict):
        kind = type(doc).__name__
        raise QuantbenchError(f"{path}: not pytest-benchmark JSON (the top level is a {kind}, not an object); {fix}")
    problems = []
    if not isinstance(doc.get("benchmarks"), list):
        problems.append("no 'benchmarks' list")
    if not isinstance(doc.get("machine_info"), dict):
        problems.append("no 'machine_info' object")
    if problems:
        keys = ", ".join(sorted(map(str, doc))[:8]) or "none"
        raise QuantbenchError(f"{path}: not pytest-benchmark JSON ({' and '.join(problems)}; its keys: {keys}); {fix}")
    return doc["benchmarks"], doc["machine_info"]


def _key(extra: dict[str, Any]) -> Cell:
    def text(name: str) -> str | None:
        return None if extra.get(name) is None else str(extra[name])

    return Cell(method=str(extra["method"]), hardware=text("hardware"), batch_size=integer(extra.get("batch_size")),
                seq_len=integer(extra.get("seq_len")), profile=text("profile"), task=text("task") or DEFAULT_TASK)


_LEGACY: dict[str, dict[str, Any]] = {}


def _legacy_methods() -> dict[str, dict[str, Any]]:
    if not _LEGACY:
        _LEGACY.update(json.loads(LEGACY_METHODS_FILE.read_text(encoding="utf-8")))
    return _LEGACY
