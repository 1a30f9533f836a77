"""Fault injection on the cache (tiny model, fast): damaged entries are set aside and rebuilt to the same result,
two processes share one entry without building it twice, and a run killed mid-way leaves nothing trusted."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from quant_impl.cache import MANIFEST, MANIFEST_SUFFIX, damage, manifest_path, trusted, write_manifest
from quant_impl.config import RunConfig

DAMAGED = "is damaged"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero(path: Path) -> None:
    path.write_bytes(b"\0" * path.stat().st_size)


def _wrong_manifest(entry: Path) -> None:
    manifest = manifest_path(entry)
    record = json.loads(manifest.read_text())
    name = sorted(record["files"])[0]
    record["files"][name][1] = "0" * 64
    manifest.write_text(json.dumps(record))


FAULTS = {"truncated": _truncate, "zeroed": _zero}


# ---------------------------------------------------------------------------------------------- the mechanism
@pytest.mark.parametrize("fault", ["truncated", "zeroed", "wrong manifest", "manifest deleted, unreadable"])
def test_damaged_file_entry_is_set_aside(tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    entry = tmp_path / "e.json"
    entry.write_text(json.dumps({"value": list(range(100))}))
    write_manifest(entry)
    assert damage(entry) is None
    if fault == "wrong manifest":
        _wrong_manifest(entry)
    elif fault == "manifest deleted, unreadable":
        manifest_path(entry).unlink()
        _truncate(entry)
    else:
        FAULTS[fault](entry)
    with caplog.at_level(logging.WARNING):
        value, ok = trusted(entry, lambda p: json.loads(p.read_text()))
    assert (value, ok) == (None, False)
    assert not entry.exists() and not manifest_path(entry).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".e.json.damaged-")]
    assert DAMAGED in caplog.text and str(entry) in caplog.text


def test_entry_without_manifest_that_reads_cleanly_is_adopted(tmp_path: Path) -> None:
    entry = tmp_path / "folder"
    entry.mkdir()
    (entry / "a.bin").write_bytes(b"abc")
    assert damage(entry) == "unverified"
    assert trusted(entry, lambda p: (p / "a.bin").read_bytes()) == (b"abc", True)
    assert (entry / MANIFEST).is_file() and damage(entry) is None
    (entry / "extra").write_text("x")
    assert "not in its manifest" in damage(entry)


# ---------------------------------------------------------------------------------------------- real entries
@pytest.fixture()
def smoke_cfg(tmp_path: Path) -> RunConfig:
    return RunConfig.load("smoke", {"cache_dir": tmp_path / "cache"})


@pytest.mark.parametrize("fault", ["truncated", "zeroed", "wrong manifest"])
def test_damaged_baseline_is_rebuilt_to_the_same_accuracy(smoke_cfg, fault, caplog) -> None:
    from quant_impl.train import get_baseline

    first = get_baseline(smoke_cfg)
    weights = first.checkpoint / "model.safetensors"
    _wrong_manifest(first.checkpoint) if fault == "wrong manifest" else FAULTS[fault](weights)
    with caplog.at_level(logging.WARNING):
        again = get_baseline(smoke_cfg)
    assert not again.cached and DAMAGED in caplog.text and first.checkpoint.name in caplog.text
    assert again.eval.accuracy == first.eval.accuracy and again.eval.predictions == first.eval.predictions
    assert get_baseline(smoke_cfg).cached  # and the rebuilt entry is trusted next time


def test_damaged_tokenized_split_and_evaluation_are_rebuilt(smoke_cfg, caplog) -> None:
    import torch

    from quant_impl.session.store import BenchSession
    from quant_impl.hardware import get_hardware

    session = BenchSession(smoke_cfg)
    first = session.evaluation("bf16", get_hardware("cpu"))
    tokens = session.baseline.data["test"][:]["input_ids"].clone()  # before the damage: the split is memory-mapped
    (evaluation,) = [p for p in (smoke_cfg.cache_dir / "evaluations").glob("bf16-*.json")
                     if not p.name.endswith(MANIFEST_SUFFIX)]
    (split,) = (smoke_cfg.cache_dir / "tokenized").glob("test-*.arrow")
    _truncate(evaluation)
    _zero(split)
    with caplog.at_level(logging.WARNING):
        again = BenchSession(smoke_cfg)
        rebuilt = again.evaluation("bf16", get_hardware("cpu"))
    assert caplog.text.count(DAMAGED) == 2
    assert rebuilt.predictions == first.predictions
    assert torch.equal(again.baseline.data["test"][:]["input_ids"], tokens)
    assert "does not match its checksum" in caplog.text and "has" in caplog.text


def test_damaged_qat_state_is_retrained_to_the_same_model(smoke_cfg, caplog) -> None:
    import torch

    from quant_impl.hardware import get_hardware
    from quant_impl.methods import apply
    from quant_impl.methods.qat_int8 import QatInt8Config
    from quant_impl.train import get_baseline

    baseline = get_baseline(smoke_cfg)
    config = QatInt8Config(train_size=16)
    first = apply("qat-int8", baseline, get_hardware("cpu"), config)
    state = Path(first.settings["qat_state"])
    _truncate(state)
    with caplog.at_level(logging.WARNING):
        again = apply("qat-int8", baseline, get_hardware("cpu"), config)
    assert DAMAGED in caplog.text and not again.settings["qat_state_cached"]
    rows = baseline.data["test"][:8]
    torch.testing.assert_close(again(rows["input_ids"], rows["attention_mask"]),
                               first(rows["input_ids"], rows["attention_mask"]))


# ---------------------------------------------------------------------------------------------- processes
def _baseline_in_child(cache_dir: str, queue) -> None:
    from quant_impl.train import get_baseline

    base = get_baseline(RunConfig.load("smoke", {"cache_dir": cache_dir}))
    queue.put((base.cached, base.eval.accuracy, base.checkpoint.name))


def test_two_processes_racing_for_one_baseline_build_it_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_baseline_in_child, args=(str(tmp_path), queue)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=600) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert sorted(cached for cached, _, _ in results) == [False, True]  # one built it, the other waited and read it
    assert len({(accuracy, name) for _, accuracy, name in results}) == 1
    assert [p.name for p in (tmp_path / "baselines").iterdir() if not p.name.endswith(".lock")] == [results[0][2]]


def _killed_in_child(cache_dir: str, where: str) -> None:
    import contextlib

    import quant_impl.train as train

    def die(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "fine-tune":
        train.fine_tune = die
    else:  # the finished checkpoint folder is complete, and the process dies just before renaming it into place
        real = train.atomic_dir

        @contextlib.contextmanager
        def dying(final, **kwargs):
            with real(final, **kwargs) as tmp:
                yield tmp
                die()

        train.atomic_dir = dying
    train.get_baseline(RunConfig.load("smoke", {"cache_dir": cache_dir}))


@pytest.mark.parametrize("where", ["fine-tune", "atomic rename"])
def test_a_run_killed_mid_way_leaves_nothing_trusted(tmp_path: Path, where: str) -> None:
    from quant_impl.cache_entries import select
    from quant_impl.train import get_baseline

    child = multiprocessing.get_context("spawn").Process(target=_killed_in_child, args=(str(tmp_path), where))
    child.start()
    child.join(timeout=600)
    assert child.exitcode == -signal.SIGKILL
    assert [e.kind for e in select(tmp_path, "baselines")] == []  # no entry a later run would trust
    base = get_baseline(RunConfig.load("smoke", {"cache_dir": tmp_path}))  # the lock died with the child
    assert not base.cached and damage(base.checkpoint) is None
    leftovers = [e.path.name for e in select(tmp_path, "partial")]
    assert all(name.startswith(f".{base.checkpoint.name}.") for name in leftovers)
    assert bool(leftovers) == (where == "atomic rename")  # the half-renamed copy is a partial entry, never read


def test_damaged_mixed_selection_is_rebuilt_to_the_same_layer_map(smoke_cfg, caplog) -> None:
    from quant_impl.hardware import get_hardware
    from quant_impl.methods import apply
    from quant_impl.train import get_baseline

    baseline = get_baseline(smoke_cfg)
    first = apply("mixed-int8-bf16", baseline, get_hardware("cpu"))
    (selection,) = [p for p in (smoke_cfg.cache_dir / "mixed").glob("*.json") if not p.name.endswith(MANIFEST_SUFFIX)]
    _zero(selection)
    with caplog.at_level(logging.WARNING):
        again = apply("mixed-int8-bf16", baseline, get_hardware("cpu"))
    assert DAMAGED in caplog.text and not again.settings["selection"]["cached"]
    assert again.settings["layer_map"] == first.settings["layer_map"]
