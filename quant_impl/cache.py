"""Content-keyed cache entries written atomically (temp folder + rename), so an interrupted run leaves
no half entry and a finished one is reused; each carries a manifest that reading checks, and a lock file
serialises the processes that want the same entry."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from quant_impl.errors import QuantbenchError

T = TypeVar("T")

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


# ---------------------------------------------------------------------------------------------- integrity
# Every entry carries a manifest of its files' sizes and sha256, written after the entry itself: a folder entry
# holds it as MANIFEST inside, a file entry has it beside as "<name>.manifest.json". Reading checks it; an entry
# whose bytes differ (a truncated copy, a full disk, a zeroed block) is moved aside and rebuilt once.
MANIFEST = ".quantbench_manifest.json"
MANIFEST_SUFFIX = ".manifest.json"
LOCK_SUFFIX = ".lock"
LOCK_TIMEOUT_S = 6 * 3600  # the longest build (the seed profile's fine-tune) waits this long at most

log = logging.getLogger(__name__)


def manifest_path(entry: Path) -> Path:
    return entry / MANIFEST if entry.is_dir() else entry.with_name(entry.name + MANIFEST_SUFFIX)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(entry: Path) -> dict[str, list]:
    if entry.is_file():
        return {"": [entry.stat().st_size, _digest(entry)]}
    return {p.relative_to(entry).as_posix(): [p.stat().st_size, _digest(p)]
            for p in sorted(entry.rglob("*")) if p.is_file() and p.name != MANIFEST}


def write_manifest(entry: Path) -> None:
    """Record the sizes and sha256 of ``entry`` (a file or a folder) for :func:`damage`."""
    target = manifest_path(entry)
    write_json_atomic(target, {"version": 1, "files": _files(entry)})


def damage(entry: Path) -> str | None:
    """Why ``entry`` cannot be trusted, or None when it matches its manifest. An entry written before manifests
    existed (no manifest at all) is "unverified": callers may adopt it once it reads back cleanly."""
    manifest = manifest_path(entry)
    if not manifest.is_file():
        return "unverified"
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its manifest is unreadable ({exc})"
    try:
        actual = _files(entry)
    except OSError as exc:
        return f"it is unreadable ({exc})"
    for name in sorted(set(recorded) | set(actual)):
        if name not in actual:
            return f"{name or entry.name} is missing"
        if name not in recorded:
            return f"{name or entry.name} is not in its manifest"
        if list(recorded[name]) != actual[name]:
            size, _ = recorded[name]
            return (f"{name or entry.name} has {actual[name][0]} bytes, expected {size}" if size != actual[name][0]
                    else f"{name or entry.name} does not match its checksum")
    return None


def set_aside(entry: Path, reason: str) -> Path:
    """Move a damaged entry (and its manifest) out of the way, as a hidden "partial" copy that
    ``quantbench cache clear partial`` removes; warn in one line naming it."""
    aside = entry.with_name(f".{entry.name}.damaged-{int(time.time())}")
    manifest = manifest_path(entry)
    if entry.is_file() and manifest.exists():
        manifest.unlink()
    os.replace(entry, aside)
    log.warning("cache entry %s is damaged (%s); moved it to %s and rebuilding it", entry, reason, aside.name)
    return aside


@contextlib.contextmanager
def entry_lock(entry: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold ``<entry>.lock`` while checking or building ``entry``, so two processes never build it twice: the
    second waits (saying so) and then reads what the first wrote. The OS drops the lock of a killed process."""
    from filelock import FileLock, Timeout

    entry.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(entry) + LOCK_SUFFIX)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"quantbench: waiting for another process building {entry} (lock {lock.lock_file})", file=sys.stderr)
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise QuantbenchError(
                f"waited {timeout_s:.0f} s for {lock.lock_file}; if no other quantbench process is running, "
                "delete that file and run again"
            ) from None
    try:
        yield
    finally:
        lock.release()


def trusted(entry: Path, read: Callable[[Path], T]) -> tuple[T | None, bool]:
    """``(read(entry), True)`` when ``entry`` exists and is intact, else ``(None, False)`` after setting a damaged
    one aside. Call it holding :func:`entry_lock`. An unverified entry that reads cleanly gets a manifest."""
    if not entry.exists():
        return None, False
    problem = damage(entry)
    if problem in (None, "unverified"):
        try:
            value = read(entry)
        except Exception as exc:  # noqa: BLE001 - any failure to read a cache entry means: rebuild it
            problem = f"reading it failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            if problem == "unverified":
                write_manifest(entry)
            return value, True
    set_aside(entry, problem)
    return None, False
