"""The report: saved benchmark JSON -> Markdown and self-contained HTML through ``reports_templates/``.

``data`` turns runs into plain values and facts, ``charts`` draws them as SVG, ``render`` fills the Jinja2
templates, ``cli`` is ``quantbench report``.

Example:
    >>> from quant_impl.report import build_report, write_report
    >>> write_report(build_report([Path(".benchmarks/Linux-CPython-3.11-64bit/0001_quick.json")]), Path("reports"))
    [PosixPath('reports/charts/accuracy.en.svg'), ..., PosixPath('reports/report.md'), PosixPath('reports/report.html')]
"""

from quant_impl.report.data import Report, build_report, load_report_run
from quant_impl.report.render import render, write_report

__all__ = ["Report", "build_report", "load_report_run", "render", "write_report"]
