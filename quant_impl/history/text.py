"""The plain-text comparison ``quantbench compare`` prints."""

from __future__ import annotations

from typing import Any

from quant_impl.history.compare import CellDelta, Comparison, _delta, _delta_pct
from quant_impl.history.machines import _dig
from quant_impl.formatting import delta_text, or_dash, value_text
from quant_impl.history.metrics import _SHOWN


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
        if result.several_profiles and cell.key.setup != profile:
            profile = cell.key.setup
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
    batch, seq_len = or_dash(key.batch_size), or_dash(key.seq_len)
    head = f"{key.method:<18} {key.hardware or '?':<8} batch {batch:<4} seq_len {seq_len}"
    if cell.status != "both":
        where = "added: only in NEW" if cell.status == "added" else "removed: only in BASE"
        return [f"{head}   ({where})"]
    lines = [head]
    for value_key, label in _SHOWN:
        base, new = cell.pair(value_key)
        before, after = value_text(value_key, base), value_text(value_key, new)
        text = f"  {label:<12} {before:>10} -> {after:<10} {delta_text(value_key, _delta(base, new), _delta_pct(base, new))}"
        if value_key in cell.failed:
            text += f"   << {cell.failed[value_key]}"
        lines.append(text.rstrip())
    return lines

