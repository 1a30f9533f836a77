"""Where saved runs live: pytest-benchmark's storage folder, one sub-folder per machine, ``NNNN_NAME.json`` runs;
picking runs by number, name or path."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Sequence

from quant_impl.errors import QuantbenchError
from quant_impl.history.runs import SAVE_HINT

# pytest-benchmark names saved runs NNNN_NAME.json; the number grows past 9999 with more digits.
_RUN_FILE = re.compile(r"^(?P<number>[0-9]{4,})_(?P<name>.*)\.json$")


def storage_path(storage: str) -> Path:
    """The folder of a ``--benchmark-storage`` value (a path or ``file://path``, as pytest-benchmark takes).

    Example:
        >>> storage_path("file://.benchmarks")
        PosixPath('.benchmarks')
    """
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    elif "://" in storage:
        raise QuantbenchError(
            f"--benchmark-storage {storage!r}: quantbench compare reads file storage only; "
            "pass a folder or file://FOLDER"
        )
    return Path(storage or ".").expanduser()


def machine_id() -> str:
    """This machine's storage folder name, exactly as pytest-benchmark computes it."""
    from pytest_benchmark.utils import get_machine_id  # pure-stdlib module; imported late to keep startup light

    return get_machine_id()


def saved_runs(folder: Path) -> list[Path]:
    """The ``NNNN_NAME.json`` runs of one machine folder, oldest first (an absent folder has none).

    A run file that is not complete JSON (pytest-benchmark writes it in place, so a run killed while saving
    leaves half a file) is left out with a warning, so "the newest run" is never a broken one.
    """
    if not folder.is_dir():
        return []
    runs = [p for p in folder.iterdir() if p.is_file() and _RUN_FILE.match(p.name) and _complete(p)]
    return sorted(runs, key=lambda p: (int(_RUN_FILE.match(p.name)["number"]), p.name))


def _complete(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
        return True
    logging.getLogger(__name__).warning("skipping %s: not a complete benchmark run (a save that was interrupted?); "
                                        "delete it", path)
    return False


def select_runs(storage: Path, selectors: Sequence[str], machine: str | None = None) -> tuple[Path, Path]:
    """Resolve ``quantbench compare [BASE] [NEW]`` to two files.

    Args:
        storage: the benchmark storage folder (pytest-benchmark's ``--benchmark-storage``).
        selectors: none (the two newest runs of ``machine``), one (that run against the newest) or two.
            Each is a JSON file path, a run number (``3`` or ``0003``), a run name (``NAME`` of
            ``NNNN_NAME.json``, the newest if several) or ``MACHINE_ID/NUMBER_OR_NAME`` for another folder.
        machine: the machine folder; default: this machine's id.

    Example:
        >>> select_runs(Path(".benchmarks"), ["1", "golden-lowered"])
        (PosixPath('.benchmarks/Linux-CPython-3.11-64bit/0001_golden.json'), PosixPath('...0002_golden-lowered.json'))
    """
    if len(selectors) > 2:
        raise QuantbenchError(f"compare takes at most two runs (BASE NEW), got {len(selectors)}: {' '.join(selectors)}")
    folder = storage / (machine or machine_id())
    if len(selectors) == 2:
        return resolve_run(selectors[0], storage, folder), resolve_run(selectors[1], storage, folder)
    runs = saved_runs(folder)
    if len(selectors) == 1:
        if not runs:
            raise QuantbenchError(
                f"no saved runs in {folder} to compare {selectors[0]!r} against; save one with `{SAVE_HINT}` "
                "or name both runs: quantbench compare BASE NEW"
            )
        return resolve_run(selectors[0], storage, folder), runs[-1]
    if len(runs) < 2:
        raise QuantbenchError(
            f"quantbench compare needs two saved runs in {folder} (found {len(runs)}); save runs with "
            f"`{SAVE_HINT}`, or name the runs to compare: quantbench compare BASE NEW (run numbers, names or "
            "JSON files; --benchmark-storage DIR for another storage folder)"
        )
    return runs[-2], runs[-1]


def resolve_run(selector: str, storage: Path, folder: Path) -> Path:
    """One run file from a path, a run number, a run name or ``MACHINE_ID/NUMBER_OR_NAME`` (see select_runs)."""
    candidate = Path(selector).expanduser()
    if candidate.is_file():
        return candidate
    if selector.endswith(".json"):
        under = storage / selector
        if under.is_file():
            return under
        raise QuantbenchError(
            f"{selector}: no such file; pass an existing run file, a run number (e.g. 0003) or a run name"
        )
    if candidate.is_dir():
        raise QuantbenchError(f"{selector}: is a folder; pass a run file in it, or use --benchmark-storage {selector}")
    if "/" in selector.strip("/"):
        machine, _, selector = selector.strip("/").rpartition("/")
        folder = storage / machine
    runs = saved_runs(folder)
    if selector.isdigit():
        wanted = int(selector)
        found = [p for p in runs if int(_RUN_FILE.match(p.name)["number"]) == wanted]
        what = f"no run {wanted:04d}"
    else:
        found = [p for p in runs if selector in (p.stem, _RUN_FILE.match(p.name)["name"])]
        what = f"no run named {selector!r}"
    if found:
        return found[-1]
    raise QuantbenchError(f"{what} in {folder}; {_available(runs, folder)}")


def _available(runs: list[Path], folder: Path) -> str:
    if not runs:
        return f"it holds no saved runs (save one with `{SAVE_HINT}`, or pass --benchmark-storage DIR or a JSON file)"
    names = [p.stem for p in runs]
    shown = ", ".join(names[-8:]) + (f" (and {len(names) - 8} older)" if len(names) > 8 else "")
    return f"saved runs there: {shown}"


def run_label(path: Path, storage: Path) -> str:
    """A run's short name: its path under the storage folder without .json, else the path as given."""
    try:
        return str(path.resolve().relative_to(storage.resolve()).with_suffix(""))
    except ValueError:
        return str(path)

