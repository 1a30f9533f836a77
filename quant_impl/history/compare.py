"""Pairing the cells of two runs, their deltas, and the rules applied to them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from quant_impl.history.machines import machine_differences
from quant_impl.history.metrics import METRICS
from quant_impl.history.rules import Check
from quant_impl.history.runs import Cell, CellKey, Run

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
        return len({cell.key.setup for cell in self.cells}) > 1

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
    if new.partial and rules:
        # A gate never passes a cell it does not have: BASE's cells that a partial NEW never timed fail.
        for cell in cells:
            if cell.status == "removed":
                result.failures.append(Failure("partial", cell.key, f"missing from NEW, a partial run "
                                               f"({new.partial.get('reason') or 'interrupted'})",
                                               result.several_profiles))
    return result


def _apply(rule: Check, result: Comparison) -> None:
    classes = result.base.machine.get("cpu_class"), result.new.machine.get("cpu_class")
    if rule.metric.timing and None not in classes and classes[0] != classes[1]:
        result.skipped.append(
            f"{rule.text}: refused, BASE ran on an {classes[0]} CPU and NEW on an {classes[1]} one; which method is "
            "fastest changes with the CPU class, so no latency gate holds across classes (--force-cross-machine "
            "does not apply)"
        )
        return
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

