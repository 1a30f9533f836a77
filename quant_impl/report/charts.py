"""The report's charts as SVG text (matplotlib, Agg): inlined in the HTML, written beside the Markdown.

Text stays text in the SVG (``svg.fonttype: none``), so the browser draws it with its own fonts: Chinese
labels need no font inside matplotlib, and the files stay small. Every chart takes plain numbers and labels,
so the templates' words (``reports_templates/lang/*.toml``) decide the titles.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from typing import Sequence

# A palette that stays distinct for colour-blind readers (Okabe-Ito), in a fixed order per method.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999")
_STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "quantbench",  # stable element ids: the same data gives the same file
    "font.family": "sans-serif",
    # Fallbacks for Chinese labels where such a font is installed (only used to measure text: the SVG keeps text).
    "font.sans-serif": ["DejaVu Sans", "Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "Arial"],
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _figure(width: float = 7.0, height: float = 3.6, polar: bool = False):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(_STYLE)
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # "font family not found" for fallbacks
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_subplot(111, polar=polar)
    return fig, ax


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    out = io.StringIO()
    with warnings.catch_warnings():
        # Without a CJK font matplotlib only mis-measures Chinese text; the browser draws it with its fonts.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "quantbench"})
    plt.close(fig)
    text = out.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG is inlined in HTML


def colors(names: Sequence[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def bar_chart(names: Sequence[str], values: Sequence[float | None], title: str, ylabel: str,
              reference: float | None = None, fmt: str = "{:.2f}", zoom: bool = False,
              intervals: Sequence[tuple[float, float] | None] | None = None) -> str:
    """Vertical bars, one per method, each labelled with its value; a dashed line at ``reference``.

    ``zoom`` starts the axis near the smallest value (accuracies differ by tenths of a point; from zero they
    would all look equal); the axis then does not start at zero, and its ticks say so. ``intervals`` ((lo, hi)
    per bar, in the values' unit) are drawn as error bars.
    """
    fig, ax = _figure()
    bounds = list(intervals) if intervals is not None else [None] * len(names)
    shown = [(n, v, ci) for n, v, ci in zip(names, values, bounds) if v is not None]
    palette = colors(names)
    errors = None
    if any(ci is not None for _, _, ci in shown):
        # max(0, ...): a value outside its own interval (a hand-edited run) draws no bar rather than failing
        errors = [[max(0.0, v - ci[0]) if ci else 0.0 for _, v, ci in shown],
                  [max(0.0, ci[1] - v) if ci else 0.0 for _, v, ci in shown]]
    bars = ax.bar([n for n, _, _ in shown], [v for _, v, _ in shown], color=[palette[n] for n, _, _ in shown],
                  yerr=errors, capsize=3 if errors else 0, ecolor="#333333")
    shown = [(n, v) for n, v, _ in shown]
    for bar, (_, value) in zip(bars, shown):
        ax.annotate(fmt.format(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    if zoom and shown:
        low, high = min(v for _, v in shown), max(v for _, v in shown)
        if errors:
            low = min(low, *(v - e for (_, v), e in zip(shown, errors[0])))
            high = max(high, *(v + e for (_, v), e in zip(shown, errors[1])))
        pad = max(0.5, (high - low) * 0.5)
        ax.set_ylim(max(0.0, low - 2 * pad), high + pad)
    if reference is not None:
        ax.axhline(reference, color="#555555", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return _svg(fig)


def radar_chart(scores: dict[str, dict[str, float]], axes: Sequence[str], axis_labels: Sequence[str], title: str) -> str:
    """One closed polygon per method over ``axes`` (each in [0, 1])."""
    fig, ax = _figure(6.0, 5.0, polar=True)
    angles = [2 * math.pi * i / len(axes) for i in range(len(axes))]
    palette = colors(list(scores))
    for name, score in scores.items():
        values = [score[a] for a in axes]
        ax.plot(angles + angles[:1], values + values[:1], color=palette[name], linewidth=1.5, label=name)
        ax.fill(angles + angles[:1], values + values[:1], color=palette[name], alpha=0.06)
    ax.set_xticks(angles)
    ax.set_xticklabels(axis_labels)
    ax.set_ylim(0, 1)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0])
    ax.set_yticklabels(["", "0.5", "", "1"], fontsize=7)
    ax.set_title(title, pad=18)
    ax.legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize=8, frameon=False)
    return _svg(fig)


def pareto_chart(points: Sequence[tuple[str, float, float, bool]], title: str, xlabel: str, ylabel: str,
                 front_label: str) -> str:
    """Accuracy (y) against latency (x, log scale) per method; the Pareto front joined by a step line."""
    fig, ax = _figure(7.0, 4.2)
    palette = colors([p[0] for p in points])
    for name, latency, accuracy, on_front in points:
        ax.scatter([latency], [accuracy], s=60 if on_front else 30, color=palette[name],
                   edgecolors="black" if on_front else "none", zorder=3)
        ax.annotate(name, (latency, accuracy), xytext=(4, 4), textcoords="offset points", fontsize=8)
    front = sorted((lat, acc) for _, lat, acc, on in points if on)
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="#333333", linestyle=":",
                linewidth=1, label=front_label)
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    if points and max(p[1] for p in points) / max(min(p[1] for p in points), 1e-9) > 8:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, linewidth=0.3)
    return _svg(fig)


def trend_chart(labels: Sequence[str], series: dict[str, Sequence[float | None]], title: str, ylabel: str) -> str:
    """One line per method across saved runs (gaps where a run lacks the method)."""
    fig, ax = _figure(7.0, 3.6)
    palette = colors(list(series))
    x = list(range(len(labels)))
    for name, values in series.items():
        points = [(i, v) for i, v in zip(x, values) if v is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=palette[name], label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", linewidth=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return _svg(fig)
