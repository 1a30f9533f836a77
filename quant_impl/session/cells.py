"""The cells one ``pytest bench`` run parametrizes, and their pytest ids."""

from __future__ import annotations

import itertools

from quant_impl.cells import Cell
from quant_impl.config import RunConfig
from quant_impl.methods import get_method, method_names


def cells(cfgs: RunConfig | list[RunConfig]) -> list[Cell]:
    """Every cell of the run: per setup (profile, task), methods in registry order, the FP32 reference first."""
    out = []
    for cfg in [cfgs] if isinstance(cfgs, RunConfig) else cfgs:
        methods = list(cfg.methods) or method_names()
        for name in methods:
            get_method(name)  # an unknown name fails here with the list of registered ones
        out += [Cell(*combo, profile=cfg.profile, task=cfg.task)
                for combo in itertools.product(methods, cfg.hardware, cfg.batch_sizes, cfg.seq_lens)]
    return out


def cell_ids(run_cells: list[Cell]) -> list[str]:
    """pytest ids: ``method-hardware-bN-sL``, prefixed by the setup (``quick``, ``quick/trec-6``) when the run holds
    several."""
    several = len({c.setup for c in run_cells}) > 1
    return [f"{c.setup}-{c.id}" if several else c.id for c in run_cells]
