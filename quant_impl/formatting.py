"""How every quantity quantbench prints is written, with its unit, and how text is escaped per output format: the
one place for both. The report's filters (``FILTERS``, used by every template), ``quantbench compare``'s terminal
and Markdown tables, and the rule messages all format through here, so one figure reads the same everywhere it is
shown at the same precision.

Two precisions, on purpose: the report shows a reader's figures (accuracy in percent with 2 decimals, MB with 1);
``compare`` shows a gate's (accuracy as a fraction with 4 decimals, ms with 3), where a rule's threshold must be
visible in the digits.
"""

from __future__ import annotations

from typing import Any, Callable

DASH = "–"
# pytest-benchmark's timing stats are seconds; they are printed in ms.
_SECONDS_KEYS = frozenset({"min", "max", "mean", "median", "stddev", "iqr", "q1", "q3", "latency_p50_s", "latency_p90_s",
                           "latency_p99_s"})


def or_dash(value: Any) -> str:
    """``value`` as text, a hyphen when it is missing (cell labels: batch and length)."""
    return "-" if value is None else str(value)


# ------------------------------------------------------------------------------------- the report's figures
def _fixed(digits: int) -> Callable[[float | None], str]:
    return lambda value: DASH if value is None else f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    """A fraction in percent (accuracy, F1, agreement)."""
    return DASH if value is None else f"{100 * value:.2f}"


def ratio(value: float | None) -> str:
    """A speedup or compression ratio."""
    return DASH if value is None else f"{value:.2f}x"


def mb(size_bytes: float | None) -> str:
    """Bytes in MB (10^6)."""
    return DASH if size_bytes is None else f"{size_bytes / 1e6:.1f}"


def pval(value: float | None) -> str:
    return DASH if value is None else f"{value:.3g}"


def ci(interval: tuple[float, float] | None) -> str:
    """A 95 % interval of a fraction, in percent."""
    return DASH if interval is None else f"{100 * interval[0]:.2f}–{100 * interval[1]:.2f}"


def pts_ci(interval: tuple[float, float] | None) -> str:
    """A 95 % interval already in points."""
    return DASH if interval is None else f"{interval[0]:.2f} to {interval[1]:.2f}"


FILTERS: dict[str, Callable[..., str]] = {
    "pct": pct,
    "pts": _fixed(2),  # accuracy points
    "ms": _fixed(2),  # milliseconds
    "rate": _fixed(1),  # reviews per second
    "secs": _fixed(1),  # seconds
    "mem": _fixed(0),  # MB of resident memory
    "score": _fixed(1),  # composite score, 0-100
    "fixed1": _fixed(1),
    "cosine": _fixed(4),  # a cosine similarity (embedding fidelity)
    "ratio": ratio,
    "mb": mb,
    "pval": pval,
    "ci": ci,
    "pts_ci": pts_ci,
    "lookup": lambda key, table: table.get(key, key),
}


# ------------------------------------------------------------------------------------- compare's figures
# Each compared key's unit as compare's tables print it.
UNITS = {"size_bytes": " MB", "peak_rss_mb": " MB", "median": " ms", "mean": " ms", "min": " ms", "latency_p90_s": " ms",
         "latency_p99_s": " ms"}


def value_text(key: str, value: float | None) -> str:
    """A saved cell's value (``SavedCell.values[key]``) at compare's precision; a missing one is '-'."""
    if value is None:
        return "-"
    if key in ("accuracy", "f1"):
        return f"{value:.4f}"
    if key == "size_bytes":
        return f"{value / 1e6:.2f}"
    if key == "peak_rss_mb":
        return f"{value:.1f}"
    if key in _SECONDS_KEYS:
        return f"{value * 1e3:.3f}"
    if key == "speedup_vs_fp32":
        return f"{value:.3f}x"
    return f"{value:.4g}"


def amount_text(key: str, amount: float) -> str:
    """An absolute change of ``key`` in the unit of its absolute rules, with the tables' unit beside."""
    if key in _SECONDS_KEYS:
        return f"{amount:.6f} s ({amount * 1e3:.3f} ms)"
    if key == "size_bytes":
        return f"{amount:,.0f} bytes ({amount / 1e6:.2f} MB)"
    if key == "peak_rss_mb":
        return f"{amount:.1f} MB"
    if key == "speedup_vs_fp32":
        return f"{amount:.3f}x"
    return f"{amount:.4g}"


def delta_text(key: str, delta: float | None, delta_pct: float | None) -> str:
    """A change in the key's unit (points for fractions), with its relative change."""
    if delta is None:
        return "(-)"
    if key in ("accuracy", "f1"):
        return f"({delta * 100:+.2f} pts)"
    scaled = {"size_bytes": delta / 1e6, "median": delta * 1e3}.get(key, delta)
    digits = {"size_bytes": 2, "peak_rss_mb": 1}.get(key, 3)
    relative = f", {delta_pct:+.1f}%" if delta_pct is not None else ""
    return f"({scaled:+.{digits}f}{relative})"


def change_text(key: str, new: float | None, delta: float | None, delta_pct: float | None) -> str:
    """``NEW (delta)`` for a Markdown table cell: points for accuracy, percent otherwise; a dash when unmeasured."""
    if new is None:
        return DASH
    value = value_text(key, new)
    if delta is None:
        return value
    if key == "accuracy":
        return f"{value} ({delta * 100:+.2f} pts)"
    return value if delta_pct is None else f"{value} ({delta_pct:+.1f}%)"


# ------------------------------------------------------------------------------------------ escaping
class Words(str):
    """Template text from reports_templates/lang/*.toml: trusted, never escaped (values put into it are)."""


_MARKDOWN_SPECIAL = "\\`*_[]<>|&"


def escape_markdown(value: Any) -> str:
    """Text from a saved run inside Markdown prose or a table: Markdown's own backslash escapes (CommonMark), so
    it cannot break a table, open emphasis or a link, or pass raw HTML -- and no HTML entities end up in the file.
    Trusted template words pass unchanged."""
    if isinstance(value, Words):
        return str(value)
    text = str(value).replace("\n", " ")
    return "".join("\\" + char if char in _MARKDOWN_SPECIAL else char for char in text)


def escape_markdown_code(value: Any) -> str:
    """Text inside a Markdown code span, where backslashes are literal: only what would end the span or the row."""
    return str(value).replace("`", "'").replace("|", "\\|").replace("\n", " ")


def escape_html(value: Any) -> Any:
    """Text from a saved run inside HTML (markupsafe; trusted words are marked up by the caller)."""
    from markupsafe import escape

    return escape(value)
