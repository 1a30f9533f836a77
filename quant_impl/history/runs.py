"""Saved runs: read a pytest-benchmark JSON file into its quantbench cells (one per profile, method, hardware,
batch size and length), with a one-line error for anything that is not such a file."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from quant_impl.errors import QuantbenchError
from quant_impl.history.metrics import METRICS
from quant_impl.schema import SCHEMA_VERSION

SAVE_HINT = "pytest bench --benchmark-save=NAME"


class CellKey(NamedTuple):
    """What a benchmark measured: the same key in two runs is the same experiment."""

    method: str
    hardware: str | None
    batch_size: int | None
    seq_len: int | None
    profile: str | None = None  # the profile (model): cells of different models are never paired

    @property
    def label(self) -> str:
        batch, seq_len = _or_dash(self.batch_size), _or_dash(self.seq_len)
        return f"{self.method} {self.hardware or '?'} batch {batch} seq_len {seq_len}"

    @property
    def qualified_label(self) -> str:
        """The label with its profile, for comparisons that hold several models."""
        return f"{self.profile}: {self.label}" if self.profile else self.label


@dataclass(frozen=True)
class Cell:
    """One quantbench benchmark of a run: its metric values (None when not measured)."""

    key: CellKey
    name: str
    values: dict[str, float | None]


@dataclass(frozen=True)
class Run:
    """One saved pytest-benchmark file, reduced to what ``compare`` needs."""

    path: Path
    label: str
    machine_info: dict[str, Any]
    commit_info: dict[str, Any]
    datetime: str | None
    cells: dict[CellKey, Cell]
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


def load_run(path: Path, label: str | None = None) -> Run:
    """Read one pytest-benchmark JSON file.

    Args:
        path: the file.
        label: how reports name it (default: the path).

    Raises:
        QuantbenchError: the file cannot be read, is not JSON, or is not pytest-benchmark JSON.

    Example:
        >>> run = load_run(Path(".benchmarks/Linux-CPython-3.11-64bit/0001_golden.json"))
        >>> sorted({key.method for key in run.cells})
        ['bf16', 'dynamic-int8', 'fp32', 'static-int8']
    """
    doc = read_json(path)
    benchmarks, machine_info = checked_shape(doc, path)
    cells: dict[CellKey, Cell] = {}
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
        cell = _cell(name, extra, bench.get("stats"))
        if cell.key in cells:
            notes.append(f"{cell.key.label}: two benchmarks ({cells[cell.key].name}, {name}); kept the later one")
        cells[cell.key] = cell
        version = extra.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION and not any("newer" in n for n in notes):
            notes.append(f"written with extra_info schema {version}, newer than this quantbench's {SCHEMA_VERSION}")
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        notes.append(f"skipped {len(foreign)} benchmark(s) without quantbench extra_info: {shown}")
    commit_info = doc.get("commit_info")
    return Run(
        path=path,
        label=label or str(path),
        machine_info=machine_info,
        commit_info=commit_info if isinstance(commit_info, dict) else {},
        datetime=doc.get("datetime") if isinstance(doc.get("datetime"), str) else None,
        cells=cells,
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


def _cell(name: str, extra: dict[str, Any], stats: Any) -> Cell:
    key = CellKey(
        method=str(extra["method"]),
        hardware=None if extra.get("hardware") is None else str(extra["hardware"]),
        batch_size=_int_or_none(extra.get("batch_size")),
        seq_len=_int_or_none(extra.get("seq_len")),
        profile=None if extra.get("profile") is None else str(extra["profile"]),
    )
    stats = stats if isinstance(stats, dict) else {}
    values = {m.key: _number((stats if m.in_stats else extra).get(m.key)) for m in METRICS.values()}
    return Cell(key, name, values)


def _number(value: Any) -> float | None:
    """A finite number, else None (bools, strings, NaN and a missing key are 'not measured')."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int_or_none(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)

