"""`quantbench cache`: what the cache holds (kind, size, age, owner) and clearing it by kind and age."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from quant_impl.cache import BASELINE_RECORD
from quant_impl.cli import main

BASELINE = "bundled-0123456789abcdef"
DAY = 86400


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    """A cache with one entry of each kind, a partial write, and an evaluation 10 days old."""
    root = tmp_path / "cache"
    checkpoint = root / "baselines" / BASELINE
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"w" * 1000)
    (checkpoint / BASELINE_RECORD).write_text(json.dumps(
        {"config": {"model": "bundled", "profile": "quick"}, "eval": {"accuracy": 0.882}}))
    (root / "tokenized").mkdir()
    (root / "tokenized" / "test-aaaa.arrow").write_bytes(b"t" * 10)
    (root / "evaluations").mkdir()
    fresh = root / "evaluations" / "static-int8-cpu-bbbb.json"
    old = root / "evaluations" / "dynamic-int8-cpu-cccc.json"
    fresh.write_text("{}")
    old.write_text("{}")
    ten_days_ago = time.time() - 10 * DAY
    os.utime(old, (ten_days_ago, ten_days_ago))
    (root / "qat").mkdir()
    (root / "qat" / f"{BASELINE}-dddd.pt").write_bytes(b"q")
    (root / "qat" / "gone-0000-eeee.pt").write_bytes(b"q")
    (root / "evaluations" / ".static-int8-cpu-ffff.json.1234.tmp").write_text("{")
    (root / "models" / "all-mpnet-base-v2").mkdir(parents=True)
    (root / "models" / "all-mpnet-base-v2" / "model.safetensors").write_bytes(b"m" * 100)
    return root


def _json(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_list_names_kind_size_age_and_owner(cache: Path, capsys: pytest.CaptureFixture) -> None:
    listed = _json(capsys, "cache", "--cache-dir", str(cache), "--json")["entries"]
    by_name = {Path(e["path"]).name: e for e in listed}
    assert len(listed) == 8
    assert by_name[BASELINE]["kind"] == "baselines" and by_name[BASELINE]["bytes"] >= 1000
    assert by_name[BASELINE]["belongs_to"] == "model bundled, profile quick, accuracy 0.8820"
    assert by_name["static-int8-cpu-bbbb.json"]["belongs_to"] == "static-int8 on cpu"
    assert by_name["dynamic-int8-cpu-cccc.json"]["age_days"] == pytest.approx(10, abs=0.1)
    assert by_name[f"{BASELINE}-dddd.pt"]["belongs_to"] == f"baseline {BASELINE}"
    assert "no longer cached" in by_name["gone-0000-eeee.pt"]["belongs_to"]
    assert by_name[".static-int8-cpu-ffff.json.1234.tmp"]["kind"] == "partial"
    assert by_name["test-aaaa.arrow"]["belongs_to"] == "test split"
    assert by_name["all-mpnet-base-v2"]["kind"] == "models" and "bundled-base" in by_name["all-mpnet-base-v2"]["belongs_to"]
    assert main(["cache", "list", "--cache-dir", str(cache)]) == 0
    assert "8 entries" in capsys.readouterr().out


def test_clear_by_kind_and_age(cache: Path, capsys: pytest.CaptureFixture) -> None:
    dry = _json(capsys, "cache", "clear", "evaluations", "--older-than", "5", "--dry-run", "--json",
                "--cache-dir", str(cache))
    assert [Path(e["path"]).name for e in dry["entries"]] == ["dynamic-int8-cpu-cccc.json"]
    assert (cache / "evaluations" / "dynamic-int8-cpu-cccc.json").exists()
    _json(capsys, "cache", "clear", "evaluations", "--older-than", "5", "--json", "--cache-dir", str(cache))
    assert sorted(p.name for p in (cache / "evaluations").iterdir()) == [
        ".static-int8-cpu-ffff.json.1234.tmp", "static-int8-cpu-bbbb.json"]
    _json(capsys, "cache", "clear", "partial", "--json", "--cache-dir", str(cache))
    assert [p.name for p in (cache / "evaluations").iterdir()] == ["static-int8-cpu-bbbb.json"]
    cleared = _json(capsys, "cache", "clear", "--json", "--cache-dir", str(cache))
    assert {e["kind"] for e in cleared["entries"]} == {"baselines", "tokenized", "evaluations", "qat", "models"}
    assert cleared["entries"][0]["belongs_to"].startswith("model bundled")  # read before the folder went
    assert _json(capsys, "cache", "--json", "--cache-dir", str(cache))["entries"] == []


def test_bad_kind_or_age_is_one_line_and_exit_2(cache: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["cache", "clear", "weights", "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err
    assert "unknown cache kind 'weights'; choose one of baselines, tokenized" in err and "qat" in err
    assert main(["cache", "clear", "--older-than", "-1", "--cache-dir", str(cache)]) == 2
    assert "--older-than must be >= 0" in capsys.readouterr().err
    assert (cache / "baselines" / BASELINE).is_dir()


def test_a_method_s_own_cache_kind_comes_from_its_registration(cache: Path, capsys, monkeypatch) -> None:
    """A new method that keeps a cache names its kind in its registration; `quantbench cache` lists and clears
    its entries with no change to cache_entries.py."""
    from dataclasses import dataclass

    from quant_impl.methods import registry
    from quant_impl.methods.kernels import Kernel

    @dataclass(frozen=True)
    class ToyConfig:
        version: int = 1

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_method("toy-cache", ToyConfig, threshold=1.0, min_sqnr_db=10.0, section="4.5",
                             precision="int8", order=99, summary="a toy",
                             cache_kind=("toycache", "a toy method's own state"),
                             kernel=Kernel("simulated", "a toy"))(
        lambda baseline, hardware, config: None)
    (cache / "toycache").mkdir()
    (cache / "toycache" / f"{BASELINE}-9999.pt").write_bytes(b"x" * 7)
    assert main(["cache", "list", "toycache", "--json", "--cache-dir", str(cache)]) == 0
    listed = json.loads(capsys.readouterr().out)["entries"]
    assert [(e["kind"], e["bytes"], e["belongs_to"]) for e in listed] == [("toycache", 7, f"baseline {BASELINE}")]
    assert main(["cache", "clear", "toycache", "--cache-dir", str(cache)]) == 0
    assert not any((cache / "toycache").iterdir()) and (cache / "qat").is_dir()
    monkeypatch.setattr(registry, "_REGISTRY", {k: v for k, v in registry._REGISTRY.items() if k != "toy-cache"})
    assert main(["cache", "list", "toycache", "--cache-dir", str(cache)]) == 2  # unknown kind once it is gone
    assert "unknown cache kind 'toycache'" in capsys.readouterr().err
