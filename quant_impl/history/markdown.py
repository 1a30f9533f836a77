"""The comparison as GitHub Markdown (``quantbench compare --format markdown``): a verdict line, then one compact
table with the cells that broke a rule first, for ``$GITHUB_STEP_SUMMARY`` and pull-request comments."""

from __future__ import annotations

from quant_impl.history.compare import CellDelta, Comparison, _delta, _delta_pct
from quant_impl.formatting import change_text, escape_markdown_code as _escape

# (value key, column head)
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("median", "median ms"),
    ("speedup_vs_fp32", "speedup"),
    ("size_bytes", "size MB"),
    ("peak_rss_mb", "peak MB"),
)


def _change(key: str, base: float | None, new: float | None) -> str:
    return change_text(key, new, _delta(base, new), _delta_pct(base, new))


def _cell_name(cell: CellDelta, qualified: bool) -> str:
    key = cell.key
    name = f"{key.method} {key.hardware or '?'} b{key.batch_size if key.batch_size is not None else '-'}"
    name += f" s{key.seq_len}" if key.seq_len is not None else ""
    return f"{key.setup}: {name}" if qualified and key.setup else name


def _table(cells: list[CellDelta], broken: dict, qualified: bool) -> list[str]:
    lines = ["| cell | " + " | ".join(head for _, head in _COLUMNS) + " | broken rules |",
             "|---|" + "---:|" * len(_COLUMNS) + "---|"]
    for cell in cells:
        values = []
        for key, _ in _COLUMNS:
            text = _escape(_change(key, *cell.pair(key)))
            values.append(f"**{text}**" if key in cell.failed else text)
        rules_broken = ", ".join(f"`{rule}`" for rule in broken[cell.key]) or "–"
        lines.append(f"| {_escape(_cell_name(cell, qualified))} | " + " | ".join(values) + f" | {rules_broken} |")
    return lines


def format_markdown(result: Comparison) -> str:
    """Verdict, the two runs, the machine check and the rules, then one row per cell that broke a rule (the values
    that broke it in bold, the rules named), the cells within the rules folded below; added and removed cells
    and notes after."""
    qualified = result.several_profiles
    compared = [cell for cell in result.cells if cell.status == "both"]
    broken = {cell.key: [f.rule for f in result.failures if f.cell == cell.key] for cell in compared}
    if result.failures:
        verdict = f"**FAILED**: {len(result.failures)} rule violation(s) in {sum(map(bool, broken.values()))} cell(s)"
    elif result.rules:
        verdict = f"**OK**: no rule broken ({len(result.rules)} rule(s) on {len(compared)} cell(s))"
    else:
        verdict = "**OK**: no rules to check"
    rules = ", ".join(f"`{rule.text}`" for rule in result.rules) or "none"
    machine = "same machine" if result.same_machine else (
        "**different machines**: timing and memory rules " + ("forced" if result.forced else "not applied"))
    lines = [
        f"### quantbench compare: {verdict}",
        "",
        f"BASE `{_escape(result.base.describe())}` → NEW `{_escape(result.new.describe())}`; {machine}; "
        f"rules: {rules}",
    ]
    failing = [cell for cell in compared if broken[cell.key]]
    passing = [cell for cell in compared if not broken[cell.key]]
    if failing:
        lines += ["", *_table(failing, broken, qualified)]
    if passing:
        # Kept folded: a pull-request comment should show what broke, not every cell that did not.
        lines += ["", f"<details><summary>{len(passing)} cell(s) within the rules</summary>", "",
                  *_table(passing, broken, qualified), "", "</details>"]
    for status, title in (("added", "Only in NEW"), ("removed", "Only in BASE")):
        names = [_escape(_cell_name(cell, qualified)) for cell in result.cells if cell.status == status]
        if names:
            lines += ["", f"{title}: " + ", ".join(names)]
    extra = [*result.notes, *result.skipped, *result.machine_differences]
    if extra:
        lines += ["", "<details><summary>notes</summary>", ""] + [f"- {_escape(item)}" for item in extra]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
