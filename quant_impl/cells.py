"""A cell: one (method, hardware, batch size, length, profile, task) experiment -- what the bench runs and what a
saved run holds. The same key in two runs is the same experiment; cells of different setups (profile = model, and
task) are never paired.

Torch-free: the bench, ``quantbench compare`` and the report all use this one definition.
"""

from __future__ import annotations

from typing import Any, NamedTuple


# The task of runs saved before tasks existed, and the one a setup key leaves unnamed (so their keys still pair).
DEFAULT_TASK = "imdb"


def setup_key(profile: str | None, task: str | None) -> str | None:
    """The name of a (profile, task) setup: ``quick`` for the default task, ``quick/trec-6`` for another. Each setup
    has its own baseline and FP32 reference."""
    if task in (None, DEFAULT_TASK):
        return profile
    return f"{profile}/{task}" if profile else task


class Cell(NamedTuple):
    method: str
    hardware: str | None
    batch_size: int | None
    seq_len: int | None
    profile: str | None = None
    task: str = DEFAULT_TASK

    @property
    def setup(self) -> str | None:
        """The (profile, task) this cell was measured in (see :func:`setup_key`)."""
        return setup_key(self.profile, self.task)

    @property
    def id(self) -> str:
        """The pytest id: ``method-hardware-bN-sL``."""
        return f"{self.method}-{self.hardware}-b{self.batch_size}-s{self.seq_len}"

    @property
    def group(self) -> str:
        """Benchmarks in one group share model, hardware and shape, so pytest-benchmark's table compares methods."""
        return f"{self.setup}: {self.hardware} batch {self.batch_size} x {self.seq_len} tokens"

    @property
    def shape(self) -> tuple[str, int | None, int | None]:
        """(hardware, batch size, length): what a method's rows are keyed by within one setup."""
        return (self.hardware or "?", self.batch_size, self.seq_len)

    @property
    def label(self) -> str:
        batch, seq_len = _or_dash(self.batch_size), _or_dash(self.seq_len)
        return f"{self.method} {self.hardware or '?'} batch {batch} seq_len {seq_len}"

    @property
    def qualified_label(self) -> str:
        """The label with its setup, for comparisons that hold several models or tasks."""
        return f"{self.setup}: {self.label}" if self.setup else self.label

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


# Kept for readers of saved runs, where the name says what it is used for.
CellKey = Cell


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)
