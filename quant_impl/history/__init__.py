"""Saved benchmark runs: load them, compare two per cell, and gate on rules (``quantbench compare``).

pytest-benchmark saves every ``pytest bench --benchmark-save=NAME`` run as
``<storage>/<machine_id>/NNNN_NAME.json`` (``machine_id`` as ``Linux-CPython-3.11-64bit``). quantbench's
benchmarks carry the keys of :data:`quant_impl.schema.EXTRA_INFO_FIELDS` in their ``extra_info``; a *cell*
is one (profile, method, hardware, batch_size, seq_len) of a run. This package reads only those files, never
live objects, so it runs without torch.

- ``metrics``: what a rule can gate (key, direction, unit); ``rules``: ``--fail-on`` parsing and checks;
- ``runs``: reading a run file into cells; ``storage``: storage folders, run numbers and names;
- ``machines``: whether two runs share a machine; ``compare``: pairing cells, deltas and failures;
- ``text`` and ``markdown``: the comparison printed for a terminal or a job summary; ``cli``: ``quantbench compare``.

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

from quant_impl.config import compare_rules as default_rules
from quant_impl.history.cli import add_compare_parser, main_compare
from quant_impl.history.compare import CellDelta, Comparison, Failure, compare_runs
from quant_impl.history.machines import machine_differences
from quant_impl.history.metrics import METRICS, Metric
from quant_impl.history.rules import RULE_GRAMMAR, Check, DifferenceCheck, PercentageCheck, parse_rule, parse_rules
from quant_impl.history.runs import SAVE_HINT, Cell, CellKey, Run, checked_shape, load_run, read_json
from quant_impl.history.storage import (
    machine_id,
    resolve_run,
    run_label,
    saved_runs,
    select_runs,
    storage_path,
)
from quant_impl.history.markdown import format_markdown
from quant_impl.history.text import format_comparison

__all__ = [
    "METRICS", "RULE_GRAMMAR", "SAVE_HINT", "Cell", "CellDelta", "CellKey", "Check", "Comparison", "DifferenceCheck",
    "Failure", "Metric", "PercentageCheck", "Run", "add_compare_parser", "checked_shape", "compare_runs",
    "default_rules", "format_comparison", "format_markdown", "load_run", "machine_differences", "machine_id", "main_compare",
    "parse_rule", "parse_rules", "read_json", "resolve_run", "run_label", "saved_runs", "select_runs", "storage_path",
]
