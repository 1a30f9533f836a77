"""A bench run's journal: every finished cell is appended as one JSON line the moment it is timed, so a run that is
interrupted (Ctrl-C, SIGTERM, a CI timeout) or killed (SIGKILL, a lost VM) keeps what it measured.

pytest-benchmark writes its JSON only when the session ends. The journal lives beside the saved runs, in the
storage folder's ``.journal/`` (pytest-benchmark reads only ``<machine>/*.json``, so it never mistakes a journal
for a run): a header line (what the run is: machine, commit, cells), one line per cell (its benchmark entry as
pytest-benchmark would save it), and an ``end`` line once a run file holds them. A journal without its end line
belongs to a run that died; the next ``pytest bench`` turns it into a run file marked ``partial``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOURNAL_DIR = ".journal"
JOURNAL_VERSION = 1


@dataclass
class JournalContent:
    """What one journal file holds; ``ended`` is False for a run that never saved its file."""

    path: Path
    header: dict[str, Any]
    entries: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False

    @property
    def pid(self) -> int | None:
        value = self.header.get("pid")
        return value if isinstance(value, int) else None

    def missing(self) -> list[str]:
        """Cell ids the run meant to time that the journal holds neither as timed nor as skipped."""
        done = {entry.get("param") for entry in self.entries} | set(self.header.get("skipped_ids", []))
        return [cell for cell in self.header.get("cells", []) if cell not in done]


class Journal:
    """Append-only, one line per write, flushed and fsynced: a kill loses at most the line being written, and a
    torn last line is ignored when the journal is read."""

    def __init__(self, folder: Path, run_id: str) -> None:
        self.path = folder / JOURNAL_DIR / f"{run_id}.jsonl"

    def start(self, header: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write({"kind": "header", "version": JOURNAL_VERSION, "pid": os.getpid(),
                     "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **header})

    def record(self, entry: dict[str, Any]) -> None:
        """One timed cell: its benchmark entry (name, param, stats, extra_info...) as the run file will hold it."""
        self._write({"kind": "cell", "benchmark": entry})

    def skip(self, cell_id: str, reason: str) -> None:
        self._write({"kind": "skip", "param": cell_id, "reason": reason})

    def end(self, saved: str | None) -> None:
        """The run's file was written (``saved``: its path), or there is nothing to save."""
        if self.path.exists():
            self._write({"kind": "end", "saved": saved})

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=True, default=str) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def read_journal(path: Path) -> JournalContent | None:
    """The journal at ``path``; None when it has no readable header (a kill during the very first write)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break  # the line a kill cut short
            raise
    if not records or records[0].get("kind") != "header":
        return None
    content = JournalContent(path, records[0])
    skipped = []
    for record in records[1:]:
        if record.get("kind") == "cell":
            content.entries.append(record["benchmark"])
        elif record.get("kind") == "skip":
            skipped.append(record["param"])
        elif record.get("kind") == "end":
            content.ended = True
    content.header["skipped_ids"] = content.header.get("skipped_ids", []) + skipped
    return content


def unfinished(storage_root: Path) -> list[JournalContent]:
    """Journals of runs that died before saving, oldest first (a live process's own journal is not one)."""
    folder = storage_root / JOURNAL_DIR
    out = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        content = read_journal(path)
        if content is None or content.ended or (content.pid is not None and _alive(content.pid)):
            continue
        out.append(content)
    return out


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def partial_document(content: JournalContent, reason: str) -> dict[str, Any]:
    """A pytest-benchmark run document of a journal's cells, marked partial with the cells it lacks."""
    header = content.header
    quantbench = dict(header.get("quantbench") or {})
    quantbench["partial"] = {"reason": reason, "missing": content.missing(), "cells": len(header.get("cells", [])),
                             "ids": list(header.get("cells", [])), "journal": content.path.name}
    return {
        "machine_info": header.get("machine_info") or {},
        "commit_info": header.get("commit_info") or {},
        "benchmarks": content.entries,
        "datetime": header.get("started"),
        "version": header.get("pytest_benchmark_version"),
        "quantbench": quantbench,
    }
