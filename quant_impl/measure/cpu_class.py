"""A CPU's class, from the ISA flags a run recorded: no torch, so saved runs are classified by readers that never
import it (the report, compare)."""

from __future__ import annotations

from typing import Any, Mapping

# The forced-fallback switch: quantbench's ISA-dependent choices (int8 activation range, fused attention) and the
# kernels of torch, oneDNN and fbgemm (LIBRARY_CAPS) behave as on a CPU of this class, so the paths of older CPUs are
# tested on newer ones. It cannot add instructions.
FORCE_CPU_CLASS_ENV = "QUANTBENCH_CPU_CLASS"

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


# What QUANTBENCH_CPU_CLASS also takes away from the libraries that pick kernels by ISA, so a forced class runs the
# older CPU's kernels and not only quantbench's choices: ATen's vectorized ops, oneDNN (torch's int8 and fp32
# Linears; OpenVINO's CPU plugin reads the same variable) and fbgemm (torch-ao's eager int8). Measured on a Zen 4 VM
# forced to avx2: oneDNN ran brg_matmul:avx2 and full-range dynamic-int8 lost its logits to 16-bit saturation
# (8.7 dB SQNR on the tiny MPNet), as on a real AVX2-only EPYC. ONNX Runtime's MLAS picks by cpuid and has no such
# switch. Each library reads its variable once, at its first kernel: set in the environment before that.
LIBRARY_CAPS: dict[str, dict[str, str]] = {
    "amx": {},
    "avx512-bf16": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16",
                    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX512_E1"},
    "avx512-vnni": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI",
                    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX512_E1"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "FBGEMM_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx2-vnni": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2_VNNI", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"},
    "pre-avx2": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def cap_libraries(environ: dict[str, str] | Any, forced: str | None) -> dict[str, str]:
    """Put ``forced``'s library caps (:data:`LIBRARY_CAPS`) into ``environ`` where the user set none; returns the
    caps now in effect for the class (the user's own values win). Nothing for no class or an unknown one (the
    error is raised where the class is read, by ``effective_cpu_class``).

    Example:
        >>> env = {"ONEDNN_MAX_CPU_ISA": "AVX2_VNNI"}
        >>> cap_libraries(env, "avx2")["ONEDNN_MAX_CPU_ISA"], env["ATEN_CPU_CAPABILITY"]
        ('AVX2_VNNI', 'avx2')
    """
    if not forced or forced not in LIBRARY_CAPS:
        return {}
    for name, value in LIBRARY_CAPS[forced].items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in LIBRARY_CAPS[forced]}
