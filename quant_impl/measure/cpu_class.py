"""A CPU's class, from the ISA flags a run recorded: no torch, so saved runs are classified by readers that never
import it (the report, compare)."""

from __future__ import annotations

from typing import Any, Mapping

# From the fastest int8/bf16 instructions down: what decides which methods pay on a CPU (the report's verdicts and
# compare's latency gates hold within one class only). "pre-avx2" CPUs run every path on SSE reference kernels.
CPU_CLASSES = ("amx", "avx512-bf16", "avx512-vnni", "avx512", "avx2-vnni", "avx2", "pre-avx2")


def cpu_class(isa: Mapping[str, Any] | None) -> str | None:
    """The CPU class of a set of ISA flags (``machine_info()["isa"]``); None when no flags were recorded.

    Example:
        >>> cpu_class({"avx2": True, "avx512f": False})
        'avx2'
    """
    if not isa or not any(isa.values()):
        return None
    has = {flag for flag, on in isa.items() if on}
    if has & {"amx_int8", "amx_bf16"}:
        return "amx"
    if "avx512f" in has:
        if "avx512_bf16" in has:
            return "avx512-bf16"
        return "avx512-vnni" if "avx512_vnni" in has else "avx512"
    if "avx2" in has:
        return "avx2-vnni" if "avx_vnni" in has else "avx2"
    return "pre-avx2"


# Classes whose CPUs have int8 dot-product instructions (VNNI or AMX): without them, u8 x s8 products are summed in
# 16 bits (vpmaddubsw) and saturate on full-range activations, so int8 must use 7-bit activations there.
INT8_DOT_CLASSES = ("amx", "avx512-bf16", "avx512-vnni", "avx2-vnni")
# Classes with native bf16 arithmetic (quantbench's fused-bf16 attention kernel needs avx512_bf16).
BF16_CLASSES = ("amx", "avx512-bf16")


def at_most(detected: str | None, forced: str | None) -> str | None:
    """The class quantbench chooses by: ``forced`` (the ``QUANTBENCH_CPU_CLASS`` switch) when set, which may only
    take instructions away; ``detected`` otherwise.

    Example:
        >>> at_most("avx512-bf16", "avx2")
        'avx2'
    """
    if not forced:
        return detected
    if forced not in CPU_CLASSES:
        raise ValueError(f"{forced!r} is not a CPU class; choose one of {', '.join(CPU_CLASSES)}")
    if detected in CPU_CLASSES and CPU_CLASSES.index(forced) < CPU_CLASSES.index(detected):
        raise ValueError(f"this CPU is of class {detected}; it cannot run as {forced} (the switch only takes "
                         f"instructions away: choose one of {', '.join(CPU_CLASSES[CPU_CLASSES.index(detected):])})")
    return forced
