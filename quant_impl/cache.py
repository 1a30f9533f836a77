"""Content-keyed cache entries written atomically (temp folder + rename), so an interrupted run leaves
no half entry and a finished one is reused; each carries a manifest that reading checks, and a lock file
serialises the processes that want the same entry."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
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


# ---------------------------------------------------------------------------------------------- full disks
# safetensors (a Rust error) and a failed compiler under ninja (a RuntimeError) report a full disk only in words.
_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "the disk quota is exceeded"}
_FULL_WORDS = {code: re.compile(rf"{re.escape(os.strerror(code))}|(os error|errno) {code}\b", re.IGNORECASE)
               for code in _FULL}


def human_bytes(n: float) -> str:
    """Example:
        >>> human_bytes(999), human_bytes(17_600_000)
        ('999 B', '17.6 MB')
    """
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def tree_bytes(path: Path) -> int:
    """Bytes of the files in ``path`` (a file or a folder; 0 if it is gone)."""
    with contextlib.suppress(OSError):
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


def disk_full(exc: BaseException) -> int | None:
    """``errno.ENOSPC`` or ``errno.EDQUOT`` when ``exc`` (or what it was raised from) says the disk or the quota
    is full, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DiskFull):
            return current.errno
        if isinstance(current, OSError) and current.errno in _FULL:
            return current.errno
        for code, words in _FULL_WORDS.items():
            if words.search(str(current)):
                return code
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return None


class DiskFull(QuantbenchError):
    """The disk (or quota) filled while writing ``target``: one line with the folder, the bytes and the fixes.

    ``needed`` is the size of what was being written (``estimated``: a forecast, shown as "about"); ``written``
    how much of it reached the disk before the write failed (a lower bound when ``needed`` is unknown)."""

    def __init__(self, target: Path, needed: int | None = None, estimated: bool = False, written: int = 0,
                 code: int = errno.ENOSPC) -> None:
        self.target, self.needed, self.written, self.errno = Path(target), needed, written, code
        folder = self.target.parent
        try:
            free: int | None = shutil.disk_usage(_existing(folder)).free
        except OSError:
            free = None
        figures = []
        if needed:
            figures.append(f"it needs {'about ' if estimated else ''}{human_bytes(needed)}")
            if written:
                figures.append(f"{human_bytes(written)} of it was written before the write failed")
        elif written:
            figures.append(f"it needs more than the {human_bytes(written)} written before the write failed")
        if free is not None:
            figures.append(f"{human_bytes(free)} is free in {folder}")
        super().__init__(
            f"{_FULL.get(code, _FULL[errno.ENOSPC])} while writing {self.target} ({'; '.join(figures)}); nothing "
            "half-written was kept. Free space there (`quantbench cache clear` removes cached entries; each is "
            "rebuilt when a run needs it) or move the cache to a bigger disk with QUANTBENCH_CACHE=/path/on/a/bigger/disk"
        )

    def __reduce__(self) -> Any:  # a child process's full disk reaches its parent as the same line
        return QuantbenchError, self.args


@contextlib.contextmanager
def full_disk_reported(target: Path, needed: int | None = None, estimated: bool = False) -> Iterator[None]:
    """Turn a full disk while writing ``target`` into one :class:`DiskFull` line, for writers that remove their own
    partial output (datasets' ``map``)."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        code = disk_full(exc)
        if code is None:
            raise
        raise DiskFull(target, needed, estimated, code=code) from None


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


@contextlib.contextmanager
def atomic_dir(final: Path, needed_bytes: int | None = None) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; on success rename it to ``final``.

    On an exception (Ctrl-C included) the temporary folder is removed and ``final`` is untouched. If another
    process created ``final`` meanwhile, its entry is kept and ours discarded (same key, same content). A full
    disk ends in one :class:`DiskFull` line naming ``final`` and ``needed_bytes`` (an estimate of the entry's size).
    """
    tmp: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    except Exception as exc:
        code = disk_full(exc)
        if code is None:
            raise
        # a DiskFull from a file written inside tmp would name the temporary folder: name the entry instead
        raise DiskFull(final, needed_bytes, estimated=True, written=tree_bytes(tmp) if tmp else 0, code=code) from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temp file and an atomic replace (a full disk: one :class:`DiskFull` line)."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import: os.umask can only be read by setting it, which is not safe once threads run.
_UMASK = _read_umask()


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temp file and an atomic replace (a full disk: one :class:`DiskFull`
    line naming ``path``; nothing half-written is left)."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would make a committed record unreadable to others
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        code = disk_full(exc) if isinstance(exc, Exception) else None
        if code is not None:
            raise DiskFull(path, len(payload), code=code) from None
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
