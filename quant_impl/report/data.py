"""Saved pytest-benchmark runs -> the plain values the report templates show (no formatting, no words).

Everything here is read from the JSON the bench wrote (``quant_impl.schema``); a field a run lacks is ``None``
and the templates print a dash. Words live in ``reports_templates/``; this module only decides numbers and
facts (which method is best at what, which met its threshold, how the seed's expectations compare).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from quant_impl.config import DEFAULT_THRESHOLDS
from quant_impl.errors import QuantbenchError
from quant_impl.schema import FIELD_NAMES
from quant_impl.history import _checked_shape, _read_json, compare_runs, load_run, parse_rules

# The seed report's chapter 4 layout: each method goes under its section; unknown methods go to 4.5
# ("and beyond"). Section numbers stay fixed so the report mirrors the seed whatever a run holds.
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("4.2", "dynamic", ("dynamic-int8",)),
    ("4.3", "static", ("static-int8",)),
    ("4.4", "qat", ("qat-int8",)),
    ("4.5", "half_mixed", ("fp16", "bf16", "mixed-int8-bf16", "mixed-int8-fp16", "int4-weight-only", "fp32-compiled")),
)
REFERENCE = "fp32"

# The seed report's expectations (../shared/REFERENCES.md, BERT-base on IMDB, 128 tokens): compression,
# accuracy loss (points) and speedup, as (low, high) ranges; None where the seed gives no figure.
SEED_EXPECTATIONS: dict[str, dict[str, Any]] = {
    "dynamic-int8": {"row": "dynamic INT8", "compression": (3.5, 4.0), "loss": (0.0, 0.5), "speedup": (1.5, 1.6)},
    "static-int8": {"row": "static INT8", "compression": (3.5, 4.0), "loss": (0.5, 0.9), "speedup": (2.0, None)},
    "qat-int8": {"row": "QAT INT8", "compression": (3.5, 4.0), "loss": (0.0, 0.3), "speedup": (1.8, 2.2)},
    "fp16": {"row": "FP16", "compression": (1.9, 2.0), "loss": (0.0, 0.1), "speedup": (1.2, 1.3)},
    "bf16": {"row": "FP16", "compression": (1.9, 2.0), "loss": (0.0, 0.1), "speedup": (1.2, 1.3)},
    "mixed-int8-bf16": {"row": "mixed INT8 + FP16", "compression": (2.0, 4.0), "loss": (0.0, 0.7), "speedup": (1.2, 2.0)},
    "mixed-int8-fp16": {"row": "mixed INT8 + FP16", "compression": (2.0, 4.0), "loss": (0.0, 0.7), "speedup": (1.2, 2.0)},
}

# The radar chart's composite score (the report states it): four axes in [0, 1], averaged, times 100.
ACCURACY_SCALE_PTS = 2.0  # a drop this large (or more) scores 0 on the accuracy axis
COMPOSITE_AXES = ("accuracy", "speed", "compression", "memory")


@dataclass
class Row:
    """One benchmark (a method in one cell) with the figures the tables show."""

    method: str
    hardware: str
    batch_size: int | None
    seq_len: int | None
    threads: int | None
    median_ms: float | None
    iqr_ms: float | None
    rounds: int | None
    throughput: float | None
    speedup: float | None
    speedup_reference: str | None
    speedup_compiled: float | None

    @property
    def cell(self) -> tuple[str, int | None, int | None]:
        return (self.hardware, self.batch_size, self.seq_len)


@dataclass
class MethodResult:
    """A method's cell-independent figures (accuracy, size, memory, build) and its per-cell rows."""

    name: str
    section: str
    settings: dict[str, Any]
    accuracy: float | None
    accuracy_ci95: tuple[float, float] | None
    f1: float | None
    drop_pts: float | None
    agreement: float | None
    mcnemar_p: float | None
    eval_examples: int | None
    size_bytes: float | None
    size_note: str | None
    compression: float | None
    peak_rss_mb: float | None
    build_seconds: float | None
    threshold: float | None
    rows: list[Row] = field(default_factory=list)
    primary: Row | None = None
    scores: dict[str, float] = field(default_factory=dict)
    composite: float | None = None
    pareto: bool = False

    @property
    def passed(self) -> bool | None:
        """True/False against its accuracy threshold; None when there is no threshold or no drop."""
        if self.name == REFERENCE or self.threshold is None or self.drop_pts is None:
            return None
        return self.drop_pts <= self.threshold

    @property
    def size_mb(self) -> float | None:
        return None if self.size_bytes is None else self.size_bytes / 1e6

    @property
    def settings_flat(self) -> list[tuple[str, str]]:
        """``key: value`` pairs of the settings, nested dicts flattened with dots (the config's ``_data``)."""
        return _flatten(self.settings)


@dataclass
class ReportRun:
    """One saved run, reduced to what the report shows."""

    path: Path
    label: str
    datetime: str | None
    commit: str | None
    machine: dict[str, Any]
    run_config: dict[str, Any]
    baseline: dict[str, Any] | None
    skipped: list[dict[str, Any]]
    methods: list[MethodResult]
    cells: list[tuple[str, int | None, int | None]]
    primary_cell: tuple[str, int | None, int | None] | None
    missing: list[str]

    def method(self, name: str) -> MethodResult | None:
        return next((m for m in self.methods if m.name == name), None)

    @property
    def reference(self) -> MethodResult | None:
        return self.method(REFERENCE)

    @property
    def setup(self) -> dict[str, Any]:
        """The baseline's setup: the run's baseline summary, else its RunConfig; None where neither says."""
        baseline, config = self.baseline or {}, self.run_config
        keys = ("model", "dataset", "profile", "max_length", "truncation", "epochs")
        out: dict[str, Any] = {key: baseline.get(key, config.get(key)) for key in keys}
        for key in ("split_sizes", "train_seconds", "train_examples", "checkpoint"):
            out[key] = baseline.get(key)
        if out["checkpoint"]:
            out["checkpoint"] = Path(str(out["checkpoint"])).name
        return out

    def in_section(self, section: str) -> list[MethodResult]:
        return [m for m in self.methods if m.section == section]


def load_report_run(path: Path, label: str | None = None) -> ReportRun:
    """Read a saved run for the report; a file that is not quantbench JSON gets a QuantbenchError."""
    doc = _read_json(path)
    benchmarks, machine_info = _checked_shape(doc, path)
    quantbench = doc.get("quantbench") if isinstance(doc.get("quantbench"), dict) else {}
    run_config = quantbench.get("run_config") if isinstance(quantbench.get("run_config"), dict) else {}
    thresholds = {**DEFAULT_THRESHOLDS, **(run_config.get("thresholds") or {})}
    by_method: dict[str, list[dict[str, Any]]] = {}
    for bench in benchmarks:
        extra = bench.get("extra_info") if isinstance(bench, dict) else None
        if isinstance(extra, dict) and extra.get("method"):
            by_method.setdefault(str(extra["method"]), []).append(bench)
    if not by_method:
        raise QuantbenchError(
            f"{path}: holds no quantbench benchmarks (no extra_info with a method); pass a run saved by "
            "`pytest bench --benchmark-save=NAME`"
        )
    # Schema fields some benchmark lacks (an older quantbench wrote the run): shown as dashes and listed.
    missing = {name for benches in by_method.values() for b in benches for name in FIELD_NAMES
               if name not in b["extra_info"]}
    methods = [_method(name, benches, thresholds.get(name)) for name, benches in by_method.items()]
    methods.sort(key=lambda m: (m.name != REFERENCE, _order(m.name)))
    cells = sorted({row.cell for m in methods for row in m.rows}, key=_cell_order)
    primary = _primary_cell(cells)
    for m in methods:
        m.primary = next((r for r in m.rows if r.cell == primary), None)
    _score(methods)
    _mark_pareto(methods)
    commit = doc.get("commit_info", {}).get("id") if isinstance(doc.get("commit_info"), dict) else None
    return ReportRun(
        path=path,
        label=label or path.stem,
        datetime=doc.get("datetime") if isinstance(doc.get("datetime"), str) else None,
        commit=str(commit)[:10] if commit else None,
        machine=_machine(machine_info),
        run_config=run_config,
        baseline=quantbench.get("baseline") if isinstance(quantbench.get("baseline"), dict) else None,
        skipped=[s for s in quantbench.get("skipped") or [] if isinstance(s, dict)],
        methods=methods,
        cells=cells,
        primary_cell=primary,
        missing=sorted(missing),
    )


def _method(name: str, benches: list[dict[str, Any]], threshold: float | None) -> MethodResult:
    # Accuracy, size and memory are per method (one evaluation, one build): take them from its first cell.
    first = benches[0]["extra_info"]
    get = first.get

    ci = get("accuracy_ci95")
    sections = [number for number, _key, names in SECTIONS if name in names]
    result = MethodResult(
        name=name,
        section=sections[0] if sections else ("4.1" if name == REFERENCE else "4.5"),
        settings=get("method_settings") if isinstance(first.get("method_settings"), dict) else {},
        accuracy=_num(get("accuracy")),
        accuracy_ci95=(float(ci[0]), float(ci[1])) if isinstance(ci, list) and len(ci) == 2 else None,
        f1=_num(get("f1")),
        drop_pts=_num(get("accuracy_drop_pts")),
        agreement=_num(get("agreement_with_fp32")),
        mcnemar_p=_num(get("mcnemar_p")),
        eval_examples=_int(get("eval_examples")),
        size_bytes=_num(get("size_bytes")),
        size_note=first.get("size_note"),
        compression=_num(get("compression_ratio")),
        peak_rss_mb=_num(get("peak_rss_mb")),
        build_seconds=_num(get("build_seconds")),
        threshold=threshold,
    )
    for bench in benches:
        extra, stats = bench["extra_info"], bench.get("stats") or {}
        median = _num(stats.get("median"))
        iqr = _num(stats.get("iqr"))
        result.rows.append(Row(
            method=name,
            hardware=str(extra.get("hardware") or "?"),
            batch_size=_int(extra.get("batch_size")),
            seq_len=_int(extra.get("seq_len")),
            threads=_int(extra.get("threads")),
            median_ms=None if median is None else 1000 * median,
            iqr_ms=None if iqr is None else 1000 * iqr,
            rounds=_int(stats.get("rounds")),
            throughput=_num(extra.get("throughput_samples_per_s")),
            speedup=_num(extra.get("speedup_vs_fp32")),
            speedup_reference=extra.get("speedup_reference"),
            speedup_compiled=_num(extra.get("speedup_vs_fp32_compiled")),
        ))
    result.rows.sort(key=lambda r: _cell_order(r.cell))
    return result


def _primary_cell(cells: list[tuple[str, int | None, int | None]]) -> tuple[str, int | None, int | None] | None:
    """The cell the summary tables and charts use: all-core CPU (else the first hardware), largest batch and length."""
    if not cells:
        return None
    hardware = "cpu" if any(c[0] == "cpu" for c in cells) else cells[0][0]
    own = [c for c in cells if c[0] == hardware]
    return max(own, key=lambda c: (c[1] or 0, c[2] or 0))


def _score(methods: list[MethodResult]) -> None:
    """The composite score's axes (stated in the report): accuracy = 1 - drop / 2 points (clipped to [0, 1]);
    speed, compression = the method's speedup / compression over the best of the run; memory = the lowest peak
    RSS of the run over the method's. Composite = 100 x the mean of the four. Methods lacking a figure get none."""
    speed = [m.primary.speedup for m in methods if m.primary and m.primary.speedup]
    compression = [m.compression for m in methods if m.compression]
    memory = [m.peak_rss_mb for m in methods if m.peak_rss_mb]
    for m in methods:
        axes = {
            "accuracy": None if m.drop_pts is None else min(1.0, max(0.0, 1 - max(m.drop_pts, 0.0) / ACCURACY_SCALE_PTS)),
            "speed": m.primary.speedup / max(speed) if m.primary and m.primary.speedup and speed else None,
            "compression": m.compression / max(compression) if m.compression and compression else None,
            "memory": min(memory) / m.peak_rss_mb if m.peak_rss_mb and memory else None,
        }
        if all(v is not None for v in axes.values()):
            m.scores = {k: float(v) for k, v in axes.items()}
            m.composite = 100 * sum(m.scores.values()) / len(m.scores)


def _mark_pareto(methods: list[MethodResult]) -> None:
    """Accuracy (higher) vs primary-cell latency (lower): a method is on the front if none beats it on both."""
    points = [(m, m.accuracy, m.primary.median_ms) for m in methods
              if m.accuracy is not None and m.primary and m.primary.median_ms is not None]
    for m, acc, lat in points:
        m.pareto = not any(
            (a >= acc and t <= lat) and (a > acc or t < lat) for other, a, t in points if other is not m
        )


# --------------------------------------------------------------------------------------------- facts
@dataclass
class Report:
    """What the templates render: the newest run in full, the others as history."""

    run: ReportRun
    runs: list[ReportRun]
    best: dict[str, tuple[str, float] | None]
    expectations: list[dict[str, Any]]
    history: dict[str, Any] | None
    generated_by: str

    @property
    def sections(self) -> list[tuple[str, str, list[MethodResult]]]:
        return [(number, key, self.run.in_section(number)) for number, key, _names in SECTIONS]


def build_report(paths: Sequence[Path], labels: Sequence[str] | None = None, rules: Sequence[str] = ()) -> Report:
    """Load runs (oldest first; the last is reported in full) and derive the report's facts.

    ``rules`` are ``quantbench compare`` rules (``accuracy_drop:0.5``) used to flag regressions in the history.
    """
    if not paths:
        raise QuantbenchError("no runs to report; save one with `pytest bench --benchmark-save=NAME`")
    labels = list(labels) if labels else [p.stem for p in paths]
    runs = [load_report_run(Path(p), label) for p, label in zip(paths, labels)]
    run = runs[-1]
    from quant_impl import __version__

    return Report(
        run=run,
        runs=runs,
        best=_best(run),
        expectations=_expectations(run),
        history=_history(paths, labels, runs, rules) if len(runs) > 1 else None,
        generated_by=f"quantbench {__version__}",
    )


def _best(run: ReportRun) -> dict[str, tuple[str, float] | None]:
    """The best method per criterion (quantized methods only: FP32 is the yardstick)."""
    candidates = [m for m in run.methods if m.name != REFERENCE]

    def pick(value: Any, higher: bool) -> tuple[str, float] | None:
        scored = [(m.name, value(m)) for m in candidates if value(m) is not None]
        if not scored:
            return None
        return max(scored, key=lambda x: x[1]) if higher else min(scored, key=lambda x: x[1])

    return {
        "accuracy": pick(lambda m: m.accuracy, True),
        "speed": pick(lambda m: m.primary.speedup if m.primary else None, True),
        "compression": pick(lambda m: m.compression, True),
        "memory": pick(lambda m: m.peak_rss_mb, False),
        "composite": pick(lambda m: m.composite, True),
    }


def _expectations(run: ReportRun) -> list[dict[str, Any]]:
    """Seed expectation beside the measurement, per method the seed covers, with the reasons they differ."""
    isa = run.machine.get("isa") or {}
    rows = []
    for m in run.methods:
        seed = SEED_EXPECTATIONS.get(m.name)
        if seed is None:
            continue
        speedup = m.primary.speedup if m.primary else None
        verdicts = {
            "compression": _within(m.compression, seed["compression"]),
            "loss": _within(None if m.drop_pts is None else max(m.drop_pts, 0.0), seed["loss"], lower_ok=True),
            "speedup": _within(speedup, seed["speedup"]),
        }
        reasons = []
        embedding = (m.settings or {}).get("word_embeddings")
        if verdicts["compression"] == "below" and embedding == "fp32":
            reasons.append("embedding_fp32")
        if m.name == "fp16" and verdicts["speedup"] == "below" and not isa.get("avx512_fp16") and not isa.get("amx_fp16"):
            reasons.append("no_fp16_math")
        if m.name == "bf16" and isa.get("avx512_bf16"):
            reasons.append("bf16_native")
        if m.name in ("static-int8", "qat-int8", "dynamic-int8") and verdicts["speedup"] == "above" and isa.get("avx512_vnni"):
            reasons.append("vnni_int8")
        if verdicts["loss"] == "above":
            reasons.append("loss_above")
        if run.run_config.get("model") not in (None, "bert-base-uncased"):
            reasons.append("different_model")
        rows.append({"method": m.name, "seed": seed, "measured": {"compression": m.compression,
                     "loss": m.drop_pts, "speedup": speedup}, "verdicts": verdicts, "reasons": reasons})
    return rows


def _within(value: float | None, bounds: tuple[float | None, float | None], lower_ok: bool = False) -> str | None:
    """``below`` / ``within`` / ``above`` the seed's range (None: nothing to compare)."""
    if value is None:
        return None
    low, high = bounds
    if low is not None and value < low:
        return "within" if lower_ok else "below"
    if high is not None and value > high:
        return "above"
    return "within"


def _history(paths: Sequence[Path], labels: Sequence[str], runs: list[ReportRun], rules: Sequence[str]) -> dict[str, Any]:
    """Per method and run: accuracy, size, memory, and latency at the newest run's main cell; regressions from the compare rules
    applied between consecutive runs (timing and memory rules only within one machine, as compare does)."""
    checks = parse_rules(rules, "[tool.quantbench.compare] fail_on")
    compared = [load_run(Path(p), label) for p, label in zip(paths, labels)]
    regressions: dict[tuple[int, str], list[str]] = {}
    for index in range(1, len(compared)):
        result = compare_runs(compared[index - 1], compared[index], checks)
        for failure in result.failures:
            regressions.setdefault((index, failure.cell.method), []).append(f"{failure.cell.label}: {failure.message}")
    names: list[str] = []
    for run in runs:
        names += [m.name for m in run.methods if m.name not in names]
    # Timings of every run at one cell, the newest run's main cell: a trend across batch sizes means nothing.
    cell = runs[-1].primary_cell
    table = []
    for name in names:
        points = []
        for index, run in enumerate(runs):
            m = run.method(name)
            row = None if m is None else next((r for r in m.rows if r.cell == cell), None)
            points.append(None if m is None else {
                "accuracy": m.accuracy, "median_ms": row.median_ms if row else None,
                "size_mb": m.size_mb, "peak_rss_mb": m.peak_rss_mb,
                "speedup": row.speedup if row else None,
                "regressions": regressions.get((index, name), []),
            })
        table.append({"method": name, "points": points})
    return {"labels": [r.label for r in runs], "rules": list(rules), "methods": table, "cell": cell,
            "regression_count": sum(len(v) for v in regressions.values())}


# ------------------------------------------------------------------------------------------- helpers
def _machine(info: dict[str, Any]) -> dict[str, Any]:
    extra = info.get("quantbench") if isinstance(info.get("quantbench"), dict) else {}
    cpu = info.get("cpu") if isinstance(info.get("cpu"), dict) else {}
    return {
        "node": info.get("node"),
        "cpu_model": cpu.get("brand_raw") or extra.get("cpu_model") or info.get("processor"),
        "cpu_count": extra.get("cpu_count") or cpu.get("count"),
        "threads": extra.get("threads"),
        "isa": extra.get("isa") or {flag: True for flag in cpu.get("flags", []) if isinstance(flag, str)},
        "torch_cpu_capability": extra.get("torch_cpu_capability"),
        "versions": extra.get("versions") or {},
        "gpu": extra.get("gpu"),
        "python": info.get("python_version"),
        "system": " ".join(str(info[k]) for k in ("system", "release") if info.get(k)),
    }


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        out: list[tuple[str, str]] = []
        for key, value in data.items():
            if key in ("_type", "_version") and prefix.endswith("config"):
                continue
            name = f"{prefix}.{key}" if prefix else str(key)
            name = name.replace("config._data.", "config.")
            out += _flatten(value, name)
        return out
    if isinstance(data, (list, tuple)):
        return [(prefix, ", ".join(str(v) for v in data))]
    return [(prefix, str(data))]


def _order(name: str) -> int:
    flat = [n for _number, _key, names in SECTIONS for n in names]
    return flat.index(name) if name in flat else len(flat)


def _cell_order(cell: tuple[str, int | None, int | None]) -> tuple[int, str, int, int]:
    hardware = cell[0]
    rank = 0 if hardware == "cpu" else 1 if hardware.startswith("cpu") else 2
    return (rank, hardware, cell[1] or 0, cell[2] or 0)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)
