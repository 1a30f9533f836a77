"""The recipes ``quantbench tune`` tries: every registered method this machine runs for the task, with its default
options (pyproject's ``method_options`` applied) and each option set its registration lists as ``tunable``, in an
expected-speed order (native int8 first, simulated kernels last) so that a spent time budget leaves the slow
ones untried. The per-layer fallbacks are added by the search itself (quant_impl.tune.search)."""

from __future__ import annotations

from typing import Any

from quant_impl.errors import QuantbenchError
from quant_impl.hardware import Hardware
from quant_impl.methods import get_method, method_names
from quant_impl.tune.search import Candidate

# Expected speed by precision where the kernel is native: int8 GEMMs first, then 16-bit floats, int4 (dequantized
# per call on most CPUs), the mixed method and FP32 last.
_PRIOR = {"int8": 0, "bf16": 1, "fp16": 1, "int4": 2, "mixed": 3, "fp32": 4}


def candidate_space(method_options: dict[str, dict[str, Any]], hardware: Hardware, task_kind: str,
                    methods: list[str] | None = None) -> tuple[list[Candidate], dict[str, str]]:
    """The candidates and the methods left out with why (not installed, not on this hardware or task)."""
    names = methods or method_names()
    skipped: dict[str, str] = {}
    ranked: list[tuple[tuple[int, int], Candidate]] = []
    for position, name in enumerate(names):
        spec = get_method(name)
        if spec.recipe is not None:
            raise QuantbenchError(f"--methods {name}: {name} is a saved recipe; tune searches registered methods "
                                  f"(its own is {spec.recipe['method']})")
        reason = spec.supports(hardware, task_kind)
        if reason:
            skipped[name] = reason
            continue
        simulated = spec.kernel_on(hardware).kind == "simulated"
        prior = (10 if simulated else 0) + _PRIOR.get(spec.precision, 4)
        base = dict(method_options.get(name, {}))
        ranked.append(((prior, position), Candidate(name, base, "default")))
        for variant in spec.tunable:
            ranked.append(((prior, position), Candidate(name, {**base, **variant}, "variant")))
    ranked.sort(key=lambda item: item[0])
    return [candidate for _key, candidate in ranked], skipped
