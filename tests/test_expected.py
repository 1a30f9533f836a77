"""The absolute accuracy gate (quant_impl/expected.py) on synthetic predictions: what it catches and what it lets
through. The committed record itself is checked on the real quick model in test_accuracy_thresholds.py."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from quant_impl import expected
from quant_impl.cli import main
from quant_impl.config import RunConfig, expected_record_path
from quant_impl.errors import QuantbenchError

N = 2000


def _world(seed: int = 0) -> tuple[list[int], dict[str, list[int]]]:
    """Labels and three methods' predictions at about 88 % accuracy, like the quick model's."""
    rng = random.Random(seed)
    labels = [rng.randint(0, 1) for _ in range(N)]
    methods = {}
    for name in ("fp32", "static-int8", "bf16"):
        methods[name] = [y if rng.random() < 0.88 else 1 - y for y in labels]
    return labels, methods


def _record(labels: list[int], methods: dict[str, list[int]]) -> dict:
    results = {name: SimpleNamespace(accuracy=sum(p == y for p, y in zip(preds, labels)) / N, predictions=preds)
               for name, preds in methods.items()}
    cfg = RunConfig.load("smoke")
    baseline = SimpleNamespace(data={"test": [0] * N})
    return json.loads(json.dumps(expected.build(cfg, baseline, results)))


def _lose(predictions: list[int], labels: list[int], reviews: int, seed: int = 1) -> list[int]:
    """``predictions`` with ``reviews`` right answers turned wrong."""
    rng = random.Random(seed)
    right = [i for i, (p, y) in enumerate(zip(predictions, labels)) if p == y]
    out = list(predictions)
    for i in rng.sample(right, reviews):
        out[i] = 1 - out[i]
    return out


def test_the_same_predictions_pass_with_a_zero_drop() -> None:
    labels, methods = _world()
    record = _record(labels, methods)
    for name, preds in methods.items():
        verdict = expected.check(name, record, preds, labels)
        assert verdict.ok and verdict.drop_pts == 0 and verdict.changed == 0


def test_fp32_and_every_method_one_point_lower_together_fail() -> None:
    """The regression the relative gate misses: all lose a point, so every drop vs FP32 stays the same."""
    labels, methods = _world()
    record = _record(labels, methods)
    lowered = {name: _lose(preds, labels, N // 100) for name, preds in methods.items()}
    relative = {name: expected.check(name, record, preds, labels).measured for name, preds in lowered.items()}
    assert relative["static-int8"] - relative["fp32"] == pytest.approx(
        record["methods"]["static-int8"]["accuracy"] - record["methods"]["fp32"]["accuracy"])
    for name, preds in lowered.items():
        verdict = expected.check(name, record, preds, labels)
        assert not verdict.ok and verdict.drop_pts == pytest.approx(1.0), verdict.describe()
        assert verdict.describe().startswith(f"FAIL {name}: ")


def test_noise_that_cancels_out_passes() -> None:
    """Another CPU's kernels may flip a few predictions either way: no measurable drop, no failure."""
    labels, methods = _world()
    record = _record(labels, methods)
    rng = random.Random(3)
    for name, preds in methods.items():
        right = [i for i in range(N) if preds[i] == labels[i]]
        wrong = [i for i in range(N) if preds[i] != labels[i]]
        noisy = list(preds)
        for i in rng.sample(right, 20) + rng.sample(wrong, 20):  # borderline reviews go either way
            noisy[i] = 1 - noisy[i]
        verdict = expected.check(name, record, noisy, labels)
        assert verdict.changed == 40 and verdict.drop_pts == 0 and verdict.ok, verdict.describe()


def test_a_small_one_sided_loss_is_caught_only_when_the_split_resolves_it() -> None:
    labels, methods = _world()
    record = _record(labels, methods)
    assert expected.check("bf16", record, _lose(methods["bf16"], labels, 2), labels).ok  # 0.1 pt: below resolution
    assert not expected.check("bf16", record, _lose(methods["bf16"], labels, 10), labels).ok  # 0.5 pt, one-sided


def test_records_for_another_baseline_or_method_are_clear_errors(tmp_path: Path) -> None:
    labels, methods = _world()
    record = _record(labels, methods)
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(record))
    cfg = RunConfig.load("smoke")
    baseline = SimpleNamespace(data={"test": [0] * N})
    assert expected.load(path, expected.identity(cfg, baseline))["methods"].keys() == methods.keys()
    with pytest.raises(QuantbenchError, match=r"another baseline \(seed: recorded 0, this run 4\).*expected --write"):
        expected.load(path, expected.identity(cfg.replace(seed=4), baseline))
    with pytest.raises(QuantbenchError, match="no accuracy record at .*expected --write"):
        expected.load(tmp_path / "none.json", {})
    with pytest.raises(expected.NotInRecord, match="int4-weight-only: not in the record .*quantbench expected --write"):
        expected.check("int4-weight-only", record, methods["bf16"], labels)
    with pytest.raises(QuantbenchError, match="the test split changed"):
        expected.check("bf16", record, methods["bf16"][:100], labels[:100])


def test_the_cli_writes_then_checks_a_record(tmp_path: Path, capsys) -> None:
    common = ["--profile", "smoke", "--cache-dir", str(tmp_path / "cache"), "--methods", "fp32,bf16",
              "--record", str(tmp_path / "smoke.json")]
    assert main(["expected", "--write", *common]) == 0
    record = json.loads((tmp_path / "smoke.json").read_text())
    assert set(record["methods"]) == {"fp32", "bf16"} and len(record["methods"]["fp32"]["predictions"]) == 32
    assert main(["expected", *common]) == 0
    out = capsys.readouterr().out
    assert "OK fp32: " in out and "OK: 2 method(s) within the record" in out
    # A method the record does not hold (added since): listed, and no failure of the gate.
    assert main(["expected", "--check", *common[:-3], "fp32,bf16,fp32-compiled", *common[-2:]]) == 0
    out = capsys.readouterr().out
    assert "not in the record: fp32-compiled: not in the record" in out
    assert "OK: 2 method(s) within the record" in out and "not in the record: fp32-compiled (run `quantbench expected --write`)" in out
    # A record whose FP32 got 4 more reviews right than today's: a real, one-sided drop of 12.5 points on 32.
    from quant_impl.train import get_baseline

    labels = [int(y) for y in get_baseline(RunConfig.load("smoke", {"cache_dir": tmp_path / "cache"})).data["test"]["label"]]
    today = [int(c) for c in record["methods"]["fp32"]["predictions"]]
    wrong = [i for i, (p, y) in enumerate(zip(today, labels)) if p != y]
    assert len(wrong) >= 4  # the tiny smoke model is far from perfect
    better = list(today)
    for i in wrong[:4]:
        better[i] = labels[i]
    record["methods"]["fp32"]["predictions"] = expected.encode(better)
    (tmp_path / "smoke.json").write_text(json.dumps(record))
    assert main(["expected", *common]) == 1
    out = capsys.readouterr().out
    assert "FAIL fp32: " in out and "drop +12.50 pt" in out and "OK bf16: " in out
    assert "FAILED: fp32 measurably below the record" in out


def test_the_record_path_follows_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.quantbench]\nexpected_dir = "gate"\n')
    assert expected_record_path("quick", tmp_path / "pyproject.toml") == tmp_path / "gate" / "quick.json"


def test_a_task_judged_by_one_classs_f1_is_checked_on_that_metric() -> None:
    """sms-spam's record is judged by spam F1 (a paired bootstrap): losing 30 of ~240 spam hits fails even though
    accuracy moves only 1.5 points; the same predictions pass with a zero drop. Predictions of 6 classes encode."""
    rng = random.Random(3)
    labels = [1 if rng.random() < 0.12 else 0 for _ in range(N)]
    preds = [y if rng.random() < 0.97 else 1 - y for y in labels]
    record = _record(labels, {"fp32": preds})
    same = expected.check("fp32", record, preds, labels, "f1:spam", ("ham", "spam"))
    assert same.ok and same.drop_pts == 0
    hits = [i for i, (p, y) in enumerate(zip(preds, labels)) if p == y == 1]
    worse = list(preds)
    for i in rng.sample(hits, 30):
        worse[i] = 0
    verdict = expected.check("fp32", record, worse, labels, "f1:spam", ("ham", "spam"))
    assert not verdict.ok and verdict.drop_pts > 5
    assert expected.decode(expected.encode([0, 5, 3, 10])) == [0, 5, 3, 10]
