"""What the cache holds, and removing it: ``quantbench cache [list]`` and ``quantbench cache clear``.

The cache folder (``cache_dir``: ``$XDG_CACHE_HOME/quantbench`` by default) has one subfolder per kind of entry;
the kinds below are the whole list, each with how to tell what an entry belongs to. Folders and files whose
names start with a dot are temporary copies of an interrupted write (``atomic_dir``, ``write_json_atomic``):
no run reads them, and ``clear`` removes them as kind ``partial``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from quant_impl.cache import BASELINE_RECORD, LOCK_SUFFIX, MANIFEST_SUFFIX, human_bytes as _human, manifest_path
from quant_impl.errors import QuantbenchError

# kind -> what one entry of it is (the subfolder has the kind's name). A method that keeps a cache of its own
# names its kind in its registration (``cache_kind``): see ``kinds``.
CORE_KINDS = {
    "baselines": "fine-tuned FP32 checkpoint with its test evaluation",
    "tokenized": "token ids of one split",
    "evaluations": "one method's predictions and scores on the test split (or tune's tuning split)",
    "embeddings": "one method's embeddings of one split (the embedding task)",
    "models": "a pretrained encoder fetched for --model (bundled-base)",
    "kernels": "a C++ kernel compiled for this machine (attention=fused-bf16)",
    "tune": "quantbench tune's per-layer sensitivity ranking of one checkpoint",
}
PARTIAL = {"partial": "left by an interrupted write (never read)"}


def kinds() -> dict[str, str]:
    """Every kind of entry: the core ones, those the registered methods keep, and partial writes."""
    from quant_impl.methods import cache_kinds

    return {**CORE_KINDS, **cache_kinds(), **PARTIAL}
DAY_SECONDS = 86400


@dataclass(frozen=True)
class Entry:
    kind: str
    path: Path
    bytes: int
    modified: float  # seconds since the epoch

    @property
    def age_days(self) -> float:
        return max(0.0, (time.time() - self.modified) / DAY_SECONDS)

    def belongs_to(self) -> str:
        """One line on what the entry is for, from its name (and a baseline's own record)."""
        name = self.path.name
        if self.kind == "baselines":
            try:
                meta = json.loads((self.path / BASELINE_RECORD).read_text(encoding="utf-8"))
                config, score = meta.get("config", {}), meta.get("eval", {})
                return (f"model {config.get('model')}, profile {config.get('profile')}, "
                        f"accuracy {score.get('accuracy', float('nan')):.4f}")
            except (OSError, ValueError, AttributeError, TypeError):
                return "unreadable record (clear it: the next run fine-tunes again)"
        if self.kind == "embeddings":  # METHOD-DEVICE-SPLIT-KEY.npy
            parts = name.removesuffix(".npy").rsplit("-", 3)
            return f"{parts[0]} on {parts[1]}, {parts[2]} texts" if len(parts) == 4 else name
        if self.kind == "evaluations":
            method, _, rest = name.removesuffix(".json").rpartition("-")[0].rpartition("-")
            return f"{method} on {rest}" if method else name
        if self.kind not in CORE_KINDS and self.kind != "partial":  # a method's own entry, named after its baseline
            baselines = self.path.parent.parent / "baselines"
            owners = [b.name for b in baselines.iterdir() if name.startswith(b.name + "-")] if baselines.is_dir() else []
            return f"baseline {owners[0]}" if owners else "a baseline no longer cached (safe to clear)"
        if self.kind == "models":
            return f"--model bundled-base ({name})"
        if self.kind == "kernels":
            return f"{CORE_KINDS['kernels']}: {name}"
        if self.kind == "tokenized":
            return f"{name.split('-')[0]} split"
        return kinds().get(self.kind, self.kind)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "bytes": self.bytes,
                "modified": _dt.datetime.fromtimestamp(self.modified, _dt.timezone.utc).isoformat(timespec="seconds"),
                "age_days": round(self.age_days, 2), "belongs_to": self.belongs_to()}


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def entries(cache_dir: Path) -> Iterator[Entry]:
    """Every entry under ``cache_dir``, kind by kind (a missing folder has none)."""
    for kind in kinds():
        if kind == "partial":
            continue
        folder = cache_dir / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name.endswith((MANIFEST_SUFFIX, LOCK_SUFFIX)):
                continue  # an entry's manifest and lock file travel with it
            partial = path.name.startswith(".")
            yield Entry("partial" if partial else kind, path, _size(path), path.stat().st_mtime)


def select(cache_dir: Path, kind: str | None = None, older_than_days: float | None = None) -> list[Entry]:
    if kind is not None and kind not in kinds():
        raise QuantbenchError(f"unknown cache kind {kind!r}; choose one of {', '.join(kinds())}")
    if older_than_days is not None and older_than_days < 0:
        raise QuantbenchError(f"--older-than must be >= 0 days, got {older_than_days}")
    return [e for e in entries(cache_dir)
            if (kind is None or e.kind == kind) and (older_than_days is None or e.age_days > older_than_days)]


def remove(entry: Entry) -> None:
    if entry.path.is_dir():
        shutil.rmtree(entry.path)
    else:
        manifest_path(entry.path).unlink(missing_ok=True)
        entry.path.unlink(missing_ok=True)


def add_cache_parser(commands: Any, add_cache_dir: Any) -> None:
    """``quantbench cache`` (list) and ``quantbench cache clear``; ``add_cache_dir(parser)`` adds --cache-dir."""
    cache = commands.add_parser(
        "cache",
        help="list the cache's entries (size, age, what each belongs to) or clear them",
        description="List what the cache folder holds: fine-tuned baselines, tokenized splits, method "
        f"evaluations, fetched models, compiled kernels ({', '.join(CORE_KINDS)}), the entries methods keep (QAT "
        "states, mixed-precision selections: each method's registration names its kind) and partial writes. "
        "'quantbench cache clear' removes entries; every entry is rebuilt by the next run that needs it.",
    )
    add_cache_dir(cache)
    cache.add_argument("--json", action="store_true", help="print the entries as one JSON object")
    cache.set_defaults(handler=_cmd_list, kind=None, older_than=None)
    actions = cache.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="list entries (the default)",
                                 description="List the cache's entries, oldest kind first.")
    clear = actions.add_parser(
        "clear", help="remove entries (all, or one kind, or those older than some days)",
        description="Remove cache entries. With no KIND and no --older-than, the whole cache is cleared.",
    )
    for sub in (listing, clear):
        add_cache_dir(sub)
        # No argparse choices: the methods' kinds need the registry, which `quantbench --help` must not import.
        sub.add_argument("kind", nargs="?", metavar="KIND",
                         help=f"only entries of this kind: {', '.join(CORE_KINDS)}, partial, or a method's own "
                         "(qat, mixed; `quantbench cache` lists every kind it finds)")
        sub.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                         help="only entries last written more than DAYS days ago")
        sub.add_argument("--json", action="store_true", help="print the entries as one JSON object")
    listing.set_defaults(handler=_cmd_list)
    clear.add_argument("--dry-run", action="store_true", help="print what would be removed and remove nothing")
    clear.set_defaults(handler=_cmd_clear)


def _cache_dir(args: argparse.Namespace) -> Path:
    from quant_impl.config import RunConfig

    return RunConfig.load(overrides={"cache_dir": args.cache_dir}).cache_dir


def _cmd_list(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir(args)
    found = select(cache_dir, args.kind, args.older_than)
    if args.json:
        print(json.dumps({"cache_dir": str(cache_dir), "entries": [e.as_dict() for e in found]}, sort_keys=True))
        return 0
    if not found:
        print(f"{cache_dir}: no entries" + (f" of kind {args.kind}" if args.kind else ""))
        return 0
    print(f"{cache_dir}: {len(found)} entries, {_human(sum(e.bytes for e in found))}")
    print(f"{'kind':<12}{'size':>10}{'age d':>8}  {'entry':<48} belongs to")
    for e in found:
        print(f"{e.kind:<12}{_human(e.bytes):>10}{e.age_days:>8.1f}  {e.path.name[:47]:<48} {e.belongs_to()}")
    return 0


def _cmd_clear(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir(args)
    found = select(cache_dir, args.kind, args.older_than)
    records = [e.as_dict() for e in found]  # before removal: a baseline's record is read from its folder
    for e in found:
        if not args.dry_run:
            remove(e)
    verb = "would remove" if args.dry_run else "removed"
    if args.json:
        print(json.dumps({"cache_dir": str(cache_dir), "dry_run": args.dry_run,
                          "entries": records}, sort_keys=True))
    else:
        print(f"{verb} {len(found)} entries ({_human(sum(e.bytes for e in found))}) from {cache_dir}",
              file=sys.stdout)
    return 0
