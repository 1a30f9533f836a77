"""Hardware targets a method can run on: ``cpu`` (all cores), ``cpu-1t`` (one thread) and ``cuda``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from quant_impl.errors import QuantbenchError


@dataclass(frozen=True)
class Hardware:
    """One target. ``threads`` is the torch intra-op thread count on CPU (None on CUDA)."""

    id: str
    device: str
    threads: int | None

    def available(self) -> str | None:
        """None when this machine has the target, else the reason it has not."""
        if self.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
        return None

    def activate(self) -> None:
        """Make torch use this target's thread count (a process-wide setting)."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def describe(self) -> str:
        if self.device == "cuda":
            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cuda (absent)"
        return f"cpu, {self.threads} thread{'s' if self.threads != 1 else ''}"


def get_hardware(hw_id: str) -> Hardware:
    """``cpu`` (all cores), ``cpu-<N>t`` (N threads) or ``cuda``.

    Example:
        >>> get_hardware("cpu-1t").threads
        1
    """
    if hw_id == "cpu":
        return Hardware("cpu", "cpu", os.cpu_count() or 1)
    if hw_id == "cuda":
        return Hardware("cuda", "cuda", None)
    if hw_id.startswith("cpu-") and hw_id.endswith("t") and hw_id[4:-1].isdigit() and int(hw_id[4:-1]) > 0:
        return Hardware(hw_id, "cpu", int(hw_id[4:-1]))
    raise QuantbenchError(f"hardware {hw_id!r} is unknown; use 'cpu', 'cpu-<N>t' (e.g. cpu-1t) or 'cuda'")


HARDWARE_IDS = ("cpu", "cpu-1t", "cuda")
