"""Saved benchmark runs: load them, compare two per cell, and gate on rules (``quantbench compare``).

pytest-benchmark saves every ``pytest bench --benchmark-save=NAME`` run as
``<storage>/<machine_id>/NNNN_NAME.json`` (``machine_id`` as ``Linux-CPython-3.11-64bit``). quantbench's
benchmarks carry the keys of :data:`quant_impl.schema.EXTRA_INFO_FIELDS` in their ``extra_info``; a *cell*
is one (method, hardware, batch_size, seq_len) of a run. This module reads only those files, never live
objects, so it runs without torch.

Rules (``--fail-on METRIC:THRESHOLD``, or ``[tool.quantbench.compare] fail_on`` in pyproject.toml) follow
pytest-benchmark's ``--benchmark-compare-fail`` grammar: ``METRIC:N%`` gates the change relative to BASE,
``METRIC:X`` the absolute change. A rule only fails on a change for the worse (a drop of accuracy, F1,
speedup or throughput; a rise of latency, size or memory) strictly larger than its threshold.

Same machine: two runs count as coming from one machine when ``machine_info``'s ``node``, ``machine``,
``processor`` and ``cpu.brand_raw`` agree, and so do the keys both runs hold in a ``quantbench`` sub-dict
(its library ``versions`` excepted: software changes are what compare gates). A key only one run recorded
cannot tell machines apart and is not compared. Timing and memory depend on the machine, so rules on them
are skipped across machines unless forced; accuracy and size do not and always apply. Container hostnames
change per job: CI that benchmarks on one runner type should pin the hostname or pass
``--force-cross-machine``.

Example:
    >>> base, new = select_runs(Path(".benchmarks"), [])            # the two newest runs of this machine
    >>> result = compare_runs(load_run(base), load_run(new), parse_rules(["accuracy_drop:0.5"]))
    >>> print(format_comparison(result)); result.ok
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from quant_impl.config import _read_tool_table, find_pyproject
from quant_impl.errors import QuantbenchError
from quant_impl.schema import FIELDS, SCHEMA_VERSION

SAVE_HINT = "pytest bench --benchmark-save=NAME"
RULE_GRAMMAR = "METRIC:N% (change relative to BASE) or METRIC:X (absolute change), e.g. accuracy_drop:0.5 or median:10%"
# pytest-benchmark names saved runs NNNN_NAME.json; the number grows past 9999 with more digits.
_RUN_FILE = re.compile(r"^(?P<number>[0-9]{4,})_(?P<name>.*)\.json$")
# pytest-benchmark's parse_compare_fail grammar, with any metric name (checked against METRICS after) and
# decimal percentages allowed.
_RULE = re.compile(
    r"^(?P<metric>[A-Za-z_][A-Za-z0-9_]*):"
    r"(?:(?P<percentage>[0-9]*\.?[0-9]+)%|(?P<difference>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))$"
)
# machine_info keys that identify the hardware a run was timed on (see the module docstring).
_MACHINE_KEYS: tuple[tuple[str, ...], ...] = (("node",), ("machine",), ("processor",), ("cpu", "brand_raw"))
# Keys of the quantbench sub-dict that describe software, not the machine: a torch upgrade between runs is
# a change compare should gate, not a reason to skip the timing rules.
_SOFTWARE_KEYS = frozenset({"versions"})
# Worsenings are rounded to this many decimals before the threshold test: (0.883 - 0.878) * 100 is 0.5000000000000004
# points in floats, which must not break accuracy_drop:0.5.
_DECIMALS = 9


# ---------------------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metric:
    """One quantity a rule can gate and the report shows.

    ``key`` is an ``extra_info`` key, or a ``stats`` key (seconds) when ``in_stats``. ``points`` marks a
    fraction gated in percentage points, where only absolute rules make sense. ``machine_bound`` marks
    timing and memory, which are only comparable on one machine.
    """

    name: str
    key: str
    higher_is_better: bool
    machine_bound: bool
    in_stats: bool = False
    points: bool = False


def _better_up(key: str) -> bool:
    """The schema's direction of an extra_info key (the one place it is defined)."""
    direction = FIELDS[key].higher_is_better
    assert direction is not None, f"schema field {key} has no direction"
    return direction


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy_drop", "accuracy", _better_up("accuracy"), machine_bound=False, points=True),
        Metric("f1_drop", "f1", _better_up("f1"), machine_bound=False, points=True),
        # Latency comes from pytest-benchmark's stats, not the schema: lower is better.
        Metric("median", "median", False, machine_bound=True, in_stats=True),
        Metric("mean", "mean", False, machine_bound=True, in_stats=True),
        Metric("min", "min", False, machine_bound=True, in_stats=True),
        Metric("size", "size_bytes", _better_up("size_bytes"), machine_bound=False),
        Metric("peak_rss", "peak_rss_mb", _better_up("peak_rss_mb"), machine_bound=True),
        Metric("speedup", "speedup_vs_fp32", _better_up("speedup_vs_fp32"), machine_bound=True),
        Metric("throughput", "throughput_samples_per_s", _better_up("throughput_samples_per_s"), machine_bound=True),
    )
}
_BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS.values()}
# The report's columns: (value key, label).
_SHOWN: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("f1", "f1"),
    ("size_bytes", "size MB"),
    ("peak_rss_mb", "peak_rss MB"),
    ("median", "median ms"),
    ("speedup_vs_fp32", "speedup"),
)


def _value_text(key: str, value: float | None) -> str:
    """A value in the report's unit; a missing one is '-'."""
    if value is None:
        return "-"
    if key in ("accuracy", "f1"):
        return f"{value:.4f}"
    if key == "size_bytes":
        return f"{value / 1e6:.2f}"
    if key == "peak_rss_mb":
        return f"{value:.1f}"
    if _BY_KEY.get(key) is not None and _BY_KEY[key].in_stats:
        return f"{value * 1e3:.3f}"
    if key == "speedup_vs_fp32":
        return f"{value:.3f}x"
    return f"{value:.4g}"


def _amount_text(metric: Metric, amount: float) -> str:
    """An absolute change of ``metric`` in the unit of its absolute rules, with the report's unit beside."""
    if metric.in_stats:
        return f"{amount:.6f} s ({amount * 1e3:.3f} ms)"
    if metric.key == "size_bytes":
        return f"{amount:,.0f} bytes ({amount / 1e6:.2f} MB)"
    if metric.key == "peak_rss_mb":
        return f"{amount:.1f} MB"
    if metric.key == "speedup_vs_fp32":
        return f"{amount:.3f}x"
    return f"{amount:.4g}"


# The report's unit of a value key, quoted in failure messages.
_UNITS = {"size_bytes": " MB", "peak_rss_mb": " MB", "median": " ms", "mean": " ms", "min": " ms"}


# ----------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class _Check:
    """A parsed rule. ``fails(base, new)`` is None when NEW keeps to it, else why it does not."""

    metric: Metric
    threshold: float
    text: str  # the rule as the user wrote it, quoted back in messages

    def worsening(self, base: float, new: float) -> float:
        raise NotImplementedError

    def fails(self, base: float, new: float) -> str | None:
        """Why NEW breaks this rule against BASE, or None.

        Args:
            base: the metric's value in BASE (a fraction for accuracy/F1, seconds for latency, ...).
            new: its value in NEW.
        """
        worse = round(self.worsening(base, new), _DECIMALS)
        if worse <= self.threshold:
            return None
        return self._describe(base, new, worse)

    def _describe(self, base: float, new: float, worse: float) -> str:
        raise NotImplementedError

    def _change_verb(self) -> str:
        return "fell" if self.metric.higher_is_better else "rose"

    def _values(self, base: float, new: float) -> str:
        unit = _UNITS.get(self.metric.key, "")
        return f"{_value_text(self.metric.key, base)} -> {_value_text(self.metric.key, new)}{unit}"


@dataclass(frozen=True)
class PercentageCheck(_Check):
    """``METRIC:N%``: fails when NEW is more than N % of BASE worse (like pytest-benchmark's
    PercentageRegressionCheck, in the metric's own direction).

    Example:
        >>> PercentageCheck(METRICS["median"], 10.0, "median:10%").fails(0.010, 0.0115)
        'median rose by 15.0% (10.000 -> 11.500 ms), more than 10%'
    """

    def worsening(self, base: float, new: float) -> float:
        change = base - new if self.metric.higher_is_better else new - base
        if base == 0:
            # No relative change from zero: any worsening is infinitely large, none is none.
            return math.copysign(math.inf, change) if change else 0.0
        return change / abs(base) * 100

    def _describe(self, base: float, new: float, worse: float) -> str:
        return (
            f"{self.metric.key} {self._change_verb()} by {worse:.1f}% ({self._values(base, new)}), "
            f"more than {self.threshold:g}%"
        )


@dataclass(frozen=True)
class DifferenceCheck(_Check):
    """``METRIC:X``: fails when NEW is worse than BASE by more than X in the metric's rule unit:
    percentage points for accuracy/F1, seconds for latency, bytes for size, MB for peak_rss, x for speedup
    (like pytest-benchmark's DifferenceRegressionCheck).

    Example:
        >>> DifferenceCheck(METRICS["accuracy_drop"], 0.5, "accuracy_drop:0.5").fails(0.883, 0.833)
        'accuracy dropped 5.00 points (0.8830 -> 0.8330), more than 0.5'
    """

    def worsening(self, base: float, new: float) -> float:
        change = base - new if self.metric.higher_is_better else new - base
        return change * 100 if self.metric.points else change

    def _describe(self, base: float, new: float, worse: float) -> str:
        if self.metric.points:
            values = self._values(base, new)
            return f"{self.metric.key} dropped {worse:.2f} points ({values}), more than {self.threshold:g}"
        return (
            f"{self.metric.key} {self._change_verb()} by {_amount_text(self.metric, worse)} "
            f"({self._values(base, new)}), more than {self.threshold:g}"
        )


Check = PercentageCheck | DifferenceCheck


def parse_rule(text: str, source: str = "--fail-on") -> Check:
    """Parse one ``METRIC:THRESHOLD`` rule.

    Args:
        text: the rule, e.g. ``accuracy_drop:0.5`` (points), ``median:10%`` or ``min:0.002`` (seconds).
        source: where it came from, named in the error (a flag or a pyproject table).

    Example:
        >>> parse_rule("median:10%")
        PercentageCheck(metric=Metric(name='median', ...), threshold=10.0, text='median:10%')
    """
    if not isinstance(text, str):
        raise QuantbenchError(f"{source}: rule {text!r} is not a string; write {RULE_GRAMMAR}")
    match = _RULE.match(text.strip())
    if match is None:
        raise QuantbenchError(f"{source} {text!r}: cannot read this rule; write {RULE_GRAMMAR}")
    name = match["metric"]
    if name not in METRICS:
        raise QuantbenchError(f"{source} {text!r}: unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    metric = METRICS[name]
    if match["percentage"] is not None:
        if metric.points:
            raise QuantbenchError(
                f"{source} {text!r}: {name} is measured in percentage points, not relative to BASE; "
                f"write {name}:0.5 to allow a drop of half a point"
            )
        return PercentageCheck(metric, float(match["percentage"]), text.strip())
    return DifferenceCheck(metric, float(match["difference"]), text.strip())


def parse_rules(texts: Sequence[str], source: str = "--fail-on") -> list[Check]:
    """Parse every rule; the first bad one raises a QuantbenchError naming it and ``source``."""
    return [parse_rule(text, source) for text in texts]


def default_rules(pyproject: Path | None = None) -> tuple[list[str], str]:
    """The rules of ``[tool.quantbench.compare] fail_on`` and where they came from.

    Args:
        pyproject: the file to read; ``None`` searches the working directory and its parents.

    Example:
        >>> default_rules()  # with fail_on = ["accuracy_drop:0.5"] in ./pyproject.toml
        (['accuracy_drop:0.5'], '/repo/pyproject.toml [tool.quantbench.compare] fail_on')
    """
    path = pyproject if pyproject is not None else find_pyproject()
    if path is None:
        return [], ""
    table = _read_tool_table(path).get("compare", {})
    where = f"{path} [tool.quantbench.compare]"
    if not isinstance(table, dict):
        raise QuantbenchError(f"{where}: must be a table, e.g. fail_on = [\"accuracy_drop:0.5\"]")
    unknown = sorted(set(table) - {"fail_on", "fail-on"})
    if unknown:
        raise QuantbenchError(f"{where}: unknown setting(s) {', '.join(unknown)}; the only one is fail_on")
    rules = table.get("fail_on", table.get("fail-on", []))
    if not isinstance(rules, list) or not all(isinstance(rule, str) for rule in rules):
        raise QuantbenchError(
            f"{where}: fail_on must be a list of strings, e.g. [\"accuracy_drop:0.5\", \"median:10%\"]"
        )
    return list(rules), f"{where} fail_on"


# ------------------------------------------------------------------------------------------------ runs
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
    doc = _read_json(path)
    benchmarks, machine_info = _checked_shape(doc, path)
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


def _read_json(path: Path) -> Any:
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


def _checked_shape(doc: Any, path: Path) -> tuple[list[Any], dict[str, Any]]:
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


# ------------------------------------------------------------------------------------------- selection
def storage_path(storage: str) -> Path:
    """The folder of a ``--benchmark-storage`` value (a path or ``file://path``, as pytest-benchmark takes).

    Example:
        >>> storage_path("file://.benchmarks")
        PosixPath('.benchmarks')
    """
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    elif "://" in storage:
        raise QuantbenchError(
            f"--benchmark-storage {storage!r}: quantbench compare reads file storage only; "
            "pass a folder or file://FOLDER"
        )
    return Path(storage or ".").expanduser()


def machine_id() -> str:
    """This machine's storage folder name, exactly as pytest-benchmark computes it."""
    from pytest_benchmark.utils import get_machine_id  # pure-stdlib module; imported late to keep startup light

    return get_machine_id()


def saved_runs(folder: Path) -> list[Path]:
    """The ``NNNN_NAME.json`` runs of one machine folder, oldest first (an absent folder has none).

    A run file that is not complete JSON (pytest-benchmark writes it in place, so a run killed while saving
    leaves half a file) is left out with a warning, so "the newest run" is never a broken one.
    """
    if not folder.is_dir():
        return []
    runs = [p for p in folder.iterdir() if p.is_file() and _RUN_FILE.match(p.name) and _complete(p)]
    return sorted(runs, key=lambda p: (int(_RUN_FILE.match(p.name)["number"]), p.name))


def _complete(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
        return True
    logging.getLogger(__name__).warning("skipping %s: not a complete benchmark run (a save that was interrupted?); "
                                        "delete it", path)
    return False


def select_runs(storage: Path, selectors: Sequence[str], machine: str | None = None) -> tuple[Path, Path]:
    """Resolve ``quantbench compare [BASE] [NEW]`` to two files.

    Args:
        storage: the benchmark storage folder (pytest-benchmark's ``--benchmark-storage``).
        selectors: none (the two newest runs of ``machine``), one (that run against the newest) or two.
            Each is a JSON file path, a run number (``3`` or ``0003``), a run name (``NAME`` of
            ``NNNN_NAME.json``, the newest if several) or ``MACHINE_ID/NUMBER_OR_NAME`` for another folder.
        machine: the machine folder; default: this machine's id.

    Example:
        >>> select_runs(Path(".benchmarks"), ["1", "golden-lowered"])
        (PosixPath('.benchmarks/Linux-CPython-3.11-64bit/0001_golden.json'), PosixPath('...0002_golden-lowered.json'))
    """
    if len(selectors) > 2:
        raise QuantbenchError(f"compare takes at most two runs (BASE NEW), got {len(selectors)}: {' '.join(selectors)}")
    folder = storage / (machine or machine_id())
    if len(selectors) == 2:
        return _resolve(selectors[0], storage, folder), _resolve(selectors[1], storage, folder)
    runs = saved_runs(folder)
    if len(selectors) == 1:
        if not runs:
            raise QuantbenchError(
                f"no saved runs in {folder} to compare {selectors[0]!r} against; save one with `{SAVE_HINT}` "
                "or name both runs: quantbench compare BASE NEW"
            )
        return _resolve(selectors[0], storage, folder), runs[-1]
    if len(runs) < 2:
        raise QuantbenchError(
            f"quantbench compare needs two saved runs in {folder} (found {len(runs)}); save runs with "
            f"`{SAVE_HINT}`, or name the runs to compare: quantbench compare BASE NEW (run numbers, names or "
            "JSON files; --benchmark-storage DIR for another storage folder)"
        )
    return runs[-2], runs[-1]


def _resolve(selector: str, storage: Path, folder: Path) -> Path:
    candidate = Path(selector).expanduser()
    if candidate.is_file():
        return candidate
    if selector.endswith(".json"):
        under = storage / selector
        if under.is_file():
            return under
        raise QuantbenchError(
            f"{selector}: no such file; pass an existing run file, a run number (e.g. 0003) or a run name"
        )
    if candidate.is_dir():
        raise QuantbenchError(f"{selector}: is a folder; pass a run file in it, or use --benchmark-storage {selector}")
    if "/" in selector.strip("/"):
        machine, _, selector = selector.strip("/").rpartition("/")
        folder = storage / machine
    runs = saved_runs(folder)
    if selector.isdigit():
        wanted = int(selector)
        found = [p for p in runs if int(_RUN_FILE.match(p.name)["number"]) == wanted]
        what = f"no run {wanted:04d}"
    else:
        found = [p for p in runs if selector in (p.stem, _RUN_FILE.match(p.name)["name"])]
        what = f"no run named {selector!r}"
    if found:
        return found[-1]
    raise QuantbenchError(f"{what} in {folder}; {_available(runs, folder)}")


def _available(runs: list[Path], folder: Path) -> str:
    if not runs:
        return f"it holds no saved runs (save one with `{SAVE_HINT}`, or pass --benchmark-storage DIR or a JSON file)"
    names = [p.stem for p in runs]
    shown = ", ".join(names[-8:]) + (f" (and {len(names) - 8} older)" if len(names) > 8 else "")
    return f"saved runs there: {shown}"


# ---------------------------------------------------------------------------------------- machine check
def machine_differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """How two ``machine_info`` dicts differ in what identifies a machine (empty: the same machine).

    Compared: ``node``, ``machine``, ``processor``, ``cpu.brand_raw`` and the keys both hold in a
    ``quantbench`` sub-dict except its library ``versions``; a key only one side recorded is not evidence
    either way and is skipped.

    Example:
        >>> machine_differences({"node": "a"}, {"node": "b"})
        ["node: 'a' vs 'b'"]
    """
    paths = list(_MACHINE_KEYS)
    extra_base, extra_new = base.get("quantbench"), new.get("quantbench")
    if isinstance(extra_base, dict) and isinstance(extra_new, dict):
        paths += [("quantbench", key) for key in sorted((set(extra_base) & set(extra_new)) - _SOFTWARE_KEYS)]
    differences = []
    for path in paths:
        left, right = _dig(base, path), _dig(new, path)
        if left is not None and right is not None and left != right:
            differences.append(f"{'.'.join(path)}: {left!r} vs {right!r}")
    return differences


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


# ------------------------------------------------------------------------------------------ comparison
@dataclass(frozen=True)
class Failure:
    """One broken rule in one cell."""

    rule: str
    cell: CellKey
    message: str
    qualified: bool = False  # the comparison holds several profiles: name the cell's

    def __str__(self) -> str:
        label = self.cell.qualified_label if self.qualified else self.cell.label
        return f"{label}: {self.rule}: {self.message}"


@dataclass
class CellDelta:
    """A cell in BASE and/or NEW: ``status`` is ``both``, ``added`` (NEW only) or ``removed`` (BASE only)."""

    key: CellKey
    base: Cell | None
    new: Cell | None
    failed: dict[str, str] = field(default_factory=dict)  # value key -> rule text, for the report's marks

    @property
    def status(self) -> str:
        return "both" if self.base and self.new else ("added" if self.new else "removed")

    def pair(self, key: str) -> tuple[float | None, float | None]:
        return (
            self.base.values.get(key) if self.base else None,
            self.new.values.get(key) if self.new else None,
        )


@dataclass
class Comparison:
    """The result of :func:`compare_runs`; ``ok`` is False when a rule is broken."""

    base: Run
    new: Run
    rules: list[Check]
    rules_source: str
    machine_differences: list[str]
    forced: bool
    cells: list[CellDelta]
    failures: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def same_machine(self) -> bool:
        return not self.machine_differences

    @property
    def several_profiles(self) -> bool:
        """Cells of more than one profile (model): labels then name each cell's profile."""
        return len({cell.key.profile for cell in self.cells}) > 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (``quantbench compare --json``)."""
        return {
            "base": _run_dict(self.base),
            "new": _run_dict(self.new),
            "same_machine": self.same_machine,
            "machine_differences": self.machine_differences,
            "force_cross_machine": self.forced,
            "rules": [rule.text for rule in self.rules],
            "rules_source": self.rules_source,
            "cells": [_cell_dict(cell) for cell in self.cells],
            "failures": [{"rule": f.rule, "cell": f.cell._asdict(), "message": f.message} for f in self.failures],
            "skipped": self.skipped,
            "notes": self.notes,
            "ok": self.ok,
        }


def compare_runs(
    base: Run, new: Run, rules: Sequence[Check] = (), force_cross_machine: bool = False, rules_source: str = ""
) -> Comparison:
    """Pair the cells of two runs, compute deltas and apply the rules.

    Args:
        base: the reference run.
        new: the run under test.
        rules: parsed rules (:func:`parse_rules`); every broken one in every cell is collected.
        force_cross_machine: apply timing and memory rules even when the machines differ.
        rules_source: where the rules came from, for the report.

    Example:
        >>> result = compare_runs(load_run(a), load_run(b), parse_rules(["accuracy_drop:0.5"]))
        >>> [str(f) for f in result.failures]
        ['static-int8 cpu batch 1 seq_len 128: accuracy_drop:0.5: accuracy dropped 5.00 points (...), more than 0.5']
    """
    order = list(base.cells) + [key for key in new.cells if key not in base.cells]
    cells = [CellDelta(key, base.cells.get(key), new.cells.get(key)) for key in order]
    result = Comparison(
        base=base,
        new=new,
        rules=list(rules),
        rules_source=rules_source,
        machine_differences=machine_differences(base.machine_info, new.machine_info),
        forced=force_cross_machine,
        cells=cells,
    )
    result.notes += [f"BASE: {note}" for note in base.notes] + [f"NEW: {note}" for note in new.notes]
    if base.path.resolve() == new.path.resolve():
        result.notes.append(f"BASE and NEW are the same file ({base.label})")
    for run, role in ((base, "BASE"), (new, "NEW")):
        if not run.cells:
            result.notes.append(f"{role} ({run.label}) holds no quantbench benchmarks; nothing of it is compared")
    for rule in rules:
        _apply(rule, result)
    return result


def _apply(rule: Check, result: Comparison) -> None:
    if rule.metric.machine_bound and not result.same_machine and not result.forced:
        result.skipped.append(
            f"{rule.text}: not applied, BASE and NEW come from different machines and {rule.metric.key} depends on "
            "the machine; pass --force-cross-machine to apply it anyway"
        )
        return
    missing = []
    for cell in result.cells:
        if cell.status != "both":
            continue
        base, new = cell.pair(rule.metric.key)
        if base is None or new is None:
            missing.append(cell.key.qualified_label if result.several_profiles else cell.key.label)
            continue
        message = rule.fails(base, new)
        if message:
            result.failures.append(Failure(rule.text, cell.key, message, result.several_profiles))
            cell.failed.setdefault(rule.metric.key, rule.text)
    if missing:
        shown = "; ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        result.skipped.append(
            f"{rule.text}: not evaluated on {len(missing)} cell(s) where {rule.metric.key} was not measured: {shown}"
        )


def _run_dict(run: Run) -> dict[str, Any]:
    return {
        "path": str(run.path),
        "label": run.label,
        "datetime": run.datetime,
        "commit": run.commit_info.get("id"),
        "node": run.machine_info.get("node"),
    }


def _cell_dict(cell: CellDelta) -> dict[str, Any]:
    metrics = {}
    for metric in METRICS.values():
        if metric.key in metrics:
            continue
        base, new = cell.pair(metric.key)
        metrics[metric.key] = {"base": base, "new": new, "delta": _delta(base, new), "delta_pct": _delta_pct(base, new)}
    return {**cell.key._asdict(), "status": cell.status, "metrics": metrics, "failed": cell.failed}


def _delta(base: float | None, new: float | None) -> float | None:
    return None if base is None or new is None else new - base


def _delta_pct(base: float | None, new: float | None) -> float | None:
    return None if base is None or new is None or base == 0 else (new - base) / abs(base) * 100


# ------------------------------------------------------------------------------------------------ report
def format_comparison(result: Comparison) -> str:
    """The plain-text report: header, one block per cell, then notes, skipped rules and the verdict.

    Example:
        >>> print(format_comparison(result))
        BASE  Linux-CPython-3.11-64bit/0001_golden  2025-05-12T10:02:55  commit 3f9c2a1d8e (main)
        ...
    """
    lines = [f"BASE  {result.base.describe()}", f"NEW   {result.new.describe()}"]
    if result.same_machine:
        lines.append(f"machine: same ({_machine_text(result.base.machine_info)})")
    else:
        forced = ", timing and memory rules forced" if result.forced else ", timing and memory rules not applied"
        lines.append(f"machine: DIFFERENT ({'; '.join(result.machine_differences)}){forced}")
    rules = ", ".join(rule.text for rule in result.rules)
    lines.append(f"rules: {rules} (from {result.rules_source})" if rules else "rules: none")
    profile = None
    for cell in result.cells:
        if result.several_profiles and cell.key.profile != profile:
            profile = cell.key.profile
            lines += ["", f"== profile {profile or '?'} =="]
        lines.append("")
        lines += _cell_lines(cell)
    for title, items in (("notes", result.notes), ("rules not applied", result.skipped)):
        if items:
            lines += ["", f"{title}:"] + [f"  - {item}" for item in items]
    lines.append("")
    if result.failures:
        lines.append(f"FAILED: {len(result.failures)} rule violation(s)")
        lines += [f"  - {failure}" for failure in result.failures]
    elif result.rules:
        compared = sum(cell.status == "both" for cell in result.cells)
        lines.append(f"OK: no rule broken ({len(result.rules)} rule(s) on {compared} cell(s))")
    else:
        lines.append("OK: no rules to check (pass --fail-on METRIC:THRESHOLD or set [tool.quantbench.compare] fail_on)")
    return "\n".join(lines)


def _machine_text(info: dict[str, Any]) -> str:
    parts = [str(v) for v in (info.get("node"), _dig(info, ("cpu", "brand_raw"))) if v]
    return ", ".join(parts) or "no machine details recorded"


def _cell_lines(cell: CellDelta) -> list[str]:
    key = cell.key
    batch, seq_len = _or_dash(key.batch_size), _or_dash(key.seq_len)
    head = f"{key.method:<18} {key.hardware or '?':<8} batch {batch:<4} seq_len {seq_len}"
    if cell.status != "both":
        where = "added: only in NEW" if cell.status == "added" else "removed: only in BASE"
        return [f"{head}   ({where})"]
    lines = [head]
    for value_key, label in _SHOWN:
        base, new = cell.pair(value_key)
        before, after = _value_text(value_key, base), _value_text(value_key, new)
        text = f"  {label:<12} {before:>10} -> {after:<10} {_delta_text(value_key, base, new)}"
        if value_key in cell.failed:
            text += f"   << {cell.failed[value_key]}"
        lines.append(text.rstrip())
    return lines


def _delta_text(key: str, base: float | None, new: float | None) -> str:
    delta, pct = _delta(base, new), _delta_pct(base, new)
    if delta is None:
        return "(-)"
    if key in ("accuracy", "f1"):
        return f"({delta * 100:+.2f} pts)"
    scaled = {"size_bytes": delta / 1e6, "median": delta * 1e3}.get(key, delta)
    digits = {"size_bytes": 2, "peak_rss_mb": 1}.get(key, 3)
    relative = f", {pct:+.1f}%" if pct is not None else ""
    return f"({scaled:+.{digits}f}{relative})"


# ---------------------------------------------------------------------------------------------------- CLI
def add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to an argparse subparsers object; its ``handler`` returns the exit code.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.

    Example:
        >>> commands = parser.add_subparsers(dest="command")
        >>> add_compare_parser(commands)
        >>> args = parser.parse_args(["compare", "1", "2"]); args.handler(args)
        0
    """
    parser = subparsers.add_parser(
        "compare",
        help="compare two saved benchmark runs and fail on regressions",
        description=(
            "Print, per method x hardware x batch x seq_len cell, how accuracy, F1, size, peak memory, median "
            "latency and speedup changed from BASE to NEW, and exit 1 when a --fail-on rule is broken (2 on "
            "bad input). Runs are pytest-benchmark files saved by `pytest bench --benchmark-save=NAME`."
        ),
        epilog=(
            "Rules: METRIC:N% gates the change relative to BASE, METRIC:X the absolute change; only changes for "
            f"the worse count. Metrics: {', '.join(METRICS)}. accuracy_drop and f1_drop are in percentage points "
            "(absolute only); median, mean and min in seconds; size in bytes; peak_rss in MB; speedup in x. "
            "Timing and memory rules (median, mean, min, peak_rss, speedup, throughput) are not applied to runs "
            "from different machines (node, machine, processor or CPU differ) unless --force-cross-machine."
        ),
    )
    parser.add_argument(
        "base",
        nargs="?",
        metavar="BASE",
        help="the reference run: a JSON file, a run number (3 or 0003), a run name (NAME of NNNN_NAME.json) or "
        "MACHINE_ID/NUMBER_OR_NAME; default: the second newest run of this machine",
    )
    parser.add_argument(
        "new", nargs="?", metavar="NEW", help="the run under test, given the same ways; default: the newest run"
    )
    parser.add_argument(
        "--benchmark-storage",
        default=".benchmarks",
        metavar="DIR",
        help="pytest-benchmark storage folder, a path or file://path (default: .benchmarks)",
    )
    parser.add_argument(
        "--fail-on",
        action="append",
        default=None,
        metavar="METRIC:THRESHOLD",
        help="exit 1 when NEW is worse than BASE by more than THRESHOLD, e.g. accuracy_drop:0.5, median:10%%, "
        "size:5%%, peak_rss:10%%; repeatable; replaces pyproject's [tool.quantbench.compare] fail_on",
    )
    parser.add_argument(
        "--no-default-rules", action="store_true", help="ignore [tool.quantbench.compare] fail_on in pyproject.toml"
    )
    parser.add_argument(
        "--force-cross-machine",
        action="store_true",
        help="apply timing and memory rules even when BASE and NEW come from different machines",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the comparison as one JSON object on the last line of stdout"
    )
    parser.set_defaults(handler=_cmd_compare)
    return parser


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.fail_on is not None:
        texts, source = args.fail_on, "--fail-on"
    elif args.no_default_rules:
        texts, source = [], ""
    else:
        texts, source = default_rules()
    rules = parse_rules(texts, source)  # before loading runs: a typo in a rule is cheaper to report first
    storage = storage_path(args.benchmark_storage)
    base_path, new_path = select_runs(storage, [run for run in (args.base, args.new) if run])
    result = compare_runs(
        load_run(base_path, _label(base_path, storage)),
        load_run(new_path, _label(new_path, storage)),
        rules,
        force_cross_machine=args.force_cross_machine,
        rules_source=source,
    )
    if not result.same_machine:
        what = (
            "--force-cross-machine: timing and memory rules are applied anyway"
            if args.force_cross_machine
            else "timing and memory rules are not applied (accuracy and size rules are); pass --force-cross-machine "
            "to apply them"
        )
        print(
            f"quantbench: warning: BASE and NEW come from different machines "
            f"({'; '.join(result.machine_differences)}); {what}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    else:
        print(format_comparison(result))
    return 0 if result.ok else 1


def _label(path: Path, storage: Path) -> str:
    """A run's short name: its path under the storage folder without .json, else the path as given."""
    try:
        return str(path.resolve().relative_to(storage.resolve()).with_suffix(""))
    except ValueError:
        return str(path)


def main_compare(argv: Sequence[str] | None = None) -> int:
    """Run ``quantbench compare`` with ``argv`` (the arguments after ``compare``) and return the exit code.

    Bad input prints ``quantbench: error: <message>`` and returns 2, as ``quantbench`` itself does.

    Example:
        >>> main_compare(["--benchmark-storage", "tests/data/benchmarks", "Linux-CPython-3.11-64bit/1",
        ...               "Linux-CPython-3.11-64bit/1", "--fail-on", "accuracy_drop:0.5"])
        0
    """
    parser = argparse.ArgumentParser(prog="quantbench")
    add_compare_parser(parser.add_subparsers(dest="command", required=True))
    try:
        args = parser.parse_args(["compare", *(sys.argv[1:] if argv is None else argv)])
        return int(args.handler(args))
    except SystemExit as exc:  # argparse's own usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    except QuantbenchError as exc:
        print(f"quantbench: error: {exc}", file=sys.stderr)
        return 2
