from __future__ import annotations

import json
from pathlib import Path

import pytest

from quant_impl.cli import main
from quant_impl.config import config_fields


def test_baseline_json_last_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = main(["baseline", "--profile", "smoke", "--json", "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    summary = json.loads(out[-1])
    assert {"accuracy", "f1", "eval_examples", "checkpoint"} <= set(summary)
    assert summary["eval_examples"] == 32 and Path(summary["checkpoint"]).is_dir()
    assert summary["cached"] is False
    assert main(["baseline", "--profile", "smoke", "--json", "--cache-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cached"] is True


def test_baseline_text_output(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["baseline", "--profile", "smoke", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "on 32 held-out test texts" in out and "checkpoint" in out


def test_bad_input_is_a_message_and_exit_2(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = main(["baseline", "--profile", "smoke", "--dataset", str(tmp_path / "x.csv"), "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("quantbench: error: --dataset") and "Traceback" not in err


def test_help_lists_every_setting(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in config_fields():
        assert "--" + field.name.replace("_", "-") in text


def test_methods_lists_every_method_and_hardware(capsys: pytest.CaptureFixture) -> None:
    from quant_impl.methods import method_names

    assert main(["methods", "--json"]) == 0
    table = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(table) == sorted(method_names())
    assert table["static-int8"]["hardware"]["cpu"] == "runs"
    assert "X86InductorQuantizer" in table["static-int8"]["hardware"]["cuda"]
    assert main(["methods"]) == 0
    assert "static-int8" in capsys.readouterr().out


def test_speed_reports_interleaved_medians(capsys: pytest.CaptureFixture, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from quant_impl.measure import latency

    # What the command measured, per batch size: its inputs, the Latency it got back, and the wall clock it took.
    measured: dict[int, tuple[tuple, dict, float]] = {}
    real = latency.interleaved_latency

    def recording(models, inputs, **kwargs):
        start = time.perf_counter()
        got = real(models, inputs, **kwargs)
        measured[inputs[0].shape[0]] = (tuple(inputs[0].shape), got, time.perf_counter() - start)
        return got

    monkeypatch.setattr(latency, "interleaved_latency", recording)
    args = ["speed", "--profile", "smoke", "--cache-dir", str(tmp_path), "--methods", "fp32,bf16",
            "--rounds", "3", "--batch-size", "1,4", "--seq-len", "16", "--accuracy", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["batch_sizes"] == [1, 4] and result["seq_len"] == 16 and result["rounds"] == 3
    assert sorted(measured) == [1, 4]
    for batch in (1, 4):
        shape, got, wall_s = measured[batch]
        assert shape == (batch, 16)  # the batch size and length asked for were the ones timed
        cells = {name: result["methods"][name]["cells"][str(batch)] for name in ("fp32", "bf16")}
        for name, cell in cells.items():
            # milliseconds of the median and the minimum the timing loop returned, each of its 3 rounds
            assert got[name].rounds == 3
            assert cell["median_ms"] == pytest.approx(1000 * got[name].median_s)
            assert cell["min_ms"] == pytest.approx(1000 * got[name].min_s) and cell["min_ms"] <= cell["median_ms"]
        # 2 of the 3 interleaved rounds of each method took at least its median, all inside that wall clock
        assert 2 * (cells["fp32"]["median_ms"] + cells["bf16"]["median_ms"]) <= 1000 * wall_s
        assert cells["fp32"]["speedup_vs_fp32"] == pytest.approx(1.0)
        assert cells["bf16"]["speedup_vs_fp32"] == pytest.approx(cells["fp32"]["median_ms"] / cells["bf16"]["median_ms"])
    bf16, fp32 = result["methods"]["bf16"], result["methods"]["fp32"]
    # 2 bytes a parameter instead of 4; torch.save's framing is well under 1 % of this model
    assert bf16["size_bytes"] == pytest.approx(fp32["size_bytes"] / 2, rel=0.01)
    assert fp32["accuracy_drop_pts"] == 0.0
    # fractions of the smoke profile's 32 test reviews, the drop in points between them
    assert all(32 * row["accuracy"] == pytest.approx(round(32 * row["accuracy"])) for row in (fp32, bf16))
    assert bf16["accuracy_drop_pts"] == pytest.approx(100 * (fp32["accuracy"] - bf16["accuracy"]))


def test_speed_skips_a_method_this_machine_cannot_run(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    args = ["speed", "--profile", "smoke", "--cache-dir", str(tmp_path), "--methods", "fp32,openvino-fp32",
            "--rounds", "1", "--seq-len", "16", "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert list(result["methods"]) == ["fp32"] and "peers" in result["skipped"]["openvino-fp32"]
    assert "skipping openvino-fp32 needs openvino" in captured.err


def test_speed_rejects_bad_input(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["speed", "--profile", "smoke", "--cache-dir", str(tmp_path), "--methods", "fp33"]) == 2
    assert "Did you mean fp32" in capsys.readouterr().err
    assert main(["speed", "--profile", "smoke", "--cache-dir", str(tmp_path), "--seq-len", "999"]) == 2
    assert "--seq-len must be between 1 and max_length 32" in capsys.readouterr().err


def test_speed_times_the_methods_whose_registration_asks_for_it(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """No --methods: the default list is read from the registrations (speed_default), not from a list in cli.py."""
    import dataclasses

    from quant_impl.methods import registry

    assert {"fp32", "static-int8", "openvino-int8"} <= set(registry.speed_methods())
    assert "qat-int8" not in registry.speed_methods()  # it fine-tunes first: asked for by name
    chosen = {"fp32", "bf16"}
    monkeypatch.setattr(registry, "_REGISTRY", {name: dataclasses.replace(spec, speed_default=name in chosen)
                                                for name, spec in registry._REGISTRY.items()})
    assert main(["speed", "--profile", "smoke", "--cache-dir", str(tmp_path), "--rounds", "1", "--seq-len", "16",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["methods"]) == chosen
    assert main(["methods", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {name for name, row in listed.items() if row["speed_default"]} == chosen


def test_tasks_lists_every_task_with_its_facts(capsys: pytest.CaptureFixture) -> None:
    assert main(["tasks", "--json"]) == 0
    table = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"imdb", "rt-polarity", "tweet-sentiment-3", "trec-6", "bbc-news-5", "sms-spam", "sst2", "mrpc"} <= set(table)
    trec = table["trec-6"]
    assert trec["kind"] == "classification" and trec["primary_metric"] == "accuracy" and len(trec["labels"]) == 6
    assert trec["profiles"]["quick"]["test_size"] == 1000 and trec["sources"] == ["bundled"]
    assert table["sst2"]["installed"].startswith("online only")
    assert main(["tasks"]) == 0
    text = capsys.readouterr().out
    assert "trec-6" in text and "custom" in text and "macro_f1" in text
    assert main(["baseline", "--task", "nope", "--key"]) == 2
    assert "task 'nope' is not registered" in capsys.readouterr().err
