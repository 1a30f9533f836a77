"""A full disk (or quota) while writing a cache entry, a kernel build or a run file ends in one QuantbenchError line
naming the folder, the bytes and the fixes, and leaves nothing half-written (issue 23 item 8). No real model: the
writers' own calls are made to fail the way the OS, safetensors, pyarrow and a compiler under ninja report it."""

from __future__ import annotations

import errno
import json
import os
import pickle
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from quant_impl import cache_entries, data
from quant_impl.cache import DiskFull, atomic_dir, disk_full, human_bytes, write_json_atomic, write_manifest
from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError

SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


class SafetensorError(Exception):
    """Stands in for safetensors_rust.SafetensorError, which carries the errno only in its message."""


def _full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _one_line(exc: pytest.ExceptionInfo[QuantbenchError], *words: str) -> str:
    message = str(exc.value)
    assert "\n" not in message
    for word in ("QUANTBENCH_CACHE=", "quantbench cache clear", "nothing half-written was kept", *words):
        assert word in message, (word, message)
    return message


def _nothing_kept(cache: Path) -> None:
    """No entry and no partial write (a dot-named temp) anywhere in the cache; lock files may stay."""
    assert list(cache_entries.entries(cache)) == []
    assert not [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_write_json_atomic_full_disk_names_file_and_exact_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    path = cache / "evaluations" / "fp32-cpu-0123.json"
    record = {"accuracy": 0.5, "predictions": list(range(50))}
    size = len((json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    monkeypatch.setattr(os, "replace", _full)
    with pytest.raises(QuantbenchError) as exc:
        write_json_atomic(path, record)
    message = _one_line(exc, str(path), f"it needs {human_bytes(size)}", f"free in {path.parent}")
    assert message.startswith("no space left on device while writing") and "about" not in message
    _nothing_kept(cache)


def test_atomic_dir_safetensors_full_disk_says_about_and_removes_the_temp(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    final = cache / "baselines" / "tiny-0123"
    with pytest.raises(QuantbenchError) as exc:
        with atomic_dir(final, needed_bytes=17_600_000) as tmp:
            (tmp / "model.safetensors").write_bytes(b"\0" * 2000)  # what reached the disk before it filled
            raise SafetensorError(SAFETENSORS_FULL)
    _one_line(exc, str(final), "it needs about 17.6 MB", "2.0 kB of it was written", f"free in {final.parent}")
    assert exc.value.__cause__ is None and exc.value.__suppress_context__  # the CLI's one line, no chained traceback
    _nothing_kept(cache)
    assert not final.exists()


def test_atomic_dir_without_an_estimate_gives_what_it_wrote(tmp_path: Path) -> None:
    final = tmp_path / "cache" / "models" / "bundled-base"
    with pytest.raises(DiskFull) as exc:
        with atomic_dir(final) as tmp:
            (tmp / "part").write_bytes(b"x" * 3000)
            _full()
    _one_line(exc, str(final), "it needs more than the 3.0 kB written")
    _nothing_kept(tmp_path / "cache")


def test_full_disk_inside_an_entry_names_the_entry_not_its_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The baseline's record and manifest are written inside atomic_dir's temp folder: the line names the entry."""
    cache = tmp_path / "cache"
    final = cache / "baselines" / "tiny-0123"
    monkeypatch.setattr(os, "replace", _full)
    with pytest.raises(DiskFull) as exc:
        with atomic_dir(final, needed_bytes=5_000_000) as tmp:
            (tmp / "model.safetensors").write_bytes(b"\0" * 1000)
            write_manifest(tmp)
    message = _one_line(exc, f"writing {final} (", "it needs about 5.0 MB")
    assert ".tmp" not in message
    _nothing_kept(cache)


def test_quota_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def over_quota(*args: object) -> None:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "replace", over_quota)
    with pytest.raises(DiskFull) as exc:
        write_json_atomic(tmp_path / "cache" / "r.json", {"a": 1})
    assert str(exc.value).startswith("the disk quota is exceeded while writing")


def test_other_errors_pass_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(PermissionError):
        write_json_atomic(tmp_path / "r.json", {"a": 1})
    with pytest.raises(SafetensorError, match="os error 280"):
        with atomic_dir(tmp_path / "entry"):
            raise SafetensorError("I/O error: something else (os error 280)")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_reads_errno_messages_and_causes() -> None:
    assert disk_full(OSError(errno.ENOSPC, "x")) == errno.ENOSPC
    assert disk_full(SafetensorError(SAFETENSORS_FULL)) == errno.ENOSPC
    assert disk_full(OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device"))
    assert disk_full(RuntimeError("Error building extension: Disk quota exceeded")) == errno.EDQUOT
    try:
        try:
            _full()
        except OSError as inner:
            raise RuntimeError("An error occurred while generating the dataset") from inner
    except RuntimeError as outer:
        assert disk_full(outer) == errno.ENOSPC
    assert disk_full(RuntimeError("could not write: os error 2")) is None
    assert disk_full(ValueError("bad label")) is None


def test_disk_full_crosses_processes_as_its_line(tmp_path: Path) -> None:
    error = DiskFull(tmp_path / "entry", 1234)
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, QuantbenchError) and str(again) == str(error)


def test_tokenized_split_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quant_impl.models import load_tokenizer

    cfg = RunConfig.load("smoke", {"cache_dir": tmp_path / "cache"})
    splits = DatasetDict(train=Dataset.from_dict({"text": ["a good film", "a bad film"], "label": [1, 0]}))

    def arrow_full(self: Dataset, *args: object, cache_file_name: str, **kwargs: object) -> None:
        # datasets' temporary file stays: its clean-up calls finalize(), which fails on the full disk first
        (Path(cache_file_name).parent / "tmpk2x9q1zb").write_bytes(b"\0" * 8192)
        raise OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device")  # pyarrow's

    folder = cfg.cache_dir / "tokenized"
    folder.mkdir(parents=True)
    (folder / "tmp_not_ours").write_text("another process's")
    monkeypatch.setattr(Dataset, "map", arrow_full)
    with pytest.raises(DiskFull) as exc:
        data.tokenize(splits, load_tokenizer("tiny"), cfg)
    _one_line(exc, str(folder / "train-"), f"it needs about {human_bytes(2 * (cfg.max_length * 5 + 16))}")
    (folder / "tmp_not_ours").unlink()  # kept: it was there before
    _nothing_kept(cfg.cache_dir)


def test_kernel_build_full_disk_removes_the_half_built_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils.cpp_extension

    from quant_impl.methods import fused_attention

    def build(name: str, sources: list[str], build_directory: str, **kwargs: object) -> None:
        (Path(build_directory) / "bf16_attention.o").write_bytes(b"\0" * 4096)
        raise RuntimeError(f"Error building extension '{name}': [1/2] c++ -c bf16_attention.cpp\nFAILED: "
                           "bf16_attention.o\nAssembler messages:\nFatal error: can't write 4096 bytes to section "
                           ".text of bf16_attention.o: 'No space left on device'")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", build)
    kernels = tmp_path / "cache" / "kernels"
    with pytest.raises(DiskFull) as exc:
        fused_attention._extension(str(kernels))
    _one_line(exc, str(kernels / "bf16_attention-torch"), "it needs about 1.0 MB", "4.1 kB of it was written")
    assert list(kernels.iterdir()) == []
