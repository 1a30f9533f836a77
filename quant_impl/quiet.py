"""The third-party warnings and log lines a quantbench user cannot act on, hushed by ``quantbench`` and ``pytest
bench`` unless asked for everything (``quantbench COMMAND -v``, ``pytest bench -v``).

Each entry names one message of one library, never a whole library, and nothing quantbench says itself (warnings
from modules under ``quant_impl``, its loggers). Where a hushed notice matters for the numbers, quantbench says
what it means once in its own words instead (quant_impl.methods.half: fp16 emulated on this CPU).
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class HushedWarning:
    """A ``warnings.warn`` to ignore. ``message`` and ``module`` are regexes matched at the start, as
    ``warnings.filterwarnings`` matches them (the message ignoring case); no colons, so that the same filter
    is a pytest ``filterwarnings`` line."""

    message: str
    category: type[Warning]
    module: str

    def pytest_line(self) -> str:
        category = self.category.__name__
        if self.category.__module__ != "builtins":
            category = f"{self.category.__module__}.{self.category.__qualname__}"
        return f"ignore:{self.message}:{category}:{self.module}"


@dataclass(frozen=True)
class HushedLog:
    """Records of the logger named ``logger`` (the exact name it logs under) whose text ``message`` matches
    (a regex searched anywhere)."""

    logger: str
    message: str


WARNINGS: tuple[HushedWarning, ...] = (
    # Inductor's own oneDNN lowering calls torch.tensor() on a tensor while it compiles (torch 2.13).
    HushedWarning(r"To copy construct from a tensor", UserWarning, r"torch\._inductor\."),
    # torch deprecates TorchScript yet scripts its own torch.utils.mkldnn when Inductor imports it, and
    # torch.onnx.export and ov.convert_model still trace with it to hand ONNX Runtime and OpenVINO their graphs.
    HushedWarning(r"`torch\.jit\.(script_method|trace|trace_method)` is deprecated", DeprecationWarning,
                  r"torch\.jit\."),
    # TorchScript tracing reads every property of the model, this deprecated alias included; quantbench never does.
    HushedWarning(r"`is_gradient_checkpointing` is deprecated", FutureWarning, r"transformers\.modeling_utils"),
    # Advice to torchao's authors: its int4 tensor subclass has no cache hash of its own, and torch uses a default.
    HushedWarning(r"\w+ does not implement _stable_hash_for_caching", UserWarning, r"torch\._functorch\."),
)

LOGS: tuple[HushedLog, ...] = (
    # TorchScript tracing reads the model's loss_function property too; a classifier computes its own loss, never
    # this causal-LM one.
    HushedLog("transformers.modeling_utils", r"`loss_type=\w+` was set in the config but it is unrecogni[sz]ed"),
    # torchao's wheel ships CUDA kernel libraries for features quantbench does not use (MX formats, Hopper
    # CUTLASS); they fail to load on every import wherever that build does not fit.
    HushedLog("torchao", r"Failed to load .*[/\\]torchao[/\\]_C_\w"),
    # Triton kernels are for GPUs; the int8/int4 methods quantbench runs do not need them.
    HushedLog("torchao.kernel.intmm", r"Detected no triton"),
    # torchao registers its enums with torch's pytree the old way, which torch now deprecates.
    HushedLog("torch.utils._pytree", r"is an Enum subclass and is now natively supported by torch\.compile"),
)


class _Hush(logging.Filter):
    """Drops the records whose text matches one of the patterns; every other record passes."""

    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format is the handler's to report
            return True
        return not any(pattern.search(text) for pattern in self.patterns)


def _log_filters() -> dict[str, _Hush]:
    patterns: dict[str, list[str]] = {}
    for hushed in LOGS:
        patterns.setdefault(hushed.logger, []).append(hushed.message)
    return {name: _Hush(found) for name, found in patterns.items()}


# One filter object per logger, so that installing twice adds nothing and verbose can take it off again.
_LOG_FILTERS = _log_filters()


def _warning_filter(hushed: HushedWarning) -> tuple:
    """The entry ``warnings.filterwarnings`` puts in ``warnings.filters`` for ``hushed``."""
    return ("ignore", re.compile(hushed.message, re.I), hushed.category, re.compile(hushed.module), 0)


def install(verbose: bool) -> None:
    """Hush WARNINGS and LOGS for the rest of the process, or, when ``verbose``, take them off again: this module
    then hides nothing. Calling it twice adds nothing."""
    for name, hush in _LOG_FILTERS.items():
        if verbose:
            logging.getLogger(name).removeFilter(hush)
        else:
            logging.getLogger(name).addFilter(hush)
    if not verbose:
        # filterwarnings drops an equal entry before it inserts one, so filters never pile up.
        for hushed in WARNINGS:
            warnings.filterwarnings("ignore", message=hushed.message, category=hushed.category,
                                    module=hushed.module)
        return
    ours = [_warning_filter(hushed) for hushed in WARNINGS]
    # In place, as the warnings machinery reads the list; an "ignore" entry leaves nothing cached behind it.
    warnings.filters[:] = [entry for entry in warnings.filters if entry not in ours]


def pytest_lines() -> list[str]:
    """WARNINGS as pytest ``filterwarnings`` lines: pytest resets the filters around each test and puts its own
    "always show deprecations" first, so a bench run needs them there too."""
    return [hushed.pytest_line() for hushed in WARNINGS]
