"""``quantbench report``: render saved runs (default: the newest of this machine) to Markdown and HTML."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from quant_impl.errors import QuantbenchError
from quant_impl.config import compare_rules
from quant_impl.history import SAVE_HINT, machine_id, resolve_run, run_label, saved_runs, storage_path


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="render saved benchmark runs into report.md and a self-contained report.html",
        description=(
            "Fill the seed report's chapter 4 (baseline, one section per method, comparisons with charts, "
            "discussion, machine) from saved pytest-benchmark JSON, through the Jinja2 templates in "
            "reports_templates/. With several runs the newest is reported in full and all of them form a "
            "history with trends and regressions."
        ),
        epilog="Runs are saved by `pytest bench --benchmark-save=NAME` (or `tox -e bench`).",
    )
    parser.add_argument(
        "runs", nargs="*", metavar="RUN",
        help="runs to report, oldest first: JSON files, run numbers (3 or 0003), run names or "
        "MACHINE_ID/NUMBER_OR_NAME; default: the newest run of this machine (the last RUN is reported in full)",
    )
    parser.add_argument("--all", action="store_true",
                        help="report every saved run of this machine (the newest in full, all in the history)")
    parser.add_argument("--lang", default="en", help="report language: en (default) or zh (the seed's Chinese headings)")
    parser.add_argument("--format", default="md,html", metavar="md,html",
                        help="comma-separated formats to write (default: md,html)")
    parser.add_argument("-o", "--output", default="reports", metavar="DIR",
                        help="folder for report[.LANG].md, report[.LANG].html and charts/ (default: reports)")
    parser.add_argument("--benchmark-storage", default=".benchmarks", metavar="DIR",
                        help="pytest-benchmark storage folder, a path or file://path (default: .benchmarks)")
    parser.add_argument("--fail-on", action="append", default=None, metavar="METRIC:THRESHOLD",
                        help="regression rules for the history, as quantbench compare takes them (default: "
                        "[tool.quantbench.compare] fail_on in pyproject.toml)")
    parser.add_argument("--headline", action="store_true",
                        help="print only the headline table(s) as Markdown to stdout (for $GITHUB_STEP_SUMMARY or a "
                        "pull-request comment) and write no files")
    parser.set_defaults(handler=_cmd_report)
    return parser


def select_report_runs(storage: Path, selectors: list[str], every: bool = False) -> list[Path]:
    folder = storage / machine_id()
    if selectors and every:
        raise QuantbenchError("pass RUN arguments or --all, not both")
    if selectors:
        return [resolve_run(selector, storage, folder) for selector in selectors]
    runs = saved_runs(folder)
    if not runs:
        raise QuantbenchError(
            f"no saved runs in {folder}; save one with `{SAVE_HINT}` (or `tox -e bench`), or pass a run's JSON file"
        )
    return runs if every else runs[-1:]


def _cmd_report(args: argparse.Namespace) -> int:
    from quant_impl.report.data import build_report
    from quant_impl.report.render import FORMATS, languages, write_report

    start = time.perf_counter()
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise QuantbenchError(f"--format {args.format!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    if args.lang not in languages():
        raise QuantbenchError(f"--lang {args.lang!r}: choose one of {', '.join(languages())}")
    rules = args.fail_on if args.fail_on is not None else compare_rules()[0]
    storage = storage_path(args.benchmark_storage)
    paths = select_report_runs(storage, args.runs, args.all)
    # A run inside the storage is named as compare names it (MACHINE/NNNN_NAME); one outside by its file name.
    labels = [run_label(p, storage) if run_label(p, storage) != str(p) else p.stem for p in paths]
    report = build_report(paths, labels, rules)
    if args.headline:
        from quant_impl.report.render import render_headline

        print(render_headline(report, args.lang), end="")
        return 0
    written = write_report(report, Path(args.output), args.lang, formats)
    parts = f", in {len(report.models)} parts: {', '.join(m.part for m in report.models)}" if report.models else ""
    print(f"Report of {report.run.label} ({len(paths)} run(s){parts}) in {time.perf_counter() - start:.1f} s:")
    for path in written:
        if path.suffix != ".svg":
            print(f"  {path}")
    charts = [p for p in written if p.suffix == ".svg"]
    if charts:
        print(f"  {charts[0].parent}/ ({len(charts)} charts for the Markdown)")
    return 0
