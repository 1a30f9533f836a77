"""quantbench report: saved JSON -> Markdown and HTML through the Jinja2 templates.

Fixtures: the golden run (an older, partial schema: missing fields), a real quick-profile run of all methods
(tests/data/benchmarks/quick-full/), a single-method run, several runs with a lowered accuracy (history and
regressions) and a run with HTML in names and settings. Numbers in the tables are checked against the JSON
with the formats written out here, independently of quant_impl/report/render.py.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from quant_impl.cli import main
from quant_impl.report import build_report, render, write_report
from quant_impl.session.results import add_speedups

DATA = Path(__file__).parent / "data" / "benchmarks"
GOLDEN = DATA / "Linux-CPython-3.11-64bit" / "0001_golden.json"
FULL = DATA / "quick-full" / "0001_quick.json"
ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _md_table(text: str, first_header: str, second_header: str | None = None) -> list[list[str]]:
    """Rows (cells stripped) of the first Markdown table whose header starts with ``first_header`` (and
    ``second_header``; the summary table's second column is accuracy)."""
    lines = text.splitlines()
    head = f"| {first_header} |" + (f" {second_header} |" if second_header else "")
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


class _Tables(HTMLParser):
    """Cell texts of every <table>, by the table's id (or its position)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id") or f"#{len(self.tables)}", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _expected_summary_row(bench: dict, threshold: float | None) -> list[str]:
    """The summary table's row of a method, formatted from its JSON by hand."""
    info, stats = bench["extra_info"], bench["stats"]
    fp32 = info["method"] == "fp32"
    passed = "–" if fp32 else ("yes" if info["accuracy_drop_pts"] <= threshold else "**no**")
    return [
        info["method"],
        f"{100 * info['accuracy']:.2f}",
        f"{100 * info['f1']:.2f}",
        f"{info['accuracy_drop_pts']:.2f}",
        "–" if fp32 else f"{threshold:.2f}",
        passed,
        f"{info['size_bytes'] / 1e6:.1f}",
        f"{info['compression_ratio']:.2f}x",
        f"{info['peak_rss_mb']:.0f}",
        f"{1000 * stats['median']:.2f}",
        f"{info['speedup_vs_fp32']:.2f}x",
    ]


def _primary_benches(doc: dict) -> dict[str, dict]:
    """Per method, the benchmark at the report's main cell: cpu, largest batch, largest length."""
    cpu = [b for b in doc["benchmarks"] if b["extra_info"]["hardware"] == "cpu"]
    batch = max(b["extra_info"]["batch_size"] for b in cpu)
    seq = max(b["extra_info"]["seq_len"] for b in cpu)
    return {b["extra_info"]["method"]: b for b in cpu
            if b["extra_info"]["batch_size"] == batch and b["extra_info"]["seq_len"] == seq}


# ------------------------------------------------------------------------------------------- full run
def test_full_run_summary_numbers_equal_the_json() -> None:
    doc = json.loads(FULL.read_text())
    thresholds = doc["quantbench"]["run_config"]["thresholds"]
    text, _ = render(build_report([FULL]), "en", "md")
    rows = {row[0]: row for row in _md_table(text, "Method", "Accuracy %")}
    primary = _primary_benches(doc)
    assert set(rows) == set(primary)
    for method, bench in primary.items():
        assert rows[method][:11] == _expected_summary_row(bench, thresholds.get(method)), method


def test_full_run_per_cell_rows_equal_the_json() -> None:
    doc = json.loads(FULL.read_text())
    text, _ = render(build_report([FULL]), "en", "md")
    for bench in doc["benchmarks"]:
        info, stats = bench["extra_info"], bench["stats"]
        row = (f"| {info['hardware']} | {info['threads']} | {info['batch_size']} | {info['seq_len']} | "
               f"{1000 * stats['median']:.2f} | {_ms(info.get('latency_p90_s'))} | {_ms(info.get('latency_p99_s'))} | "
               f"{1000 * stats['iqr']:.2f} | {stats['rounds']} | "
               f"{info['throughput_samples_per_s']:.1f} | {info['speedup_vs_fp32']:.2f}x |")
        assert row in text, (bench["name"], row)


def test_full_run_html_tables_equal_the_markdown() -> None:
    report = build_report([FULL])
    md, _ = render(report, "en", "md")
    html, _ = render(report, "en", "html")
    parser = _Tables()
    parser.feed(html)
    summary = parser.tables["summary"]
    md_rows = _md_table(md, "Method", "Accuracy %")
    assert len(summary) == len(md_rows) + 1  # + the header
    for html_row, md_row in zip(summary[1:], md_rows):
        assert html_row[:5] == md_row[:5] and html_row[6:12] == md_row[6:12]
        assert html_row[5] == md_row[5].strip("*")  # Markdown bolds a failed threshold


def test_full_run_has_every_section_chart_and_fact() -> None:
    report = build_report([FULL])
    md, charts = render(report, "en", "md")
    for heading in ("## 4.1 Baseline model performance", "## 4.2 Dynamic INT8", "## 4.3 Static INT8",
                    "## 4.4 Quantization-aware training", "## 4.5 Half precision", "## 4.6 Comparative analysis",
                    "## 4.7 Discussion", "## Experimental environment", "### Skipped cells"):
        assert heading in md, heading
    assert {c.key for c in charts} == {"accuracy", "size", "latency", "speedup", "memory", "radar", "pareto"}
    for chart in charts:
        assert chart.svg.startswith("<svg") and f"charts/{chart.file_name('en')}" in md
    assert "Composite score = 100 x mean of four axes" in md
    assert "Pareto front" in md and "Best quantized method per criterion" in md
    doc = json.loads(FULL.read_text())
    baseline = doc["quantbench"]["baseline"]
    assert f"| Training texts | {baseline['train_examples']} |" in md
    assert "Frozen while fine-tuning" not in md  # a run from before freeze_layers trained every layer
    splits = baseline["split_sizes"]
    assert f"{splits['train']} / {splits['calibration']} / {splits['test']}" in md
    for skipped in doc["quantbench"]["skipped"]:
        assert skipped["reason"].replace("_", "\\_") in md
    # the seed comparison explains FP16 on a CPU without FP16 arithmetic
    if not doc["machine_info"]["quantbench"]["isa"].get("avx512_fp16"):
        assert "no FP16 arithmetic" in md


def test_zh_report_uses_the_seed_headings_and_the_same_numbers() -> None:
    report = build_report([FULL])
    en, _ = render(report, "en", "md")
    zh, _ = render(report, "zh", "md")
    for heading in ("# 第四章 实验结果与分析", "## 4.1 基线模型性能", "## 4.2 动态 INT8 量化结果", "## 4.6 综合对比分析",
                    "## 4.7 讨论"):
        assert heading in zh
    en_rows, zh_rows = _md_table(en, "Method", "Accuracy %"), _md_table(zh, "方法", "准确率 %")
    numbers = lambda rows: [[c for c in row if re.fullmatch(r"[\d.x–]+", c)] for row in rows]  # noqa: E731
    assert numbers(en_rows) == numbers(zh_rows)


def test_write_report_writes_md_with_chart_files_and_self_contained_html(tmp_path: Path) -> None:
    written = write_report(build_report([FULL]), tmp_path, "en")
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.html").is_file()
    md = (tmp_path / "report.md").read_text()
    for link in re.findall(r"\]\((charts/[^)]+)\)", md):
        assert (tmp_path / link).is_file(), link
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") >= 7
    # self-contained: nothing fetched (no external src/href, stylesheet link or script)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    assert "<script" not in html and "<link" not in html
    assert "@media print" in html and 'name="viewport"' in html
    assert len([p for p in written if p.suffix == ".svg"]) == 7


# ------------------------------------------------------------------------------- partial and odd runs
def test_golden_run_with_missing_fields_renders_dashes_and_lists_them() -> None:
    report = build_report([GOLDEN])
    md, _ = render(report, "en", "md")
    assert report.run.missing == ["evaluation_cached", "peak_rss_sampled_mb", "speedup_vs_fp32_compiled"]
    assert "### Fields missing from this run" in md and "speedup\\_vs\\_fp32\\_compiled" in md
    bf16 = {row[0]: row for row in _md_table(md, "Method", "Accuracy %")}["bf16"]
    assert bf16[8] == "–"  # peak memory recorded as null (not measured) -> a dash, never 0
    assert "| cpu | 2 | 32 | 128 | 412.20 | – | – | 24.73 | 8 | 77.6 | 0.58x | – |" in md  # no tails, no compiled: dashes
    assert "Every cell of the run was measured." in md  # the golden run records no skipped cells


def test_single_method_run_without_fp32(tmp_path: Path) -> None:
    doc = json.loads(GOLDEN.read_text())
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["extra_info"]["method"] == "static-int8"]
    path = _write(tmp_path / "0001_single.json", doc)
    md, charts = render(build_report([path]), "en", "md")
    assert "This run holds no FP32 benchmark" in md
    assert "No method of this section is in this run." in md
    assert [row[0] for row in _md_table(md, "Method", "Accuracy %")] == ["static-int8"]
    html, _ = render(build_report([path]), "zh", "html")
    assert "本次运行没有 FP32 基准" in html


def test_several_runs_show_history_and_mark_regressions(tmp_path: Path) -> None:
    base = json.loads(GOLDEN.read_text())
    lowered = copy.deepcopy(base)
    for bench in lowered["benchmarks"]:
        info = bench["extra_info"]
        if info["method"] == "static-int8":
            info["accuracy"] -= 0.05
            info["accuracy_drop_pts"] += 5.0
    first = _write(tmp_path / "0001_a.json", base)
    second = _write(tmp_path / "0002_b.json", lowered)
    report = build_report([first, second], ["0001_a", "0002_b"], rules=["accuracy_drop:0.5"])
    assert report.history["regression_count"] == 2  # static-int8 at batch 1 and 32
    md, charts = render(report, "en", "md")
    assert "## History across saved runs" in md
    rows = _md_table(md, "Method", "Accuracy %")  # the first "Method" table is the summary; find the history rows
    history = [row for row in _md_table(md[md.index("## History"):], "Method")]
    flagged = [row for row in history if row[-1].startswith("⚠")]
    assert [(row[0], row[1]) for row in flagged] == [("static-int8", "0002\\_b")]
    assert "accuracy dropped 5.00 points" in flagged[0][-1]
    assert {c.key for c in charts} >= {"trend_latency", "trend_accuracy"}
    assert rows  # the summary of the newest run is still there
    html, _ = render(report, "en", "html")
    parser = _Tables()
    parser.feed(html)
    assert sum(1 for row in parser.tables["history-table"] if row[-1].startswith("⚠")) == 1


def test_html_in_names_and_settings_is_escaped(tmp_path: Path) -> None:
    doc = json.loads(GOLDEN.read_text())
    evil = "<script>alert(1)</script>"
    for bench in doc["benchmarks"]:
        if bench["extra_info"]["method"] == "bf16":
            bench["extra_info"]["method"] = evil
            bench["extra_info"]["method_settings"] = {"note": "<img src=x onerror=alert(2)>", "pipe": "a|b"}
    path = _write(tmp_path / "0001_evil.json", doc)
    report = build_report([path])
    html, _ = render(report, "en", "html")
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    md, _ = render(report, "en", "md")
    # Markdown's own escapes, no raw HTML and no HTML entities: every "<" of a value is backslash-escaped.
    assert "\\<script\\>alert(1)\\</script\\>" in md and "\\<img src=x onerror=alert(2)\\>" in md
    assert "<script>" not in md and not re.search(r"(?<!\\)<(img|script)", md) and "a\\|b" in md
    assert "&lt;" not in md and "&gt;" not in md
    # the Markdown table keeps its shape: the escaped pipe does not split the cell
    assert all(len(row) == 13 for row in _md_table(md, "Method", "Accuracy %"))


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_report_defaults_to_the_newest_run_of_this_machine(tmp_path: Path, monkeypatch, capsys) -> None:
    from quant_impl.history import machine_id

    storage = tmp_path / ".benchmarks"
    old = {**json.loads(GOLDEN.read_text()), "machine_info": json.loads(FULL.read_text())["machine_info"]}
    _write(storage / machine_id() / "0001_old.json", old)  # an older run of the same machine: one history
    shutil.copy(FULL, storage / machine_id() / "0002_quick.json")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "-o", "out"]) == 0
    out = capsys.readouterr().out
    assert "Report of " in out and "0002_quick" in out and "(1 run(s))" in out
    assert (tmp_path / "out" / "report.md").is_file() and (tmp_path / "out" / "report.html").is_file()
    assert main(["report", "--all", "--lang", "zh", "--format", "html", "-o", "out"]) == 0
    assert "(2 run(s))" in capsys.readouterr().out
    html = (tmp_path / "out" / "report.zh.html").read_text()
    assert "历次运行的趋势" in html and not (tmp_path / "out" / "report.zh.md").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", "--lang", "fr"], "--lang 'fr': choose one of en, zh"),
        (["report", "--format", "pdf"], "--format 'pdf': choose from md, html"),
        (["report"], "no saved runs in"),
        (["report", "nosuch.json"], "nosuch.json: no such file"),
        (["report", "7"], "no run 0007"),
        (["report", "1", "--all"], "pass RUN arguments or --all, not both"),
    ],
)
def test_cli_report_bad_input_exits_2_with_a_message(tmp_path, monkeypatch, capsys, argv, message) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_report_rejects_corrupt_and_foreign_json(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.json").write_text('{"benchmarks": [')
    assert main(["report", "broken.json"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["report", str(DATA / "plain-pytest-benchmark.json")]) == 2
    assert "holds no quantbench benchmarks" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


# Tall enough for the whole page (about 19,000 px on a desktop and 27,000 px on a phone for nine methods).
@pytest.mark.parametrize("lang, width, height", [("en", 1280, 22000), ("zh", 390, 30000)])
def test_html_opens_in_headless_chromium_without_errors(tmp_path: Path, lang: str, width: int, height: int) -> None:
    """Loads the report in Chromium, checks the console and the network stay quiet, and writes a screenshot
    (under the test's temp folder; the path is printed) for the developer to look at; the charts' colours must be in it.

    Without chromium it skips locally but fails in CI (``CI`` set): a failed install must not turn CI green
    without the browser check."""
    if CHROMIUM is None:
        message = "no chromium on PATH (.ci/run installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {message}: the browser check cannot be skipped in CI; install chromium")
        pytest.skip(message)
    from PIL import Image

    written = write_report(build_report([FULL]), tmp_path, lang, ("html",))
    page = written[-1]
    # Under pytest's temp folder (kept for the last few runs: --basetemp to choose it), never in the checkout.
    shots = tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / f"report-{lang}-{width}px.png"
    done = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--enable-logging=stderr", "--v=0", f"--window-size={width},{height}", f"--screenshot={shot}",
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "net::ERR" in line]
    assert not console, console
    image = Image.open(shot).convert("RGB")
    assert image.size[0] == width
    pixels = list(image.resize((image.size[0] // 4, image.size[1] // 4)).get_flattened_data())
    blue = sum(1 for r, g, b in pixels if abs(r - 0x00) < 40 and abs(g - 0x72) < 40 and abs(b - 0xB2) < 40)
    assert blue > 200, f"no chart colour in the screenshot {shot}"
    print(f"screenshot: {shot}")


# ------------------------------------------------------------------------------ headline and peer engines
def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{1000 * seconds:.2f}"


def _full_doc() -> dict:
    return json.loads(FULL.read_text())


def _edit_method(doc: dict, method: str, **changes) -> None:
    for bench in doc["benchmarks"]:
        if bench["extra_info"]["method"] == method:
            bench["extra_info"].update(changes)


def test_headline_comes_first_and_its_numbers_equal_the_json() -> None:
    doc = _full_doc()
    text, _ = render(build_report([FULL]), "en", "md")
    assert text.index("## At a glance") < text.index("## 4.1 Baseline")
    rows = {row[0]: row for row in _md_table(text, "Method", "Speedup vs FP32 cpu b1")}
    cells = {(b["extra_info"]["method"], b["extra_info"]["batch_size"]): b for b in doc["benchmarks"]
             if b["extra_info"]["hardware"] == "cpu"}
    for (method, batch), bench in cells.items():
        if batch != 1:
            continue
        info = bench["extra_info"]
        big = cells[(method, 32)]["extra_info"]
        n, d, dis = info["eval_examples"], info["accuracy_drop_pts"] / 100, 1 - info["agreement_with_fp32"]
        half = 1.959963984540054 * ((dis - d * d) / n) ** 0.5
        fp32 = method == "fp32"
        threshold = doc["quantbench"]["run_config"]["thresholds"].get(method)
        assert rows[method] == [
            method, f"{info['speedup_vs_fp32']:.2f}x", f"{big['speedup_vs_fp32']:.2f}x",
            "–" if fp32 else f"{info['accuracy_drop_pts']:.2f}",
            "–" if fp32 else f"{100 * (d - half):.2f} to {100 * (d + half):.2f}",
            f"{info['size_bytes'] / 1e6:.1f}",
            "–" if fp32 else ("yes" if info["accuracy_drop_pts"] <= threshold else "**no**"),
            "–",  # the kernel: this run predates the fact, and the report never fills it from today's code
        ], method


def test_ship_sentence_picks_accuracy_only_when_mcnemar_says_it_differs() -> None:
    # The real run: every method's p >= 0.05, so no accuracy winner (and no "best accuracy" in 4.7).
    text, _ = render(build_report([FULL]), "en", "md")
    assert "for accuracy, no method differs measurably from FP32" in text
    assert "Accuracy picks no winner" in text
    # the largest speedup within threshold at each headline batch, for the CPU class the run was timed on
    assert "What to ship on this avx512-bf16 CPU (AMD EPYC):** for speed at cpu b1, qat-int8 (4.37x); for speed at " \
           "cpu b32, qat-int8 (4.52x); for size, fp16 (45.5 MB);" in text
    assert "| CPU class (from the ISA flags) | avx512-bf16 |" in text


def _as_avx2(doc: dict, slow: dict[str, float]) -> None:
    """The run as an AVX2-only VM would have saved it: no AVX-512 flags, and the given methods' speedups."""
    quantbench = doc["machine_info"]["quantbench"]
    quantbench["isa"] = {flag: flag == "avx2" for flag in quantbench["isa"]}
    quantbench.pop("cpu_class", None)  # a run saved before the class was recorded: derived from the flags
    for bench in doc["benchmarks"]:
        info = bench["extra_info"]
        if info["method"] in slow:
            info["speedup_vs_fp32"] = slow[info["method"]]


def test_ship_sentence_on_an_avx2_cpu_says_when_nothing_beats_fp32(tmp_path: Path) -> None:
    doc = _full_doc()
    # As measured on an AVX2-only EPYC (issue 23): int8 slower than FP32 eager at batch 1, compiled FP32 ahead.
    _as_avx2(doc, {"qat-int8": 0.85, "static-int8": 0.87, "dynamic-int8": 0.75, "bf16": 0.4, "mixed-int8-bf16": 0.5,
                   "fp32-compiled": 0.95, "int4-weight-only": 0.61})
    report = build_report([_write(tmp_path / "0001_x.json", doc)])
    text, _ = render(report, "en", "md")
    assert "What to ship on this avx2 CPU (AMD EPYC):** for speed at cpu b1, nothing within its threshold beats FP32 " \
           "eager on this CPU (the fastest, fp32-compiled, is 0.95x);" in text
    assert "| CPU class (from the ISA flags) | avx2 |" in text
    rows = {row["method"]: row for row in report.expectations}
    assert "no_int8_dot" in rows["static-int8"]["reasons"] and "vnni_int8" not in rows["static-int8"]["reasons"]
    assert "no int8 dot-product instructions (no VNNI)" in text
    zh, _ = render(report, "zh", "md")
    assert "在这台 avx2 级 CPU（AMD EPYC）上的部署建议" in zh


def test_a_cpu_reason_names_the_kernels_the_run_recorded(tmp_path: Path) -> None:
    """The reason is backed by what ran: a run that saved each cell's kernels (kernels_run) shows the most executed
    ones beside the verdict; a run without them (older quantbench) shows the reason alone."""
    doc = _full_doc()
    _as_avx2(doc, {"static-int8": 0.87})
    for bench in doc["benchmarks"]:
        if bench["extra_info"]["method"] == "static-int8":  # as forced to avx2 on Zen 4 (quantbench profile)
            bench["extra_info"]["kernels_run"] = {"matmul: gemm:jit": 38, "eltwise: jit:avx2": 6, "reorder: jit:uni": 1}
    report = build_report([_write(tmp_path / "0001_x.json", doc)])
    rows = {row["method"]: row for row in report.expectations}
    assert rows["static-int8"]["kernels"] == "matmul: gemm:jit x38, eltwise: jit:avx2 x6"
    assert rows["dynamic-int8"]["kernels"] is None
    text, _ = render(report, "en", "md")
    line = next(line for line in text.splitlines() if line.startswith("| static-int8 | static INT8 |"))
    assert "no int8 dot-product instructions (no VNNI)" in line and "one call ran matmul: gemm:jit x38" in line
    html, _ = render(report, "en", "html")
    assert "one call ran matmul: gemm:jit x38, eltwise: jit:avx2 x6" in html
    zh, _ = render(report, "zh", "md")
    assert "一次调用运行的内核：matmul: gemm:jit x38" in zh


def test_ship_sentence_names_a_measurably_better_or_worse_method(tmp_path: Path) -> None:
    doc = _full_doc()
    _edit_method(doc, "static-int8", mcnemar_p=0.01, accuracy_drop_pts=-1.0, accuracy=0.892)
    _edit_method(doc, "bf16", mcnemar_p=0.02, accuracy_drop_pts=0.25)
    report = build_report([_write(tmp_path / "0001_x.json", doc)])
    text, _ = render(report, "en", "md")
    assert "for accuracy, static-int8, measurably more accurate than FP32 (McNemar p < 0.05)." in text
    assert "Measurably less accurate than FP32 (McNemar p < 0.05): bf16." in text
    assert report.best["accuracy"] == ("static-int8", 0.892)


def test_a_run_is_judged_by_the_rules_it_saved(tmp_path: Path) -> None:
    doc = _full_doc()
    doc["quantbench"]["methods"] = {"static-int8": {"threshold": 0.05, "section": "4.3", "precision": "int8",
                                                    "engine": "torch", "order": 20, "seed": None}}
    text, _ = render(build_report([_write(tmp_path / "0001_x.json", doc)]), "en", "md")
    row = {r[0]: r for r in _md_table(text, "Method", "Accuracy %")}["static-int8"]
    assert row[4:6] == ["0.05", "**no**"]  # drop 0.10 > the saved 0.05, whatever today's registry says
    assert "| static-int8 | static INT8 |" not in text  # the saved registration had no seed expectation
    # Not saved: the frozen registrations of runs from before quantbench saved them fill in, not today's code.
    assert "| dynamic-int8 | dynamic INT8 |" in text


def test_a_run_saved_before_registrations_were_saved_uses_the_frozen_ones(monkeypatch) -> None:
    """The quick-full fixture predates quantbench.methods: it is judged by the registrations of that time
    (quant_impl/legacy_methods.json), not by today's code."""
    import quant_impl.saved_run as saved_run

    text, _ = render(build_report([FULL]), "en", "md")
    assert "| dynamic-int8 | dynamic INT8 |" in text  # the frozen registration's seed expectation
    frozen = json.loads(saved_run.LEGACY_METHODS_FILE.read_text())
    frozen["dynamic-int8"]["seed"] = None  # the frozen facts, not today's registry, decide
    monkeypatch.setattr(saved_run, "_LEGACY", frozen)
    text, _ = render(build_report([FULL]), "en", "md")
    assert "| dynamic-int8 | dynamic INT8 |" not in text and "| static-int8 | static INT8 |" in text


def _with_peer(doc: dict, factor: float, name: str = "openvino-int8") -> dict:
    peers = [copy.deepcopy(b) for b in doc["benchmarks"] if b["extra_info"]["method"] == "static-int8"]
    for bench in peers:
        bench["extra_info"]["method"] = name
        bench["extra_info"]["size_bytes"] = 23.1e6
        bench["name"] = bench["name"].replace("static-int8", name)
        for key in ("median", "mean", "min", "max"):
            bench["stats"][key] *= factor
    doc["benchmarks"] += peers
    doc["quantbench"]["methods"] = {name: {"threshold": 1.0, "section": "4.5p", "precision": "int8",
                                           "engine": "openvino", "order": 81, "seed": None}}
    return doc


def test_best_torch_int8_against_the_best_peer_int8(tmp_path: Path) -> None:
    doc = _with_peer(_full_doc(), factor=0.8)
    static = {b["extra_info"]["batch_size"]: b for b in doc["benchmarks"]
              if b["extra_info"]["method"] == "static-int8" and b["extra_info"]["hardware"] == "cpu"}
    qat = {b["extra_info"]["batch_size"]: b for b in doc["benchmarks"]
           if b["extra_info"]["method"] == "qat-int8" and b["extra_info"]["hardware"] == "cpu"}
    report = build_report([_write(tmp_path / "0001_x.json", doc)])
    rows = {(r["criterion"], r["cell"]): r for r in report.engines["rows"]}
    for batch in (1, 32):
        row = rows[("latency", ("cpu", batch, 128))]
        fastest = min(static[batch]["stats"]["median"], qat[batch]["stats"]["median"],
                      *(b["stats"]["median"] for b in doc["benchmarks"] if b["extra_info"]["method"] == "dynamic-int8"
                        and b["extra_info"]["hardware"] == "cpu" and b["extra_info"]["batch_size"] == batch))
        assert row["peer"] == "openvino-int8" and row["ahead"] == "peer"
        assert row["ratio"] == pytest.approx(0.8 * static[batch]["stats"]["median"] / fastest)
    assert rows[("size", None)]["ahead"] == "peer" and rows[("size", None)]["ratio"] == pytest.approx(23.1 / 58.9, rel=0.01)
    assert rows[("accuracy", None)]["ahead"] == "none"  # every McNemar p >= 0.05 in this run: no accuracy winner
    md, _ = render(report, "en", "md")
    assert "## Peer engines: ONNX Runtime and OpenVINO" in md and "### openvino-int8" in md
    assert "| Median latency (ms) (cpu b32) |" in md and "the peer engine is ahead" in md
    html, _ = render(report, "en", "html")
    parser = _Tables()
    parser.feed(html)
    assert len(parser.tables["engines"]) == 1 + len(report.engines["rows"])


def test_no_peer_comparison_without_peer_int8() -> None:
    report = build_report([FULL])
    assert report.engines is None
    text, _ = render(report, "en", "md")
    assert "no int8 method of both torch and a peer engine" in text


def test_environment_lists_the_threads_of_each_hardware_cell() -> None:
    text, _ = render(build_report([FULL]), "en", "md")
    assert "| Threads per hardware cell | cpu: 2, cpu-1t: 1 |" in text


# ------------------------------------------------------------------------------------- several models
def _two_profile_run(tmp_path: Path, name: str = "0001_models.json", base_drop: float = 0.0) -> Path:
    """The quick run plus a copy of it as profile 'base' (model bundled-base), its latencies x3 and its
    static-int8 accuracy lowered by ``base_drop`` points: one saved run of two models, as --quant-profiles writes."""
    doc = json.loads(FULL.read_text())
    extra = []
    for bench in doc["benchmarks"]:
        copied = copy.deepcopy(bench)
        copied["name"] = "test_latency[base-" + bench["name"].split("[", 1)[1]
        info = copied["extra_info"]
        info.update(profile="base", model="bundled-base")
        for key in ("median", "mean", "min", "max", "q1", "q3"):
            if key in copied["stats"]:
                copied["stats"][key] *= 3
        if info["method"] == "static-int8" and base_drop:
            info["accuracy"] -= base_drop / 100
            info["accuracy_drop_pts"] += base_drop
        extra.append(copied)
    doc["benchmarks"] += extra
    quick = {key: doc["quantbench"][key] for key in ("run_config", "baseline")}
    base = copy.deepcopy(quick)
    base["run_config"].update(profile="base", model="bundled-base")
    base["baseline"].update(profile="base", model="bundled-base")
    doc["quantbench"]["profiles"] = {"quick": quick, "base": base}
    return _write(tmp_path / name, doc)


def test_a_run_of_two_models_is_reported_per_model_with_a_cross_model_table(tmp_path: Path) -> None:
    report = build_report([_two_profile_run(tmp_path, base_drop=1.0)])
    assert [model.profile for model in report.models] == ["quick", "base"]
    quick, base = report.models
    assert base.run.setup["model"] == "bundled-base" and quick.run.setup["model"] == "bundled"
    # Each model's speedups are against its own FP32: tripling every base latency leaves them unchanged.
    for name in ("static-int8", "dynamic-int8"):
        assert base.run.method(name).primary.speedup == pytest.approx(quick.run.method(name).primary.speedup)
    assert base.run.method("static-int8").drop_pts == pytest.approx(quick.run.method("static-int8").drop_pts + 1.0)
    md, charts = render(report, "en", "md")
    assert "## Models side by side" in md
    assert "# Model: profile quick (bundled)" in md and "# Model: profile base (bundled-base)" in md
    assert md.count("## At a glance") == 2
    cross = {row[0]: row for row in _md_table(md, "Method", "quick Speedup vs FP32 cpu b1")}
    drop = lambda run, name: f"{run.method(name).drop_pts:.2f}"  # noqa: E731
    static = cross["static-int8"]
    assert static[3] == drop(quick.run, "static-int8")
    assert static[6] == drop(base.run, "static-int8") + " **no**"  # 1.10 points is over its 1.0-point threshold
    assert static[1] == static[4] == f"{quick.run.method('static-int8').row_at(quick.run.headline_cells[0]).speedup:.2f}x"
    # Charts per model, each file named by its profile; the history of neither model is mixed in.
    assert {c.file_name("en") for c in charts} >= {"quick.speedup.en.svg", "base.speedup.en.svg"}
    for chart in charts:
        assert f"charts/{chart.file_name('en')}" in md
    html, _ = render(report, "en", "html")
    ids = re.findall(r'\sid="([^"]+)"', re.sub(r"<svg.*?</svg>", "", html, flags=re.S))  # ours, not matplotlib's
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    parser = _Tables()
    parser.feed(html)
    assert {"quick-headline-table", "base-headline-table", "cross-model-table"} <= set(parser.tables)


def test_history_of_two_models_never_pairs_cells_across_models(tmp_path: Path) -> None:
    first = _two_profile_run(tmp_path, "0001_a.json")
    second = _two_profile_run(tmp_path, "0002_b.json", base_drop=5.0)
    report = build_report([first, second], ["0001_a", "0002_b"], rules=["accuracy_drop:0.5"])
    quick, base = report.models
    assert quick.history["regression_count"] == 0
    static_cells = len(base.run.method("static-int8").rows)  # 2 hardware x 2 batch sizes
    assert base.history["regression_count"] == static_cells == 4  # static-int8 of the base model only
    # A single-model older run joins the history of its own model only.
    single = _write(tmp_path / "0000_quick.json", json.loads(FULL.read_text()))
    report = build_report([single, first, second], ["0000_quick", "0001_a", "0002_b"])
    assert [len(model.runs) for model in report.models] == [3, 2]


def test_a_baseline_fine_tuned_with_frozen_layers_says_which(tmp_path: Path) -> None:
    doc = json.loads(FULL.read_text())
    doc["quantbench"]["run_config"]["freeze_layers"] = 2
    md, _ = render(build_report([_write(tmp_path / "0001_quick.json", doc)]), "en", "md")
    assert "| Frozen while fine-tuning | embeddings and encoder layers 0-1 |" in md
    zh, _ = render(build_report([tmp_path / "0001_quick.json"]), "zh", "md")
    assert "| 微调时冻结 | 嵌入层与编码器第 0-1 层 |" in zh


def test_runs_of_two_machines_get_a_section_each_and_a_speedup_table(tmp_path: Path) -> None:
    """Matrix jobs' runs, tagged with --quant-machine-tag: one part per machine, each with the history of its own
    runs only, and a cross-machine table of speedups and drops; no latency is put beside another machine's."""
    def tagged(name: str, tag: str, slower: float = 1.0) -> Path:
        doc = json.loads(FULL.read_text())
        doc["machine_info"]["quantbench"]["machine_tag"] = tag
        for bench in doc["benchmarks"]:
            bench["stats"]["median"] *= slower if bench["extra_info"]["method"] != "fp32" else 1.0
        add_speedups(doc["benchmarks"])  # as the bench derives them when it saves
        return _write(tmp_path / name, doc)

    runs = [tagged("0001_a.json", "cpu-small"), tagged("0002_b.json", "cpu-large", 0.5),
            tagged("0003_a.json", "cpu-small")]
    report = build_report(runs, ["0001_a", "0002_b", "0003_a"])
    assert [(m.machine, len(m.runs)) for m in report.models] == [("cpu-small", 2), ("cpu-large", 1)]
    assert report.cross_model["kind"] == "machine"
    small, large = report.models
    for name in ("static-int8", "qat-int8"):  # cpu-large's methods took half the time against the same FP32
        assert large.run.method(name).primary.speedup == pytest.approx(2 * small.run.method(name).primary.speedup)
    md, charts = render(report, "en", "md")
    assert "## Machines side by side" in md and "# Machine: cpu-small" in md and "# Machine: cpu-large" in md
    header = next(line for line in md.splitlines() if line.startswith("| Method | cpu-small (avx512-bf16) Speedup"))
    assert "ms" not in header and "Median" not in header  # ratios and drops only across machines
    assert {c.file_name("en") for c in charts} >= {"cpu-small.speedup.en.svg", "cpu-large.speedup.en.svg"}
    assert "cpu-small.trend_latency.en.svg" in {c.file_name("en") for c in charts}  # its own two runs
    assert not any(c.file_name("en").startswith("cpu-large.trend") for c in charts)  # one run: no trend
    # Untagged runs are told apart by CPU model: the golden run (a Xeon) and the quick run (an EPYC).
    untagged = build_report([GOLDEN, FULL])
    assert [m.machine for m in untagged.models] == ["Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "AMD EPYC"]


def test_runs_of_two_cpu_classes_rank_methods_per_machine(tmp_path: Path) -> None:
    """The multi-machine report names each machine's CPU class and ranks the methods per machine: on the AVX2 one
    (no int8 dot products) static-int8 is made 4x slower against the same FP32, so its speed rank falls and its
    rank does not hold."""
    def machine(name: str, cpu_class: str, static_slower: float) -> Path:
        doc = json.loads(FULL.read_text())
        doc["machine_info"]["quantbench"].update(machine_tag=name, cpu_class=cpu_class)
        for bench in doc["benchmarks"]:
            if bench["extra_info"]["method"] == "static-int8":
                bench["stats"]["median"] *= static_slower
        add_speedups(doc["benchmarks"])
        return _write(tmp_path / f"0001_{name}.json", doc)

    report = build_report([machine("fast", "avx512-bf16", 1.0), machine("old", "avx2", 4.0)])
    rows = {row["method"]: row for row in report.cross_model["rows"]}
    fast_rank, old_rank = rows["static-int8"]["speed_ranks"]
    assert old_rank > fast_rank + 1 and rows["static-int8"]["stable"] is False
    others = [r for name, r in rows.items() if name not in ("fp32", "static-int8") and len(r["speed_ranks"]) == 2
              and None not in r["speed_ranks"]]
    assert others and all(r["speed_ranks"][1] <= r["speed_ranks"][0] for r in others)  # nothing else got slower
    md, _ = render(report, "en", "md")
    header = next(line for line in md.splitlines() if line.startswith("| Method | fast (avx512-bf16) Speedup"))
    assert "old (avx2) Speedup" in header and "Speed rank per machine" in header and "Rank holds" in header


def test_headline_alone_for_a_job_summary(tmp_path: Path, capsys) -> None:
    assert main(["report", str(FULL), "--headline", "-o", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## At a glance") and "**What to ship on this avx512-bf16 CPU (AMD EPYC):**" in out and not (tmp_path / "none").exists()
    rows = {row[0]: row for row in _md_table(out, "Method")}
    static = json.loads(FULL.read_text())
    drop = next(b["extra_info"]["accuracy_drop_pts"] for b in static["benchmarks"]
                if b["extra_info"]["method"] == "static-int8")
    assert rows["static-int8"][3] == f"{drop:.2f}"
    assert main(["report", str(_two_profile_run(tmp_path)), "--headline"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## Models side by side") and out.count("## At a glance") == 2


_WITHOUT_TORCH = """
import importlib.abc, sys
from pathlib import Path

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "datasets", "torchao") or name.startswith("quant_impl.methods"):
            raise ImportError("blocked: " + name)

sys.meta_path.insert(0, Blocked())
from quant_impl.report import build_report, write_report
written = write_report(build_report([Path(p) for p in sys.argv[2:]]), Path(sys.argv[1]))
assert not [m for m in sys.modules if m == "torch" or m.startswith(("torch.", "quant_impl.methods"))]
print(len(written))
"""


@pytest.mark.parametrize("fixture", [FULL, DATA / "main-7cb11ce" / "0001_main-7cb11ce.json"], ids=["quick-full", "main-7cb11ce"])
def test_a_saved_run_renders_where_torch_and_the_methods_cannot_be_imported(fixture: Path, tmp_path: Path) -> None:
    """The report needs only the run: a checkout without torch, or one that no longer knows the run's methods."""
    import sys

    done = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(tmp_path), str(fixture)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    doc = json.loads(fixture.read_text())
    methods = {b["extra_info"]["method"] for b in doc["benchmarks"] if b.get("extra_info", {}).get("method")}
    for name in methods - {"fp32"}:  # every method of the run has its own section, found without its code
        assert re.search(rf"^### (4\.\S+ )?{re.escape(name)}$", text.replace("\\-", "-"), re.M), name
    assert (tmp_path / "report.html").is_file() and int(done.stdout.strip()) >= 3


def test_ranks_across_tasks_tie_drops_within_noise_and_flag_a_measurable_loss() -> None:
    from quant_impl.report.data import _rank_across

    def value(drop: float, ci: tuple[float, float], speedup: float) -> dict:
        return {"drop_pts": drop, "drop_ci95": ci, "speedups": [speedup]}

    rows = [
        {"method": "fp32", "values": [value(0, (0, 0), 1.0), value(0, (0, 0), 1.0)]},
        {"method": "a", "values": [value(0.3, (-0.1, 0.7), 5.0), value(0.1, (-0.3, 0.5), 5.5)]},
        {"method": "b", "values": [value(0.1, (-0.2, 0.4), 6.0), value(0.6, (0.2, 1.0), 6.5)]},
    ]
    _rank_across(rows)
    fp32, a, b = rows
    assert fp32["drop_ranks"] == [] and fp32["stable"] is None
    assert a["drop_ranks"] == [1, 1] and a["speed_ranks"] == [2, 2] and a["stable"] is True
    assert b["drop_ranks"] == [1, 2] and b["speed_ranks"] == [1, 1] and b["stable"] is True  # spread of one place
    rows[2]["values"].append(value(2.0, (1.0, 3.0), 7.0))
    rows[1]["values"].append(value(0.0, (-0.5, 0.5), 4.0))
    rows[0]["values"].append(value(0, (0, 0), 1.0))
    _rank_across(rows)
    assert rows[2]["drop_ranks"] == [1, 2, 2] and rows[2]["stable"] is True
    rows[1]["values"][2] = value(0.0, (-0.5, 0.5), 9.0)  # now faster than b on the third task only
    _rank_across(rows)
    assert rows[1]["speed_ranks"] == [2, 2, 1] and rows[1]["stable"] is True
    rows.append({"method": "c", "values": [value(0, (-1, 1), 2.0), value(0, (-1, 1), 2.0), value(0, (-1, 1), 20.0)]})
    _rank_across(rows)
    assert rows[3]["speed_ranks"] == [3, 3, 1] and rows[3]["stable"] is False  # two places apart: does not hold


def test_a_partial_run_says_so_and_lists_its_missing_cells(tmp_path: Path) -> None:
    doc = _full_doc()
    dropped = [b["param"] for b in doc["benchmarks"] if b["extra_info"]["method"] == "qat-int8"]
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["param"] not in dropped]
    doc["quantbench"]["partial"] = {"reason": "stopped by signal SIGTERM", "missing": dropped,
                                    "cells": len(doc["benchmarks"]) + len(dropped)}
    report = build_report([_write(tmp_path / "0001_x.json", doc)])
    md, _ = render(report, "en", "md")
    assert (f"**Partial run.** It stopped before every cell was timed (stopped by signal SIGTERM): {len(dropped)} of "
            f"{len(doc['benchmarks']) + len(dropped)} cells are missing") in md
    assert all(cell.replace("_", "\\_") in md for cell in dropped)
    html, _ = render(report, "en", "html")
    assert "Partial run." in html and "qat-int8" not in _md_table(md, "Method", "Accuracy %").__repr__()
