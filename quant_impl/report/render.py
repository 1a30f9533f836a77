"""Render a :class:`~quant_impl.report.data.Report` through the Jinja2 templates in ``reports_templates/``.

``report.md.j2`` writes GitHub Markdown with the charts as SVG files beside it; ``report.html.j2`` writes one
self-contained HTML file (inline CSS and SVG, no script, no network) with autoescaping on. Both take their
words from ``reports_templates/lang/<lang>.toml`` and every number through the same filters below, so the
two formats and the two languages show identical figures (``quant_impl.formatting``: the one place for number
formats and for each format's escaping).
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quant_impl.config import report_templates_dir
from quant_impl.errors import QuantbenchError
from quant_impl.formatting import FILTERS, Words, escape_html, escape_markdown
from quant_impl.report import charts
from quant_impl.report.data import ACCURACY_SCALE_PTS, COMPOSITE_AXES, Report
from quant_impl.schema import REFERENCE

TEMPLATES = Path(__file__).resolve().parents[2] / "reports_templates"  # the checkout's (editable installs)
FORMATS = ("md", "html")


def templates_dir() -> Path:
    """``$QUANTBENCH_TEMPLATES`` if set, else the checkout's ``reports_templates/``; a clear error if absent."""
    folder = report_templates_dir() or TEMPLATES
    if not (folder / "lang" / "en.toml").is_file():
        raise QuantbenchError(
            f"report templates not found in {folder}; install quantbench from a checkout (pip install -e .) or "
            "point QUANTBENCH_TEMPLATES at a reports_templates folder"
        )
    return folder


def languages(templates: Path | None = None) -> list[str]:
    return sorted(p.stem for p in ((templates or templates_dir()) / "lang").glob("*.toml"))


def words(lang: str, templates: Path | None = None) -> dict[str, Any]:
    """The word table of ``lang``; English fills any key a translation lacks."""
    templates = templates or templates_dir()
    available = languages(templates)
    if lang not in available:
        raise QuantbenchError(f"--lang {lang!r}: no {templates / 'lang' / (lang + '.toml')}; choose one of {', '.join(available)}")
    base = tomllib.loads((templates / "lang" / "en.toml").read_text(encoding="utf-8"))
    table = tomllib.loads((templates / "lang" / f"{lang}.toml").read_text(encoding="utf-8"))
    for key, value in base.items():
        if isinstance(value, dict):
            table[key] = {**value, **table.get(key, {})}
        else:
            table.setdefault(key, value)
    return _trusted(table)


def _trusted(value: Any) -> Any:
    """Every string of a word table marked as template text, so the Markdown escaping leaves it alone."""
    if isinstance(value, dict):
        return {key: _trusted(item) for key, item in value.items()}
    return Words(value) if isinstance(value, str) else value


def with_run_headings(t: dict[str, Any], report: Report, lang: str, kind: str) -> dict[str, Any]:
    """The word table with the headings a run carries itself: a section a method registered with its own
    heading per language (this language, else English, else any). They come from the run, so they are escaped
    like its other values (HTML escapes every plain string it prints; Markdown is escaped here)."""
    headings = dict(t["headings"])
    for part in report.models or [report]:
        for _number, key, titles in part.run.sections:
            if titles and key not in headings:
                title = titles.get(lang) or titles.get("en") or next(iter(titles.values()))
                headings[key] = Words(escape_markdown(title)) if kind == "md" else str(title)
    return {**t, "headings": headings}


def method_heading(method: Any, lang: str) -> str:
    """A method's subsection heading: its registered heading in ``lang`` (else English), else its name."""
    own = method.heading or {}
    return own.get(lang) or own.get("en") or method.name


# -------------------------------------------------------------------------------------------- charts
@dataclass
class Chart:
    key: str
    title: str
    svg: str
    part: str | None = None  # set in a report of several models or machines: each part has its own charts

    def file_name(self, lang: str) -> str:
        return f"{self.part}.{self.key}.{lang}.svg" if self.part else f"{self.key}.{lang}.svg"


def make_charts(report: Report, t: dict[str, Any]) -> list[Chart]:
    """The charts of every model of the newest run (and of the history when there are several runs)."""
    if not report.models:
        return _model_charts(report, t)
    out = []
    for model in report.models:
        for chart in _model_charts(model, t):
            chart.part = model.slug
            chart.title = f"{model.part}: {chart.title}"
            out.append(chart)
    return out


def _model_charts(report: Report, t: dict[str, Any]) -> list[Chart]:
    """The charts of one model of the newest run (and its history)."""
    run, c = report.run, t["charts"]
    methods = run.methods
    names = [m.name for m in methods]
    reference = run.reference
    out = [
        Chart("accuracy", c["accuracy"], charts.bar_chart(
            names, [None if m.accuracy is None else 100 * m.accuracy for m in methods], c["accuracy"],
            c["accuracy_axis"], reference=None if not reference or reference.accuracy is None else 100 * reference.accuracy,
            zoom=True, intervals=[None if m.accuracy_ci95 is None else (100 * m.accuracy_ci95[0], 100 * m.accuracy_ci95[1])
                                  for m in methods])),
        Chart("size", c["size"], charts.bar_chart(names, [m.size_mb for m in methods], c["size"], c["size_axis"],
                                                  fmt="{:.1f}")),
        Chart("latency", c["latency"] + _cell_suffix(report, t), charts.bar_chart(
            names, [m.primary.median_ms if m.primary else None for m in methods],
            c["latency"] + _cell_suffix(report, t), c["latency_axis"], fmt="{:.1f}")),
        Chart("speedup", c["speedup"] + _cell_suffix(report, t), charts.bar_chart(
            names, [m.primary.speedup if m.primary else None for m in methods],
            c["speedup"] + _cell_suffix(report, t), c["speedup_axis"], reference=1.0)),
        Chart("memory", c["memory"], charts.bar_chart(names, [m.peak_rss_mb for m in methods], c["memory"],
                                                      c["memory_axis"], fmt="{:.0f}")),
    ]
    scored = {m.name: m.scores for m in methods if m.scores}
    if scored:
        out.append(Chart("radar", c["radar"], charts.radar_chart(
            scored, COMPOSITE_AXES, [c[f"axis_{a}"] for a in COMPOSITE_AXES], c["radar"])))
    points = [(m.name, m.primary.median_ms, 100 * m.accuracy, m.pareto) for m in methods
              if m.accuracy is not None and m.primary and m.primary.median_ms is not None]
    if points:
        out.append(Chart("pareto", c["pareto"], charts.pareto_chart(
            points, c["pareto"] + _cell_suffix(report, t), c["latency_axis"], c["accuracy_axis"], c["pareto_front"])))
    if report.history:
        labels = report.history["labels"]
        for key, value, axis in (("trend_latency", "median_ms", "latency_axis"), ("trend_accuracy", "accuracy", "accuracy_axis")):
            series = {row["method"]: [None if p is None or p[value] is None else (100 * p[value] if value == "accuracy" else p[value])
                                      for p in row["points"]] for row in report.history["methods"]}
            out.append(Chart(key, c[key], charts.trend_chart(labels, series, c[key], c[axis])))
    return out


def _part_title(report: Report, t: dict[str, Any]) -> str:
    """The heading of one part of a report of several: its machine and/or its model."""
    parts = []
    if report.machine is not None:
        parts.append(t["headings"]["machine"].format(machine=report.machine))
    if report.profile is not None:
        profile = report.run.setup.get("profile") or report.profile
        parts.append(t["headings"]["model"].format(profile=profile, model=report.run.setup.get("model") or t["dash"]))
        task = report.run.task.get("name")
        if task and task != "imdb" or "/" in str(report.profile):
            parts.append(t["headings"]["task"].format(task=task))
    return " – ".join(parts) or report.run.label


def _cell_suffix(report: Report, t: dict[str, Any]) -> str:
    cell = report.run.primary_cell
    if cell is None:
        return ""
    return " (" + t["text"]["primary_cell"].format(hardware=cell[0], batch=cell[1], seq=cell[2]) + ")"


# ------------------------------------------------------------------------------------------ rendering
def _environment(kind: str, t: dict[str, Any]):
    import jinja2
    from markupsafe import Markup, escape

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=kind == "html",
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the test suite, not a reader
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    if kind == "html":
        # Words are trusted template text; values put into them are escaped by Markup.format.
        env.filters["fill"] = lambda text, **values: Markup(escape(text)).format(**values)
        env.filters["esc"] = escape_html
    else:
        env.filters["fill"] = lambda text, **values: Words(text.format(**{k: escape_markdown(v) for k, v in values.items()}))
        env.filters["esc"] = escape_markdown
    return env


def render_headline(report: Report, lang: str = "en") -> str:
    """The headline table(s) alone, in Markdown (``quantbench report --headline``): no charts, no files."""
    text, _ = render(report, lang, "md", template="headline.md.j2")
    return text


def render(report: Report, lang: str = "en", kind: str = "md", chart_dir: str = "charts",
           template: str | None = None) -> tuple[str, list[Chart]]:
    """The report text in ``kind`` (md or html) and its charts (none when ``template`` is another one)."""
    if kind not in FORMATS:
        raise QuantbenchError(f"--format {kind!r}: choose from {', '.join(FORMATS)}")
    t = with_run_headings(words(lang), report, lang, kind)
    made = make_charts(report, t) if template is None else []
    env = _environment(kind, t)

    def figures(part: str | None) -> dict[str, dict[str, Any]]:
        own = [chart for chart in made if chart.part == part]
        if kind == "html":
            from markupsafe import Markup

            # matplotlib writes the SVG and escapes its text; it is inlined as markup.
            return {chart.key: {"title": chart.title, "svg": Markup(chart.svg)} for chart in own}
        return {chart.key: {"title": chart.title, "file": f"{chart_dir}/{chart.file_name(lang)}"} for chart in own}

    several = bool(report.models)
    models = [{"report": model, "run": model.run, "figures": figures(model.slug if several else None),
               "cell_text": _cell_suffix(model, t).strip(" ()"), "anchor": f"{model.slug}-" if several else "",
               "title": _part_title(model, t)}
              for model in (report.models or [report])]
    text = env.get_template(template or f"report.{kind}.j2").render(
        t=t, report=report, run=report.run, models=models, cross_model=report.cross_model,
        reference_name=REFERENCE, accuracy_scale=ACCURACY_SCALE_PTS, lang=lang, kind=kind,
        heading=lambda method: method_heading(method, lang),
    )
    if kind == "md":
        # Blocks end with a blank line of their own; Markdown needs one between blocks, never more.
        text = re.sub(r"\n{3,}", "\n\n", text)
    return text, made


def write_report(report: Report, out_dir: Path, lang: str = "en", formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write ``report[.<lang>].md`` (+ ``charts/*.svg``) and/or ``report[.<lang>].html`` atomically; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "report" if lang == "en" else f"report.{lang}"
    written = []
    for kind in formats:
        text, made = render(report, lang, kind)
        if kind == "md":
            for chart in made:
                written.append(_write(out_dir / "charts" / chart.file_name(lang), chart.svg))
        written.append(_write(out_dir / f"{stem}.{kind}", text))
    return written


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
