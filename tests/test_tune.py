"""quantbench tune (quant_impl.tune): the search on a stub judge (no model), the candidate space, saved recipes, and
one real run on the smoke profile whose saved recipe then runs in a child pytest bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quant_impl.errors import QuantbenchError
from quant_impl.hardware import get_hardware
from quant_impl.methods import get_method, make_config, method_names
from quant_impl.methods import registry
from quant_impl.tune import recipes
from quant_impl.tune.search import TEST, TUNING, Candidate, Measured, Score, Search, inc_pick
from quant_impl.tune.space import candidate_space

ROOT = Path(__file__).resolve().parents[1]


class StubJudge:
    """Speedups and drops from tables; every call is logged as (what, label) to check the order of work."""

    def __init__(self, speed: dict[str, float], tuning: dict[str, float], test: dict[str, float],
                 layers: dict[str, list[str]] | None = None, fallback: object = None) -> None:
        self.speed, self.tuning, self.test = speed, tuning, test
        self.layers = layers or {}
        self.fallback = fallback  # (candidate) -> (speedup, tuning drop, test drop) for float_layers candidates
        self.calls: list[tuple[str, str]] = []

    def _figures(self, c: Candidate) -> tuple[float, float, float]:
        if "float_layers" in c.options:
            return self.fallback(c)
        return self.speed[c.label], self.tuning.get(c.label, 0.0), self.test.get(c.label, 0.0)

    def measure(self, c: Candidate) -> Measured:
        self.calls.append(("measure", c.label))
        if c.label == "broken":
            raise QuantbenchError("broken does not build")
        return Measured(latency_s=1.0 / self._figures(c)[0], reference_s=1.0, size_bytes=1000, build_seconds=0.0)

    def score(self, c: Candidate, split: str) -> Score:
        self.calls.append((split, c.label))
        _speed, tuning, test = self._figures(c)
        drop = tuning if split == TUNING else test
        return Score(split, 1000, 0.9 - drop / 100, drop, (drop - 0.4, drop + 0.4) if split == TEST else None)

    def sensitive_layers(self, c: Candidate) -> list[str]:
        if c.method not in self.layers:
            raise QuantbenchError(f"{c.method} cannot keep single Linears in FP32")
        return self.layers[c.method]

    def release(self, c: Candidate) -> None:
        self.calls.append(("release", c.label))


SPEED = {"a": 3.0, "b": 2.5, "c": 2.0, "d": 1.5, "e": 1.2, "fp32": 1.0}


def _candidates(*names: str) -> list[Candidate]:
    return [Candidate(name) for name in names]


def test_the_fastest_within_budget_wins_and_the_test_split_is_read_for_finalists_only() -> None:
    judge = StubJudge(SPEED, tuning={"a": 2.0, "b": 0.3, "c": 0.1, "d": 0.0, "e": 0.0},
                      test={"b": 0.6, "c": 0.2, "d": 0.1})
    outcome = Search(judge, _candidates(*SPEED), max_drop=0.5, finalists=3).run()
    by = {t.candidate.label: t for t in outcome.trials}
    assert outcome.chosen is by["c"]  # b passes on tuning but loses 0.6 on test; c is the next fastest
    assert by["a"].status == "over" and "no per-layer fallback" in by["a"].why
    assert {label for label, t in by.items() if t.status == "pruned"} == {"e", "fp32"}
    assert all(by[label].tuning is None for label in ("e", "fp32")), "pruned candidates are never scored"
    tested = [label for what, label in judge.calls if what == TEST]
    assert tested == ["b", "c", "d"]
    last_tuning = max(i for i, (what, _) in enumerate(judge.calls) if what == TUNING)
    first_test = min(i for i, (what, _) in enumerate(judge.calls) if what == TEST)
    assert last_tuning < first_test, "the test split is read only once the finalists are known"
    assert by["b"].status == "finalist" and by["d"].status == "finalist"


def test_a_fast_candidate_over_budget_is_retried_with_its_most_sensitive_layers_in_fp32() -> None:
    layers = [f"layer{i}" for i in range(10)]

    def fallback(c: Candidate) -> tuple[float, float, float]:
        k = len(c.options["float_layers"])
        return 3.0 - 0.2 * k, 2.0 - 0.6 * k, 2.0 - 0.6 * k

    judge = StubJudge({"a": 3.0, "c": 2.0, "fp32": 1.0}, tuning={"a": 2.0, "c": 0.1}, test={"c": 0.1},
                      layers={"a": layers}, fallback=fallback)
    outcome = Search(judge, _candidates("a", "c", "fp32"), max_drop=0.5).run()
    assert outcome.chosen is not None and outcome.chosen.candidate.method == "a"
    assert outcome.chosen.candidate.options["float_layers"] == tuple(layers[:4])  # 1 and 2 lose too much
    tried = [t.candidate.options.get("float_layers") for t in outcome.trials if t.candidate.origin.startswith("fallback")]
    assert [len(f) for f in tried] == [1, 2, 4]
    assert outcome.chosen.measured.speedup == pytest.approx(2.2)


def test_a_fallback_no_faster_than_a_passing_candidate_is_pruned_unscored() -> None:
    judge = StubJudge({"a": 3.0, "c": 2.0}, tuning={"a": 2.0, "c": 0.1}, test={"c": 0.1},
                      layers={"a": ["l0", "l1"]}, fallback=lambda c: (1.9, 0.0, 0.0))
    outcome = Search(judge, _candidates("a", "c"), max_drop=0.5).run()
    fallback = next(t for t in outcome.trials if "float_layers" in t.candidate.options)
    assert fallback.status == "pruned" and fallback.tuning is None and "no better than c" in fallback.why
    assert outcome.chosen.candidate.label == "c"


def test_the_time_budget_stops_new_builds_and_answers_from_what_was_measured() -> None:
    now = [0.0]

    class Slow(StubJudge):
        def measure(self, c: Candidate) -> Measured:
            now[0] += 100.0
            return super().measure(c)

    judge = Slow(SPEED, tuning={}, test={})
    outcome = Search(judge, _candidates(*SPEED), max_drop=0.5, budget_s=250.0, clock=lambda: now[0]).run()
    statuses = {t.candidate.label: t.status for t in outcome.trials}
    assert [statuses[k] for k in ("d", "e", "fp32")] == ["untried"] * 3
    assert outcome.budget_spent and outcome.chosen.candidate.label == "a"
    assert [label for what, label in judge.calls if what == "measure"] == ["a", "b", "c"]


def test_no_finalist_within_budget_on_the_test_split_gives_the_closest_and_no_answer() -> None:
    judge = StubJudge({"a": 2.0, "b": 1.5}, tuning={"a": 0.1, "b": 0.2}, test={"a": 0.9, "b": 0.7})
    outcome = Search(judge, _candidates("a", "b"), max_drop=0.5).run()
    assert outcome.chosen is None and outcome.closest.candidate.label == "b"


def test_a_candidate_that_fails_to_build_is_kept_in_the_trace_with_its_reason() -> None:
    judge = StubJudge({"broken": 9.0, "c": 2.0}, tuning={}, test={})
    outcome = Search(judge, _candidates("broken", "c"), max_drop=0.5).run()
    broken = outcome.trials[0]
    assert broken.status == "failed" and "does not build" in broken.why and outcome.chosen.candidate.label == "c"
    assert broken.to_dict()["scored_on"] == []


def test_the_size_objective_ranks_by_bytes() -> None:
    class Sized(StubJudge):
        def measure(self, c: Candidate) -> Measured:
            return Measured(1.0, 1.0, {"big": 3000, "small": 1000}[c.label], 0.0)

    outcome = Search(Sized({"big": 2.0, "small": 1.0}, {}, {}), _candidates("big", "small"), max_drop=0.5,
                     objective="size").run()
    assert outcome.chosen.candidate.label == "small"


def test_inc_rule_takes_the_first_default_in_order_that_holds_on_the_test_split() -> None:
    judge = StubJudge(SPEED, tuning={}, test={"a": 0.8, "b": 0.4, "c": 0.0})
    outcome = Search(judge, _candidates(*SPEED), max_drop=0.5).run()
    assert inc_pick(judge, outcome.trials, 0.5).candidate.label == "b"
    backwards = {"fp32": 0, "e": 1, "d": 2, "c": 3, "b": 4, "a": 5}
    assert inc_pick(judge, outcome.trials, 0.5, order=lambda c: backwards[c.method]).candidate.label == "fp32"


def test_the_real_judge_ranks_linears_once_and_refuses_methods_without_a_fallback(tmp_path: Path) -> None:
    from quant_impl.config import RunConfig
    from quant_impl.methods.sensitivity import encoder_linears
    from quant_impl.session.store import BenchSession
    from quant_impl.tune.judge import SessionJudge

    session = BenchSession(RunConfig.load("smoke", {"cache_dir": tmp_path / "cache"}))
    judge = SessionJudge(session, get_hardware("cpu"), batch_size=2, seq_len=16, rounds=3)
    ranked = judge.sensitive_layers(Candidate("static-int8"))
    assert sorted(ranked) == sorted(encoder_linears(session.baseline.model))
    cached = [p for p in (tmp_path / "cache" / "tune").glob("sensitivity-*.json") if not p.name.endswith(".manifest.json")]
    assert len(cached) == 1 and json.loads(cached[0].read_text())["ranked"] == ranked
    assert SessionJudge(session, get_hardware("cpu"), 2, 16, 3).sensitive_layers(Candidate("qat-int8")) == ranked
    with pytest.raises(QuantbenchError, match="cannot keep single Linears"):
        judge.sensitive_layers(Candidate("bf16"))
    fp32 = judge.score(Candidate("fp32"), TUNING)
    assert fp32.drop_pts == 0.0 and fp32.examples == len(session.baseline.data["calibration"])
    measured = judge.measure(Candidate("dynamic-int8", {"float_layers": tuple(ranked[:1])}, "fallback"))
    assert measured.speedup > 0 and measured.kernel.startswith("native")


def test_bad_search_settings_are_one_line_errors() -> None:
    with pytest.raises(QuantbenchError, match="--objective"):
        Search(StubJudge({}, {}, {}), _candidates("a"), max_drop=0.5, objective="speed")
    with pytest.raises(QuantbenchError, match="--max-drop"):
        Search(StubJudge({}, {}, {}), _candidates("a"), max_drop=-1)
    with pytest.raises(QuantbenchError, match="no candidate"):
        Search(StubJudge({}, {}, {}), [], max_drop=0.5)


def test_the_space_holds_defaults_and_registered_variants_int8_first() -> None:
    cpu = get_hardware("cpu")
    candidates, skipped = candidate_space({"static-int8": {"calibration_batches": 4}}, cpu, "classification",
                                          ["fp32", "static-int8", "bf16"])
    labels = [c.label for c in candidates]
    assert labels[:3] == ["static-int8[calibration_batches=4]", "static-int8[calibration_batches=4, observer=minmax]",
                          "static-int8[calibration_batches=4, quantize_embedding=false]"]
    assert labels[-1] == "fp32" and not skipped
    embedding, why = candidate_space({}, cpu, "embedding", ["qat-int8", "fp32"])
    assert [c.label for c in embedding] == ["fp32"] and "qat-int8" in why


def test_a_saved_recipe_round_trips_and_registers_as_a_method(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "recipes.toml"
    monkeypatch.setenv("QUANTBENCH_RECIPES", str(path))
    layers = ("bert.encoder.layer.0.output.dense",)
    recipes.save_recipe("tuned-x", "static-int8", {"observer": "minmax", "float_layers": layers},
                        {"describe": "static-int8[...]", "tuned_on": {"cpu_class": "avx2", "cpu_model": "EPYC"}})
    recipes.save_recipe("other-x", "bf16", {}, {"tuned_on": {"cpu_class": "amx"}})
    assert recipes.recipe_names() == ["other-x", "tuned-x"]
    try:
        spec = get_method("tuned-x")
        config = make_config("tuned-x", {})
        assert (config.observer, config.float_layers) == ("minmax", layers)
        assert spec.recipe["method"] == "static-int8" and spec.recipe["tuned_on"]["cpu_class"] == "avx2"
        assert spec.metadata()["recipe"]["options"]["observer"] == "minmax"
        assert "tuned-x" not in method_names(), "a recipe runs by name only"
        assert "tuned on a avx2 CPU" in recipes.cpu_class_warning(spec, "amx")
        assert recipes.cpu_class_warning(spec, "avx2") is None
        from quant_impl.config import RunConfig
        from quant_impl.session.plugin import recipe_warnings

        cfg = RunConfig.load("smoke", {"methods": ("tuned-x",)})
        monkeypatch.setenv("QUANTBENCH_CPU_CLASS", "avx2")
        assert recipe_warnings([cfg]) == []  # forced down to the class it was tuned on
        monkeypatch.delenv("QUANTBENCH_CPU_CLASS")
        from quant_impl.measure.machine import effective_cpu_class

        if effective_cpu_class() != "avx2":
            with pytest.warns(UserWarning, match="tuned on a avx2 CPU"):
                assert len(recipe_warnings([cfg])) == 1
    finally:
        registry._REGISTRY.pop("tuned-x", None)


def test_a_variant_is_its_method_with_the_options_in_brackets() -> None:
    """``quantbench speed --methods "dynamic-int8,dynamic-int8[quantize_lowering=torch]"`` times two settings of one
    method side by side; the label `quantbench tune` prints for a candidate names one too."""
    names = ("dynamic-int8[quantize_lowering=torch;attention=sdpa]", "static-int8[calibration_batches=4, quantize_embedding=false]")
    try:
        first, second = (get_method(name) for name in names)
        assert first.recipe["method"] == "dynamic-int8" and first.recipe["variant"] is True
        assert (make_config(names[0]).quantize_lowering, make_config(names[0]).attention) == ("torch", "sdpa")
        assert (make_config(names[1]).calibration_batches, make_config(names[1]).quantize_embedding) == (4, False)
        assert not set(names) & set(method_names())
        with pytest.raises(QuantbenchError, match="unknown key.*colour"):
            get_method("static-int8[colour=red]")
        with pytest.raises(QuantbenchError, match="key=value"):
            get_method("static-int8[minmax]")
        with pytest.raises(QuantbenchError, match="not registered") as error:
            get_method("no-such-method[attention=sdpa]")
        assert names[0] not in str(error.value)  # the error lists methods, not the variants met so far
    finally:
        for name in names:
            registry._REGISTRY.pop(name, None)


def test_speed_splits_methods_at_commas_outside_brackets(monkeypatch) -> None:
    from quant_impl import cli

    args = cli.build_parser().parse_args(["speed", "--methods", "fp32,static-int8[observer=minmax, calibration_batches=2],"
                                          "dynamic-int8[attention=sdpa]", "--profile", "smoke"])
    names: list[str] = []
    try:
        names, *_ = cli._timing_args(args)
        assert names == ["fp32", "static-int8[observer=minmax, calibration_batches=2]", "dynamic-int8[attention=sdpa]"]
    finally:
        for name in names[1:]:
            registry._REGISTRY.pop(name, None)


def test_saving_refuses_a_registered_name_or_a_bad_one(tmp_path: Path) -> None:
    with pytest.raises(QuantbenchError, match="registered method"):
        recipes.save_recipe("static-int8", "static-int8", {}, {}, path=tmp_path / "r.toml")
    with pytest.raises(QuantbenchError, match="lower-case"):
        recipes.save_recipe("My Recipe", "static-int8", {}, {}, path=tmp_path / "r.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[recipes.x]\noptions = 3\n", encoding="utf-8")
    with pytest.raises(QuantbenchError, match=r"\[recipes.x\]"):
        recipes.read_recipes(bad)


def test_a_recipe_with_a_bad_option_fails_when_named(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[recipes.broken-x]\nmethod = "static-int8"\noptions = { observer = "median" }\n', encoding="utf-8")
    monkeypatch.setenv("QUANTBENCH_RECIPES", str(path))
    with pytest.raises(QuantbenchError, match="observer"):
        get_method("broken-x")
    registry._REGISTRY.pop("broken-x", None)


@pytest.mark.slow
def test_tune_on_the_smoke_model_saves_a_recipe_that_pytest_bench_runs(tmp_path: Path) -> None:
    env = {**os.environ, "QUANTBENCH_CACHE": str(tmp_path / "cache"), "QUANTBENCH_RECIPES": str(tmp_path / "r.toml")}
    tune = subprocess.run(
        [sys.executable, "-m", "quant_impl.cli", "tune", "--profile", "smoke", "--methods", "fp32,dynamic-int8",
         "--max-drop", "100", "--rounds", "3", "--save", "smoke-tuned", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert tune.returncode == 0, tune.stderr[-3000:]
    result = json.loads(tune.stdout.strip().splitlines()[-1])
    assert result["chosen"]["scored_on"] == ["tuning", "test"] and result["saved"]["name"] == "smoke-tuned"
    assert {c["method"] for c in result["candidates"]} == {"fp32", "dynamic-int8"}
    assert all("test" not in c["scored_on"] for c in result["candidates"] if c["status"] not in ("finalist", "chosen"))
    bench = subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "-q", "-p", "no:cacheprovider", "--quant-profile", "smoke",
         "--quant-methods", "fp32,smoke-tuned", "--quant-hardware", "cpu", "--quant-batch-sizes", "1",
         f"--benchmark-storage=file://{tmp_path / 'storage'}", "--benchmark-save=tuned"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert bench.returncode == 0, bench.stdout[-3000:]
    run_path = next((tmp_path / "storage").glob("*/*.json"))
    run = json.loads(run_path.read_text())
    cells = {b["extra_info"]["method"]: b for b in run["benchmarks"]}
    assert set(cells) == {"fp32", "smoke-tuned"}
    assert cells["smoke-tuned"]["extra_info"]["method_settings"]["config"]["_type"].endswith("Recipe")
    setup = next(iter(run["quantbench"]["profiles"].values()))
    assert setup["methods"]["smoke-tuned"]["recipe"]["method"] == result["chosen"]["method"]
    from quant_impl.formatting import escape_markdown
    from quant_impl.report import build_report, render

    text, _ = render(build_report([run_path]), "en", "md")
    table = text.split("Tuned recipes")[1].split("\n#")[0]
    # The table escapes Markdown: a variant that wins, e.g. dynamic-int8[engine=torch-ao], reads dynamic-int8\[...\]
    assert "smoke-tuned" in table and escape_markdown(result["chosen"]["recipe"]) in table
    assert "1 chosen" in table  # the trace's counts by status
