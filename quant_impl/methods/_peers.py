"""What the peer engines (ONNX Runtime, OpenVINO) share: their files, their size, threads per session, inputs.

A peer runs outside torch, so two things the torch methods get from torch need a stand-in here:

* Threads. Torch methods read the process-wide ``torch.set_num_threads`` that ``Hardware.activate`` sets before
  every cell, and one build serves ``cpu`` and ``cpu-1t``. A peer session fixes its thread count when it is
  created, so :class:`PerThreadSessions` keeps one session per thread count and picks the one matching
  ``torch.get_num_threads()`` at call time: the same rule, so a cell's thread count is the same for every engine.
* Size. What a deployment ships is the engine's files (``.onnx``; ``.xml`` + ``.bin``), so size is their bytes.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from quant_impl.measure.machine import effective_cpu_class, has_int8_dot_product
from quant_impl.measure.size import Size
from quant_impl.methods._common import calibration_batches

PEERS_EXTRA = "peers"
# The export's example batch: 2 reviews at full length; the graphs get dynamic batch and sequence axes.
EXPORT_BATCH = 2


class PerThreadSessions:
    """``get()`` -> the engine session for the current ``torch.get_num_threads()``, created on first use."""

    def __init__(self, make: Callable[[int], Any]) -> None:
        self._make = make
        self._sessions: dict[int, Any] = {}

    def get(self) -> Any:
        threads = torch.get_num_threads()
        if threads not in self._sessions:
            self._sessions[threads] = self._make(threads)
        return self._sessions[threads]

    @property
    def thread_counts(self) -> list[int]:
        return sorted(self._sessions)


def work_dir(owner: object, prefix: str) -> Path:
    """A temporary folder for an engine's files that lives as long as ``owner`` (removed when it is collected
    or at exit), so built models in one session never share or leak files."""
    path = Path(tempfile.mkdtemp(prefix=f"quantbench-{prefix}-"))
    weakref.finalize(owner, shutil.rmtree, str(path), ignore_errors=True)
    return path


def files_size(paths: Iterable[Path], what: str) -> Size:
    """The bytes of the files a deployment ships."""
    paths = list(paths)
    names = " + ".join(p.name for p in paths)
    return Size(sum(p.stat().st_size for p in paths), f"bytes of the {what} files ({names})")


def numpy_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, np.ndarray]:
    """The two model inputs as int64 numpy arrays, named as in the exported graphs."""
    return {
        "input_ids": input_ids.detach().cpu().to(torch.int64).numpy(),
        "attention_mask": attention_mask.detach().cpu().to(torch.int64).numpy(),
    }


def calibration_feed(baseline: Any, batch_size: int, batches: int | None) -> list[dict[str, np.ndarray]]:
    """The calibration split as numpy input dicts (the peers calibrate on the same reviews as static-int8)."""
    return [numpy_inputs(ids, mask) for ids, mask in calibration_batches(baseline, batch_size, batches)]


# The peers' int8 weights in 8 bits ("full") or 7 ("reduced"); "auto": reduced on CPUs without int8 dot products,
# where u8 x s8 pairs are summed in 16 bits and saturate. Each engine documents this remedy: ONNX Runtime's
# quantize_* reduce_range ("may improve the accuracy ... on non-VNNI machine"), NNCF's overflow_fix.
WEIGHT_RANGES = ("auto", "full", "reduced")


def weight_range(asked: str) -> tuple[str, str]:
    """(``full`` or ``reduced``, why) for a peer config's ``weight_range`` on this machine."""
    if asked != "auto":
        return asked, f"weight_range={asked!r} asked"
    if has_int8_dot_product():
        return "full", "auto: int8 dot-product instructions, no saturation"
    return "reduced", f"auto: this {effective_cpu_class() or 'unknown'} CPU has no int8 dot-product instructions"
