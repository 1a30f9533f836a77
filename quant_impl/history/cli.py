"""The ``quantbench compare`` command."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from quant_impl.config import compare_rules
from quant_impl.errors import QuantbenchError
from quant_impl.history.compare import compare_runs
from quant_impl.history.metrics import METRICS
from quant_impl.history.rules import parse_rules
from quant_impl.history.runs import load_run
from quant_impl.history.storage import run_label, select_runs, storage_path
from quant_impl.history.markdown import format_markdown
from quant_impl.history.text import format_comparison

FORMATS = ("text", "markdown", "json")

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
            f"the worse count. Metrics: {', '.join(METRICS)}. accuracy_drop, f1_drop and primary_drop (the task's "
            "primary metric) are in percentage points "
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
        "--format", choices=FORMATS, default=None,
        help="text (default): one block per cell; markdown: a verdict and one compact table, the cells that broke "
        "a rule first (for $GITHUB_STEP_SUMMARY or a pull-request comment); json: one JSON object",
    )
    parser.add_argument("--json", action="store_true", help="the same as --format json")
    parser.set_defaults(handler=_cmd_compare)
    return parser


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.fail_on is not None:
        texts, source = args.fail_on, "--fail-on"
    elif args.no_default_rules:
        texts, source = [], ""
    else:
        texts, source = compare_rules()
    rules = parse_rules(texts, source)  # before loading runs: a typo in a rule is cheaper to report first
    storage = storage_path(args.benchmark_storage)
    base_path, new_path = select_runs(storage, [run for run in (args.base, args.new) if run])
    result = compare_runs(
        load_run(base_path, run_label(base_path, storage)),
        load_run(new_path, run_label(new_path, storage)),
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
    if args.json and args.format not in (None, "json"):
        raise QuantbenchError(f"--json and --format {args.format} ask for two formats; pass one")
    kind = "json" if args.json else args.format or "text"
    if kind == "json":
        print(json.dumps(result.to_dict(), sort_keys=True))
    elif kind == "markdown":
        print(format_markdown(result), end="")
    else:
        print(format_comparison(result))
    return 0 if result.ok else 1



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

