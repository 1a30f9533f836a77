"""Content-keyed cache entries written atomically (temp folder + rename), so an interrupted run leaves
no half entry and a finished one is reused."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

# The record a cached baseline folder holds beside its weights (its key, config, training and evaluation).
BASELINE_RECORD = "quantbench_baseline.json"


def cache_key(parts: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able dict (key order does not matter).

    Example:
        >>> cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
        True
    """
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; on success rename it to ``final``.

    On an exception (Ctrl-C included) the temporary folder is removed and ``final`` is untouched. If another
    process created ``final`` meanwhile, its entry is kept and ours discarded (same key, same content).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temp file and an atomic replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def source_fingerprint(files: Iterable[Path]) -> str:
    """Hash of the names and bytes of source files: a cache entry computed by this code is stale once it changes."""
    digest = hashlib.sha256()
    for path in sorted(Path(f) for f in files):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    """Cheap identity of a local file or folder: path, sizes and modification times of its files."""
    path = path.resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return cache_key({"path": str(path), "files": [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]})
