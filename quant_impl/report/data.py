"""Saved pytest-benchmark runs -> the plain values the report templates show (no formatting, no words).

Everything here is read from the JSON the bench wrote (``quant_impl.schema``); a field a run lacks is ``None``
and the templates print a dash. Words live in ``reports_templates/``; this module only decides numbers and
facts (which method is best at what, which met its threshold, how the seed's expectations compare).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from quant_impl.cells import Cell
from quant_impl.errors import QuantbenchError
from quant_impl.history import compare_runs, parse_rules
from quant_impl.measure.stats import paired_drop_interval
from quant_impl.saved_run import SavedCell, SavedRun, integer as _int, load_saved_run, number as _num
from quant_impl.schema import REFERENCE, SECTIONS, kernel_fact

ALPHA = 0.05  # significance level of the paired (McNemar) test that lets the report call an accuracy different

# The radar chart's composite score (the report states it): four axes in [0, 1], averaged, times 100.
ACCURACY_SCALE_PTS = 2.0  # a drop this large (or more) scores 0 on the accuracy axis
COMPOSITE_AXES = ("accuracy", "speed", "compression", "memory")


@dataclass
class Row:
    """One benchmark (a method in one cell) with the figures the tables show."""

    key: Cell
    threads: int | None
    median_ms: float | None
    iqr_ms: float | None
    rounds: int | None
    throughput: float | None
    speedup: float | None
    speedup_reference: str | None
    speedup_compiled: float | None
    p90_ms: float | None = None  # None: fewer calls than the percentile needs, or a run saved before tails
    p99_ms: float | None = None

    @property
    def method(self) -> str:
        return self.key.method

    @property
    def hardware(self) -> str:
        return self.key.hardware or "?"

    @property
    def batch_size(self) -> int | None:
        return self.key.batch_size

    @property
    def seq_len(self) -> int | None:
        return self.key.seq_len

    @property
    def cell(self) -> tuple[str, int | None, int | None]:
        """(hardware, batch, length): the cell within the run's profile, as the tables and charts key it."""
        return self.key.shape


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
    drop_ci95: tuple[float, float] | None = None
    precision: str | None = None
    engine: str = "torch"
    seed: dict[str, Any] | None = None
    order: int = 0
    rows: list[Row] = field(default_factory=list)
    primary: Row | None = None
    scores: dict[str, float] = field(default_factory=dict)
    composite: float | None = None
    pareto: bool = False
    heading: dict[str, str] | None = None  # the method's own subsection heading per language, from its registration
    # The task's primary metric (accuracy, macro_f1, f1:<label>) and its value; drop_pts is this metric's drop.
    primary_metric: str = "accuracy"
    primary_value: float | None = None
    per_class_f1: list[float | None] | None = None
    embedding: dict[str, Any] | None = None  # an embedding task's fidelity and downstream drops (extra_info)
    kernel: dict[str, str] | None = None  # {kind: native|simulated, name}: what ran (cell), else the registration's
    kernels_run: dict[str, int] | None = None  # kernel implementation -> executions in one call (extra_info)
    recipe: dict[str, Any] | None = None  # a saved `quantbench tune` recipe: its method, options, where it was tuned
    weight_bits: int | None = None  # a weight-only method's weight width (the bits curve), from its registration

    @property
    def simulated(self) -> bool:
        return bool(self.kernel and self.kernel.get("kind") == "simulated")

    @property
    def passed(self) -> bool | None:
        """True/False against its accuracy threshold; None when there is no threshold or no drop."""
        if self.name == REFERENCE or self.threshold is None or self.drop_pts is None:
            return None
        return self.drop_pts <= self.threshold

    @property
    def significant(self) -> bool | None:
        """Whether its predictions differ from FP32's more than chance explains (exact McNemar, p < ALPHA)."""
        return None if self.mcnemar_p is None else self.mcnemar_p < ALPHA

    def row_at(self, cell: tuple[str, int | None, int | None] | None) -> "Row | None":
        return next((r for r in self.rows if r.cell == cell), None)

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
    profile: str | None = None  # the setup (profile = model, and task) this view holds; None: a run of one setup
    task: dict[str, Any] = field(default_factory=dict)  # the task's registration as saved (labels, primary metric)
    sections: list[tuple[str, str, dict[str, str] | None]] = field(default_factory=list)
    partial: dict[str, Any] | None = None  # the run stopped early: why, and the cells it lacks (quantbench.partial)

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
        out["freeze_layers"] = config.get("freeze_layers")  # runs from before the option: None, every layer trained
        if out["checkpoint"]:
            out["checkpoint"] = Path(str(out["checkpoint"])).name
        return out

    @property
    def hardware_threads(self) -> dict[str, int | None]:
        """The thread count each hardware cell ran with (``cpu`` = all cores), from the benchmarks themselves."""
        out: dict[str, int | None] = {}
        for m in self.methods:
            for row in m.rows:
                if out.get(row.hardware) is None:
                    out[row.hardware] = row.threads
        return dict(sorted(out.items(), key=lambda item: _cell_order((item[0], 0, 0))))

    @property
    def headline_cells(self) -> list[tuple[str, int | None, int | None]]:
        """The smallest and the largest batch at the primary hardware and length (the headline's speed columns)."""
        if self.primary_cell is None:
            return []
        hardware, _batch, seq = self.primary_cell
        own = sorted({c for c in self.cells if c[0] == hardware and c[2] == seq}, key=lambda c: c[1] or 0)
        return [own[0]] if len(own) == 1 else [own[0], own[-1]]

    def in_section(self, section: str) -> list[MethodResult]:
        return [m for m in self.methods if m.section == section]

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.task.get("labels") or []]

    @property
    def per_class(self) -> dict[str, Any] | None:
        """For a task of more than two classes: each int8 method's F1 drop vs FP32 per class, in points (which class
        pays for quantization). None for binary tasks or runs without per-class figures."""
        labels, reference = self.labels, self.reference
        if len(labels) <= 2 or reference is None or not reference.per_class_f1:
            return None
        rows = []
        for m in self.methods:
            if m.name == REFERENCE or m.precision != "int8" or not m.per_class_f1 or len(m.per_class_f1) != len(labels):
                continue
            drops = [None if a is None or b is None else 100 * (a - b) for a, b in zip(reference.per_class_f1, m.per_class_f1)]
            worst = max(((d, labels[i]) for i, d in enumerate(drops) if d is not None and d > 0), default=(None, None))
            rows.append({"method": m.name, "drops": drops, "worst": worst[1]})  # None: no class lost anything
        return {"labels": labels, "reference": reference.per_class_f1, "rows": rows} if rows else None


    @property
    def recipes(self) -> list[dict[str, Any]]:
        """The saved ``quantbench tune`` recipes this run measured: what each is, where and for what budget it was
        tuned, its drops then (tuning and test split) and in this run, and its trace's counts by status."""
        rows = []
        for m in self.methods:
            if not m.recipe:
                continue
            tuned = m.recipe.get("tuned_on") if isinstance(m.recipe.get("tuned_on"), dict) else {}
            ci = tuned.get("test_drop_ci95")
            trace = [t for t in m.recipe.get("trace") or [] if isinstance(t, dict)]
            statuses: dict[str, int] = {}
            for t in trace:
                statuses[str(t.get("status"))] = statuses.get(str(t.get("status")), 0) + 1
            rows.append({
                "method": m.name, "base": m.recipe.get("method"), "describe": m.recipe.get("describe"),
                "cpu_class": tuned.get("cpu_class"), "same_class": tuned.get("cpu_class") == self.machine.get("cpu_class"),
                "max_drop": _num(tuned.get("max_drop_pts")), "objective": tuned.get("objective"),
                "batch_size": tuned.get("batch_size"), "tuned_speedup": _num(tuned.get("speedup_vs_fp32")),
                "tuning_drop": _num(tuned.get("tuning_drop_pts")), "test_drop": _num(tuned.get("test_drop_pts")),
                "test_ci": (float(ci[0]), float(ci[1])) if isinstance(ci, list) and len(ci) == 2 else None,
                "drop": m.drop_pts, "drop_ci": m.drop_ci95,
                "trace": ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())),
            })
        return rows

    @property
    def embeddings(self) -> dict[str, Any] | None:
        """For an embedding task: per method its speedup at the primary cell, cosine (mean, p5), recall@10 drop and
        each downstream task's drop, with intervals (points). None for classification runs."""
        measured = [m for m in self.methods if m.embedding]
        if not measured:
            return None
        first = measured[0].embedding
        classification = list(first.get("classification") or {})
        clustering = list(first.get("clustering") or {})
        fidelity = first.get("fidelity") or {}
        rows = []
        for m in measured:
            e = m.embedding
            row = m.row_at(self.primary_cell)
            recall = (e.get("fidelity") or {}).get("recall_at_10") or {}
            rows.append({
                "method": m.name,
                "speedup": row.speedup if row else None,
                "cosine_mean": (e.get("fidelity") or {}).get("cosine_mean"),
                "cosine_p5": (e.get("fidelity") or {}).get("cosine_p5"),
                "recall": _points(recall, 100),
                "classification": [_points(((e.get("classification") or {}).get(t) or {}).get("accuracy"))
                                   for t in classification],
                "clustering": [_points(((e.get("clustering") or {}).get(t) or {}).get("v_measure")) for t in clustering],
            })
        return {"classification": classification, "clustering": clustering, "rows": rows,
                "texts": fidelity.get("texts"), "skipped": first.get("downstream_skipped")}


def _points(drop: Any, scale: float = 1.0) -> dict[str, Any] | None:
    """A saved Drop as {drop, lo, hi} scaled to points (None when absent)."""
    if not isinstance(drop, dict) or _num(drop.get("drop")) is None:
        return None
    ci = drop.get("ci95") if isinstance(drop.get("ci95"), list) and len(drop["ci95"]) == 2 else [None, None]
    return {"drop": scale * drop["drop"], "lo": None if ci[0] is None else scale * ci[0],
            "hi": None if ci[1] is None else scale * ci[1]}


def load_report_run(saved: SavedRun, profile: str | None = None) -> ReportRun:
    """One saved run as the report shows it; a run without quantbench cells gets a QuantbenchError.

    ``profile`` picks one model's cells (and its baseline and RunConfig) from a run of several profiles.
    """
    metadata = saved.methods(profile)
    by_method: dict[str, list[SavedCell]] = {}
    for cell in saved.cells_of(profile):
        by_method.setdefault(cell.key.method, []).append(cell)
    if not by_method:
        what = f" of profile {profile}" if profile is not None else ""
        raise QuantbenchError(
            f"{saved.path}: holds no quantbench benchmarks{what} (no extra_info with a method); pass a run saved by "
            "`pytest bench --benchmark-save=NAME`"
        )
    methods = [_method(name, cells, metadata.get(name, {})) for name, cells in by_method.items()]
    methods.sort(key=lambda m: (m.name != REFERENCE, m.order, m.name))
    cells = sorted({row.cell for m in methods for row in m.rows}, key=_cell_order)
    primary = _primary_cell(cells)
    for m in methods:
        m.primary = next((r for r in m.rows if r.cell == primary), None)
    _score(methods)
    _mark_pareto(methods)
    return ReportRun(
        path=saved.path,
        label=saved.label,
        datetime=saved.datetime,
        commit=saved.commit,
        machine=saved.machine,
        run_config=saved.run_config(profile),
        baseline=saved.baseline(profile),
        skipped=saved.skipped(profile),
        methods=methods,
        cells=cells,
        primary_cell=primary,
        missing=saved.missing_fields(profile),
        partial=saved.partial,
        profile=profile,
        task=saved.task(profile),
        sections=_sections(metadata),
    )


def _sections(metadata: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, str] | None]]:
    """The report's method sections: chapter 4's own (4.1, the baseline, has its own part), then any section a
    method of the run registered with its heading per language, by number. (number, heading key, headings)."""
    out: list[tuple[str, str, dict[str, str] | None]] = [(n, key, None) for n, key in SECTIONS if n != "4.1"]
    known = {n for n, _key in SECTIONS}
    for meta in metadata.values():
        number, titles = str(meta.get("section") or ""), meta.get("section_title")
        if number and number not in known and isinstance(titles, dict) and titles:
            known.add(number)
            out.append((number, "section_" + number, {str(k): str(v) for k, v in titles.items()}))
    return sorted(out, key=lambda item: _section_order(item[0]))


def _section_order(number: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", number) if p not in ("", "."))


def _method(name: str, cells: list[SavedCell], meta: dict[str, Any]) -> MethodResult:
    # Accuracy, size and memory are per method (one evaluation, one build): take them from its first cell.
    first = cells[0]
    value, extra = first.values, first.extra
    ci = extra.get("accuracy_ci95")
    settings = extra.get("method_settings")
    result = MethodResult(
        name=name,
        section=str(meta.get("section") or ("4.1" if name == REFERENCE else "4.5")),
        precision=meta.get("precision"),
        engine=meta.get("engine") or "torch",
        seed=meta.get("seed") if isinstance(meta.get("seed"), dict) else None,
        order=_int(meta.get("order")) or 0,
        settings=settings if isinstance(settings, dict) else {},
        accuracy=value["accuracy"],
        accuracy_ci95=(float(ci[0]), float(ci[1])) if isinstance(ci, list) and len(ci) == 2 else None,
        f1=value["f1"],
        # the gate judges the task's primary metric; runs saved before tasks have accuracy's drop only
        drop_pts=value["primary_drop_pts"] if value["primary_drop_pts"] is not None else value["accuracy_drop_pts"],
        agreement=value["agreement_with_fp32"],
        mcnemar_p=value["mcnemar_p"],
        eval_examples=_int(value["eval_examples"]),
        size_bytes=value["size_bytes"],
        size_note=first.text("size_note"),
        compression=value["compression_ratio"],
        peak_rss_mb=value["peak_rss_mb"],
        build_seconds=value["build_seconds"],
        threshold=_num(meta.get("threshold")),
        heading=meta.get("heading") if isinstance(meta.get("heading"), dict) else None,
        primary_metric=first.text("primary_metric") or "accuracy",
        primary_value=value["primary_value"] if value["primary_value"] is not None else value["accuracy"],
        per_class_f1=_floats(extra.get("per_class_f1")),
        embedding=extra.get("embedding") if isinstance(extra.get("embedding"), dict) else None,
        kernel=kernel_fact(extra.get("kernel")) or kernel_fact(meta.get("kernel")),
        kernels_run=_counts(extra.get("kernels_run")),
        recipe=meta.get("recipe") if isinstance(meta.get("recipe"), dict) else None,
        weight_bits=_int(meta.get("weight_bits")),
    )
    saved_ci = extra.get("primary_drop_ci95")
    if isinstance(saved_ci, list) and len(saved_ci) == 2 and all(_num(x) is not None for x in saved_ci):
        result.drop_ci95 = (float(saved_ci[0]), float(saved_ci[1]))
    elif result.drop_pts is not None and result.agreement is not None and result.eval_examples:
        try:
            lo, hi = paired_drop_interval(result.drop_pts / 100, 1 - result.agreement, result.eval_examples)
            result.drop_ci95 = (100 * lo, 100 * hi)
        except ValueError:  # inconsistent figures (hand-edited JSON): no interval rather than a wrong one
            result.drop_ci95 = None
    for cell in cells:
        median, iqr = cell.values["median"], cell.values["iqr"]
        result.rows.append(Row(
            key=cell.key,
            threads=_int(cell.values["threads"]),
            median_ms=None if median is None else 1000 * median,
            iqr_ms=None if iqr is None else 1000 * iqr,
            rounds=_int(cell.values["rounds"]),
            throughput=cell.values["throughput_samples_per_s"],
            speedup=cell.values["speedup_vs_fp32"],
            speedup_reference=cell.text("speedup_reference"),
            speedup_compiled=cell.values["speedup_vs_fp32_compiled"],
            p90_ms=_ms(cell.values["latency_p90_s"]),
            p99_ms=_ms(cell.values["latency_p99_s"]),
        ))
    result.rows.sort(key=lambda r: _cell_order(r.cell))
    return result


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def _floats(value: Any) -> list[float | None] | None:
    if not isinstance(value, list):
        return None
    return [_num(x) for x in value]


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
    """What the templates render: the newest run in full, the others as history. A run of several profiles
    (models) gives one Report per profile in ``models`` (the first is this one) and a cross-model table."""

    run: ReportRun
    runs: list[ReportRun]
    best: dict[str, tuple[str, float] | None]
    expectations: list[dict[str, Any]]
    history: dict[str, Any] | None
    generated_by: str
    ship: dict[str, Any] = field(default_factory=dict)
    engines: dict[str, Any] | None = None
    bits: dict[str, Any] | None = None
    models: list["Report"] = field(default_factory=list)
    cross_model: dict[str, Any] | None = None
    machine: str | None = None  # set when the report holds runs of several machines: the one this part is of

    @property
    def sections(self) -> list[tuple[str, str, list[MethodResult]]]:
        """(number, heading key, methods) of every method section, from the run (``ReportRun.sections``)."""
        return [(number, key, self.run.in_section(number)) for number, key, _titles in self.run.sections]

    @property
    def profile(self) -> str | None:
        return self.run.profile

    @property
    def part(self) -> str:
        """This part's name in a report of several: ``machine / profile``, or whichever of the two is set."""
        return " / ".join(str(x) for x in (self.machine, self.profile) if x is not None) or self.run.label

    @property
    def slug(self) -> str:
        """``part`` made safe for file names and HTML ids (charts and anchors of one part)."""
        return re.sub(r"[^A-Za-z0-9_.]+", "-", self.part).strip("-") or "run"


def build_report(paths: Sequence[Path], labels: Sequence[str] | None = None, rules: Sequence[str] = ()) -> Report:
    """Load runs (oldest first; the last is reported in full) and derive the report's facts.

    ``rules`` are ``quantbench compare`` rules (``accuracy_drop:0.5``) used to flag regressions in the history.
    When the newest run holds several profiles (``pytest bench --quant-profiles quick,base``), each profile is
    reported on its own (its baseline, its FP32 reference, its history of the older runs that hold it).
    """
    if not paths:
        raise QuantbenchError("no runs to report; save one with `pytest bench --benchmark-save=NAME`")
    labels = list(labels) if labels else [Path(p).stem for p in paths]
    # Each file is read once; every part of the report and its history work from these.
    saved = [load_saved_run(Path(path), label) for path, label in zip(paths, labels)]
    machines: dict[str, list[SavedRun]] = {}
    for run in saved:
        machines.setdefault(run.machine_name, []).append(run)
    several_machines = len(machines) > 1
    reports = []
    # One part per machine (its runs form its own history: latencies never cross machines) and profile.
    for machine, own in machines.items():
        profiles = own[-1].profiles
        for profile in profiles if len(profiles) > 1 else [None]:
            report = _profile_report(own, rules, profile)
            report.machine = machine if several_machines else None
            reports.append(report)
    first = reports[0]
    if len(reports) > 1:
        first.models = reports
        tasks = {str(r.run.task.get("name")) for r in reports}
        kind = "machine" if several_machines else "task" if len(tasks) > 1 else "model"
        first.cross_model = {"kind": kind, **_cross_parts(reports, by_task=kind == "task", ranked=kind != "model")}
    return first


def _profile_report(saved: Sequence[SavedRun], rules: Sequence[str], profile: str | None) -> Report:
    """The report of one profile: the older runs that lack it are left out of its history."""
    kept = [run for index, run in enumerate(saved)
            if profile is None or index == len(saved) - 1 or profile in run.profiles]
    runs = [load_report_run(run, profile) for run in kept]
    run = runs[-1]
    from quant_impl import __version__

    return Report(
        run=run,
        runs=runs,
        best=_best(run),
        expectations=_expectations(run),
        history=_history(kept, runs, rules, profile) if len(runs) > 1 else None,
        generated_by=f"quantbench {__version__}",
        ship=_ship(run),
        engines=_engines(run),
        bits=_bits_curve(run),
    )


def _cross_parts(reports: list[Report], by_task: bool = False, ranked: bool = False) -> dict[str, Any]:
    """Per method and part (model, task or machine): speedup over that part's own FP32 at its headline cells, and
    the drop of the part's primary metric with its interval. Latencies are never put side by side across models or
    machines, only each part's ratios. Across tasks or machines (``ranked``), each method's rank (by drop, and by
    speedup at the largest headline batch) per part, and whether it holds: its ranks spread over at most one place
    (across machines of several CPU classes, this is how the ranking changes with the CPU)."""
    one_profile = len({r.run.setup.get("profile") for r in reports}) == 1
    columns = [{"name": (str(r.run.task.get("name")) if by_task and one_profile else r.part), "profile": r.profile,
                "machine": r.machine, "model": r.run.setup.get("model"), "cells": r.run.headline_cells,
                "metric": r.run.task.get("primary_metric") or "accuracy",
                "cpu_class": r.run.machine.get("cpu_class")} for r in reports]
    names: list[str] = []
    for r in reports:
        names += [m.name for m in r.run.methods if m.name not in names]
    rows = []
    for name in names:
        values = []
        for r, column in zip(reports, columns):
            m = r.run.method(name)
            values.append(None if m is None else {
                "speedups": [(m.row_at(cell).speedup if m.row_at(cell) else None) for cell in column["cells"]],
                "drop_pts": m.drop_pts, "drop_ci95": m.drop_ci95, "passed": m.passed, "compression": m.compression,
            })
        rows.append({"method": name, "values": values})
    if ranked:
        _rank_across(rows)
    return {"columns": columns, "rows": rows}


def _rank_across(rows: list[dict[str, Any]]) -> None:
    """Each quantized method's rank per part by drop and by speedup at the part's largest headline batch (fastest
    first); ``stable`` when both spread over at most one place across the parts. Drops within noise do not rank:
    every method whose paired interval reaches zero shares rank 1 (no measurable loss), and only measurable losses
    rank after it, smallest first (ranking noise would call every method unstable)."""
    for row in rows:  # FP32, the yardstick, has no rank
        row.update(drop_ranks=[], speed_ranks=[], stable=None)
    methods = [row for row in rows if row["method"] != REFERENCE]
    parts = len(rows[0]["values"]) if rows else 0
    for key, pick, reverse in (("drop_ranks", _measurable_drop, False),
                               ("speed_ranks", lambda v: v["speedups"][-1] if v["speedups"] else None, True)):
        for row in methods:
            row[key] = []
        for part in range(parts):
            scored = [(pick(row["values"][part]), row) for row in methods
                      if row["values"][part] is not None and pick(row["values"][part]) is not None]
            order = sorted(scored, key=lambda item: item[0], reverse=reverse)
            # competition ranking: equal values share a rank (all the drops within noise are 0.0 here)
            ranks = {id(row): 1 + sum(other < value if not reverse else other > value for other, _r in order)
                     for value, row in order}
            for row in methods:
                row[key].append(ranks.get(id(row)))
    for row in methods:
        spreads = [max(r) - min(r) for r in (
            [x for x in row["drop_ranks"] if x is not None], [x for x in row["speed_ranks"] if x is not None]) if r]
        row["stable"] = None if len([x for x in row["drop_ranks"] if x is not None]) < 2 else max(spreads) <= 1


def _measurable_drop(value: dict[str, Any]) -> float | None:
    """The drop a rank is by: 0 when its paired interval reaches zero (not measurably a loss), else the drop."""
    drop, ci = value.get("drop_pts"), value.get("drop_ci95")
    if drop is None:
        return None
    return 0.0 if ci is None or ci[0] <= 0 else drop


def _best(run: ReportRun) -> dict[str, tuple[str, float] | None]:
    """The best method per criterion (quantized methods only: FP32 is the yardstick)."""
    candidates = [m for m in run.methods if m.name != REFERENCE]

    def pick(value: Any, higher: bool) -> tuple[str, float] | None:
        scored = [(m.name, value(m)) for m in candidates if value(m) is not None]
        if not scored:
            return None
        return max(scored, key=lambda x: x[1]) if higher else min(scored, key=lambda x: x[1])

    # An accuracy is only "best" when it differs from FP32's measurably (McNemar); noise picks no winner.
    return {
        "accuracy": pick(lambda m: m.accuracy if m.significant else None, True),
        "speed": pick(lambda m: m.primary.speedup if m.primary else None, True),
        "compression": pick(lambda m: m.compression, True),
        "memory": pick(lambda m: m.peak_rss_mb, False),
        "composite": pick(lambda m: m.composite, True),
    }


def _shippable(run: ReportRun) -> list[MethodResult]:
    """Quantized methods within their accuracy threshold (or with none set): the ones a pick may name."""
    return [m for m in run.methods if m.name != REFERENCE and m.passed is not False]


def _ship(run: ReportRun) -> dict[str, Any]:
    """What to ship for speed, for size and for accuracy (the headline's one sentence), among shippable methods.

    Speed: the highest speedup at the largest headline batch; size: the fewest bytes; accuracy: the most accurate
    method only if it is measurably (McNemar p < ALPHA) more accurate than FP32; otherwise no pick, and the methods
    measurably less accurate than FP32 are listed.
    """
    candidates = _shippable(run)
    cells = run.headline_cells
    large = cells[-1] if cells else None

    def speed(m: MethodResult, cell: Any = large) -> float | None:
        row = m.row_at(cell)
        return row.speedup if row else None

    fast = [m for m in candidates if speed(m) is not None]
    small = [m for m in candidates if m.size_bytes is not None]
    better = [m for m in candidates if m.significant and m.drop_pts is not None and m.drop_pts < 0]
    worse = [m.name for m in run.methods if m.name != REFERENCE and m.significant and (m.drop_pts or 0) > 0]
    # The fastest pick per headline batch: on an AVX2-only CPU the winner at batch 1 (a peer's FP32) differs from
    # batch 32's, and a pick holds only for the CPU class it was measured on.
    picks = []
    for cell in cells:
        timed = [m for m in candidates if speed(m, cell) is not None]
        if timed:
            best = max(timed, key=lambda m, c=cell: speed(m, c))
            picks.append({"cell": cell, "method": best.name, "value": speed(best, cell),
                          "beats_fp32": speed(best, cell) > 1.0, "simulated": best.simulated})
    return {
        "cell": large,
        "cpu_class": run.machine.get("cpu_class"),
        "cpu_model": run.machine.get("cpu_model"),
        "speed_picks": picks,
        "speed": max(fast, key=speed).name if fast else None,
        "speed_value": max(speed(m) for m in fast) if fast else None,
        "size": min(small, key=lambda m: m.size_bytes).name if small else None,
        "size_value": min(m.size_bytes for m in small) if small else None,
        "accuracy": max(better, key=lambda m: m.accuracy or 0).name if better else None,
        "worse": worse,
        "search": _search_pick(run, large) if run.embeddings else None,
    }


# An embedding model is shippable for search when it keeps FP32's neighbours: at most this recall@10 loss, in points.
SEARCH_RECALL_LOSS_PTS = 1.0


def _search_pick(run: ReportRun, cell: Any) -> dict[str, Any]:
    """The fastest method at ``cell`` whose recall@10 drop (its upper 95 % bound, so noise cannot pass it) is within
    SEARCH_RECALL_LOSS_PTS; ``method`` None when none is."""
    keeps = []
    for row in (run.embeddings or {}).get("rows", []):
        method = run.method(row["method"])
        timed = method.row_at(cell) if method and method.name != REFERENCE else None
        recall = row["recall"]
        if timed and timed.speedup is not None and recall and recall["hi"] is not None \
                and recall["hi"] <= SEARCH_RECALL_LOSS_PTS:
            keeps.append((timed.speedup, row["method"], recall["drop"]))
    best = max(keeps, default=None)
    return {"budget": SEARCH_RECALL_LOSS_PTS, "cell": cell, "method": best[1] if best else None,
            "value": best[0] if best else None, "drop": best[2] if best else None,
            "beats_fp32": bool(best and best[0] > 1.0)}


def _engines(run: ReportRun) -> dict[str, Any] | None:
    """The best torch int8 method against the best peer-engine int8 method, per criterion, as ratios.

    Only methods within their threshold compete. Latency at the headline cells (lower wins), size (lower wins),
    accuracy (higher wins). ``ratio`` is peer / torch, so above 1 means torch is ahead for latency and size.
    None when the run lacks int8 methods of either kind.
    """
    int8 = _int8_compute(_shippable(run))
    torch_side = [m for m in int8 if m.engine == "torch"]
    peer_side = [m for m in int8 if m.engine != "torch"]
    if not torch_side or not peer_side:
        return None
    rows = []

    def add(criterion: str, value: Any, lower_wins: bool, cell: Any = None) -> None:
        t = [(m, value(m)) for m in torch_side if value(m) is not None]
        p = [(m, value(m)) for m in peer_side if value(m) is not None]
        if not t or not p:
            return
        best = min if lower_wins else max
        (tm, tv), (pm, pv) = best(t, key=lambda x: x[1]), best(p, key=lambda x: x[1])
        ahead = "tie" if tv == pv else ("torch" if (tv < pv) == lower_wins else "peer")
        if criterion == "accuracy" and not (tm.significant or pm.significant):
            ahead = "none"  # both within noise of FP32 (McNemar): no winner is named on accuracy
        rows.append({"criterion": criterion, "cell": cell, "torch": tm.name, "torch_value": tv, "peer": pm.name,
                     "peer_value": pv, "ratio": pv / tv if tv else None, "ahead": ahead})

    for cell in run.headline_cells:
        add("latency", lambda m, c=cell: (m.row_at(c).median_ms if m.row_at(c) else None), True, cell)
    add("size", lambda m: m.size_bytes, True)
    add("accuracy", lambda m: m.accuracy, False)
    return {"rows": rows, "torch_methods": [m.name for m in torch_side], "peer_methods": [m.name for m in peer_side]}


def _int8_compute(methods: list[MethodResult]) -> list[MethodResult]:
    """The int8 methods whose matmuls take int8 activations too (weight-only int8 is on the bits curve instead)."""
    return [m for m in methods if m.precision == "int8" and m.weight_bits is None]


def _bits_curve(run: ReportRun) -> dict[str, Any] | None:
    """Every weight-only method by engine and weight width: its drop (with interval), bytes, kernel and speed at
    the headline cells vs FP32 and vs the fastest int8 method there (int8 activations, within its threshold);
    and the facts of the one-sentence answer: the smallest 4-bit drop, the smallest 3- or 2-bit drop, and the
    weight-only methods below 8 bits that are faster than that int8 at any headline cell. None without any."""
    curve = sorted((m for m in run.methods if m.weight_bits is not None),
                   key=lambda m: (m.engine, -(m.weight_bits or 0), m.order, m.name))
    if not curve:
        return None
    cells = run.headline_cells
    fastest = {}
    for cell in cells:
        timed = [m for m in _int8_compute(_shippable(run)) if m.row_at(cell) and m.row_at(cell).speedup is not None]
        best = max(timed, key=lambda m, c=cell: m.row_at(c).speedup, default=None)
        fastest[cell] = (best.name, best.row_at(cell).speedup) if best else None
    rows, faster = [], []
    for m in curve:
        speeds = []
        for cell in cells:
            row = m.row_at(cell)
            speedup = row.speedup if row else None
            int8 = fastest[cell]
            vs_int8 = speedup / int8[1] if speedup is not None and int8 and int8[1] else None
            speeds.append({"cell": cell, "vs_fp32": speedup, "vs_int8": vs_int8})
            if vs_int8 is not None and vs_int8 > 1.0 and (m.weight_bits or 8) < 8 and m.passed is not False:
                faster.append({"method": m.name, "cell": cell, "ratio": vs_int8, "int8": int8[0],
                               "simulated": m.simulated})
        rows.append({"method": m.name, "engine": m.engine, "bits": m.weight_bits, "drop": m.drop_pts,
                     "drop_ci95": m.drop_ci95, "size_bytes": m.size_bytes, "passed": m.passed,
                     "simulated": m.simulated, "kernel": m.kernel, "speeds": speeds})

    def least(bits: tuple[int, ...]) -> dict[str, Any] | None:
        scored = [r for r in rows if r["bits"] in bits and r["drop"] is not None]
        best = min(scored, key=lambda r: (r["drop"], r["bits"]), default=None)
        return {"method": best["method"], "bits": best["bits"], "drop": best["drop"], "drop_ci95": best["drop_ci95"]} \
            if best else None

    return {"rows": rows, "cells": cells, "fastest_int8": [fastest[c] for c in cells], "best_4": least((4,)),
            "best_low": least((3, 2)), "faster_than_int8": faster}


def _expectations(run: ReportRun) -> list[dict[str, Any]]:
    """Seed expectation beside the measurement, per method the seed covers, with the reasons they differ."""
    isa = run.machine.get("isa") or {}
    cls = run.machine.get("cpu_class")
    rows = []
    for m in run.methods:
        seed = m.seed
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
        # The reasons follow the method's saved precision and engine, not its name.
        if m.precision == "fp16" and verdicts["speedup"] == "below" and not isa.get("avx512_fp16") and not isa.get("amx_fp16"):
            reasons.append("no_fp16_math")
        if m.precision == "bf16" and isa.get("avx512_bf16"):
            reasons.append("bf16_native")
        if m.precision == "int8" and m.engine == "torch" and verdicts["speedup"] == "above" and isa.get("avx512_vnni"):
            reasons.append("vnni_int8")
        # The CPU first: the seed's int8 speed-ups assume int8 dot-product instructions (VNNI) this class may lack.
        if m.precision == "int8" and verdicts["speedup"] == "below" and cls in ("avx2", "avx512", "pre-avx2"):
            reasons.append("no_int8_dot")
        if m.precision == "bf16" and verdicts["speedup"] == "below" and not isa.get("avx512_bf16") and cls != "amx":
            reasons.append("no_bf16_math")
        if verdicts["loss"] == "above":
            reasons.append("loss_above")
        if run.run_config.get("model") not in (None, "bert-base-uncased"):
            reasons.append("different_model")
        rows.append({"method": m.name, "seed": seed, "measured": {"compression": m.compression,
                     "loss": m.drop_pts, "speedup": speedup}, "verdicts": verdicts, "reasons": reasons,
                     "kernels": most_run(m.kernels_run)})
    return rows


KERNELS_NAMED = 2  # the most executed kernels a verdict names (the full list is in the run's extra_info)


def most_run(kernels: dict[str, int] | None) -> str | None:
    """The kernels one call ran most, as ``name x count`` (the evidence beside a CPU reason); None if not recorded.

    Example:
        >>> most_run({"matmul: gemm:jit": 38, "eltwise: jit:avx2": 6, "reorder: jit:uni": 2})
        'matmul: gemm:jit x38, eltwise: jit:avx2 x6'
    """
    if not kernels:
        return None
    ranked = sorted(kernels.items(), key=lambda kv: (-kv[1], kv[0]))[:KERNELS_NAMED]
    return ", ".join(f"{name} x{count}" for name, count in ranked)


def _counts(value: Any) -> dict[str, int] | None:
    """A saved ``kernels_run`` table, or None when absent or malformed (older runs, hand-edited JSON)."""
    if not isinstance(value, dict):
        return None
    counts = {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}
    return counts or None


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


def _history(saved: Sequence[SavedRun], runs: list[ReportRun], rules: Sequence[str],
             profile: str | None = None) -> dict[str, Any]:
    """Per method and run: accuracy, size, memory, and latency at the newest run's main cell; regressions from the compare rules
    applied between consecutive runs (timing and memory rules only within one machine, as compare does)."""
    checks = parse_rules(rules, "[tool.quantbench.compare] fail_on")
    compared = list(saved)
    regressions: dict[tuple[int, str], list[str]] = {}
    for index in range(1, len(compared)):
        result = compare_runs(compared[index - 1], compared[index], checks)
        for failure in result.failures:
            if profile is not None and failure.cell.setup != profile:
                continue  # another model's regression: its own section shows it
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


def _cell_order(cell: tuple[str, int | None, int | None]) -> tuple[int, str, int, int]:
    hardware = cell[0]
    rank = 0 if hardware == "cpu" else 1 if hardware.startswith("cpu") else 2
    return (rank, hardware, cell[1] or 0, cell[2] or 0)
