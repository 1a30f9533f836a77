"""Saved runs as ``quantbench compare`` reads them: :mod:`quant_impl.saved_run` is the one reader (history and
the report alike); a compared cell's values are its schema fields and stats keys (``SavedCell.values``)."""

from __future__ import annotations

from quant_impl.cells import Cell as CellKey
from quant_impl.saved_run import SAVE_HINT, SavedCell as Cell, SavedRun as Run, checked_shape, read_json
from quant_impl.saved_run import load_saved_run as load_run

__all__ = ["SAVE_HINT", "Cell", "CellKey", "Run", "checked_shape", "load_run", "read_json"]
