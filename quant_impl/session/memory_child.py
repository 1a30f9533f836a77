"""The work behind a method's peak-memory figure, run once in a fresh process by
``quant_impl.measure.memory.measure_in_fresh_process`` (named to it as ``module:function``, see ``CALL``)."""

from __future__ import annotations

from typing import Any

import torch

from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError
from quant_impl.hardware import get_hardware
from quant_impl.methods import apply


def build_and_run_once(config: dict[str, Any], method: str, hardware: str, batch_size: int, seq_len: int) -> None:
    """What a method's peak-memory figure covers (run in a fresh process by measure_in_fresh_process): load the
    cached baseline (an embedding task's encoder as given), build the method, run one batch. It refuses to fine-tune,
    so a figure never includes training."""
    from quant_impl.train import checkpoint_path, get_baseline

    overrides = dict(config)
    cfg = RunConfig.load(profile=overrides.pop("profile", None), overrides=overrides)
    # an embedding task's encoder is used as given: there is no fine-tune to refuse
    if not cfg.embedding and not (checkpoint_path(cfg) / "quantbench_baseline.json").is_file():
        raise QuantbenchError(f"no cached baseline at {checkpoint_path(cfg)}; build it first (quantbench baseline)")
    baseline = get_baseline(cfg)
    built = apply(method, baseline, get_hardware(hardware))
    rows = baseline.data["test"][:batch_size]
    built(rows["input_ids"][:, :seq_len], rows["attention_mask"][:, :seq_len])
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# Derived from the function, so a rename or a move cannot leave the child importing a stale name.
CALL = f"{build_and_run_once.__module__}:{build_and_run_once.__name__}"
