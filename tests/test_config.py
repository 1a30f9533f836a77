from __future__ import annotations

from pathlib import Path

import pytest

from quant_impl.config import PROFILES, RunConfig, bench_profiles, bench_tasks, configs_from_pytest, profile_names
from quant_impl.errors import QuantbenchError


def _pyproject(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.quantbench]\n" + body, encoding="utf-8")
    return path


def test_profiles_load_with_their_values(tmp_path: Path) -> None:
    empty = _pyproject(tmp_path, "")
    assert RunConfig.load("quick", pyproject=empty).train_size == PROFILES["quick"]["train_size"]
    seed = RunConfig.load("seed", pyproject=empty)
    assert (seed.train_size, seed.epochs, seed.test_size, seed.max_length) == (None, 3, 1000, 128)
    assert RunConfig.load("smoke", pyproject=empty).model == "tiny"


def test_base_profile_is_the_offline_base_size_model(tmp_path: Path) -> None:
    empty = tmp_path / "pyproject.toml"
    empty.write_text("")
    cfg = RunConfig.load("base", pyproject=empty)
    assert cfg.model == "bundled-base" and cfg.train_size == 4000 and cfg.max_length == 128
    with pytest.raises(QuantbenchError, match="'bundled-base' has no trained head"):
        RunConfig.load("base", {"epochs": 0}, pyproject=empty)


def test_priority_is_profile_then_pyproject_then_profile_table_then_overrides(tmp_path: Path) -> None:
    path = _pyproject(
        tmp_path,
        'profile = "smoke"\nseed = 5\nepochs = 2\n[tool.quantbench.profiles.smoke]\nepochs = 4\ntest_size = 40\n',
    )
    cfg = RunConfig.load(pyproject=path, overrides={"test_size": 48, "batch_size": None})
    assert cfg.profile == "smoke"  # from the file
    assert cfg.seed == 5  # [tool.quantbench] beats the profile default 0
    assert cfg.epochs == 4  # the profile table beats [tool.quantbench]
    assert cfg.test_size == 48  # explicit overrides win
    assert cfg.batch_size == PROFILES["smoke"]["batch_size"]  # None overrides are ignored


def test_unknown_setting_names_file_and_key(tmp_path: Path) -> None:
    path = _pyproject(tmp_path, "epoch = 2\n")
    with pytest.raises(QuantbenchError, match=r"pyproject.toml \[tool.quantbench\]: unknown setting 'epoch'.*epochs"):
        RunConfig.load(pyproject=path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": "two"}, "epochs must be a number"),
        ({"epochs": 1.5}, "epochs must be a whole number"),
        ({"epochs": -1}, "epochs must be >= 0"),
        ({"epochs": 0}, "epochs = 0 uses --model as an already fine-tuned classifier"),
        ({"truncation": "middle"}, "truncation 'middle' is unknown"),
        ({"head_tokens": 500}, "head_tokens must be between 0 and max_length - 2"),
        ({"threads": -1}, "threads must be >= 0"),
    ],
)
def test_bad_values_are_rejected_with_the_field_name(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(QuantbenchError, match=message):
        RunConfig.load("quick", overrides, pyproject=_pyproject(tmp_path, ""))


def test_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(QuantbenchError, match="profile 'fast' is unknown; choose one of quick, base, seed, smoke"):
        RunConfig.load("fast", pyproject=_pyproject(tmp_path, ""))


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.quantbench\n", encoding="utf-8")
    with pytest.raises(QuantbenchError, match="cannot read it as TOML"):
        RunConfig.load(pyproject=path)


def test_train_size_zero_means_all(tmp_path: Path) -> None:
    assert RunConfig.load("quick", {"train_size": 0}, pyproject=_pyproject(tmp_path, "")).train_size is None


def test_cache_dir_honours_quantbench_cache_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QUANTBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert RunConfig().cache_dir == tmp_path / "xdg" / "quantbench"
    monkeypatch.setenv("QUANTBENCH_CACHE", str(tmp_path / "mine"))
    assert RunConfig().cache_dir == tmp_path / "mine"


def test_to_dict_is_json_ready() -> None:
    import json

    data = RunConfig.load("smoke").to_dict()
    assert json.loads(json.dumps(data)) == data


def test_method_options_from_a_string_get_toml_types(tmp_path) -> None:
    (tmp_path / "none.toml").write_text("")
    cfg = RunConfig.load("smoke", {"method_options": "static-int8.observer=minmax, dynamic-int8.engine=torch-ao,"
                                                     "static-int8.quantize_embedding=true,qat-int8.learning_rate=2e-5"},
                         pyproject=tmp_path / "none.toml")
    assert cfg.method_options == {
        "static-int8": {"observer": "minmax", "quantize_embedding": True},
        "dynamic-int8": {"engine": "torch-ao"},
        "qat-int8": {"learning_rate": 2e-5},
    }


def test_method_options_from_pyproject_tables(tmp_path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.quantbench.method_options.static-int8]\nobserver = "minmax"\ncalibration_batches = 4\n')
    assert RunConfig.load("smoke", pyproject=path).method_options == {
        "static-int8": {"observer": "minmax", "calibration_batches": 4}
    }


@pytest.mark.parametrize("bad", ["static-int8=minmax", "observer", ".observer=x", "static-int8.=x"])
def test_malformed_method_options_name_the_form(tmp_path, bad) -> None:
    (tmp_path / "none.toml").write_text("")
    with pytest.raises(QuantbenchError, match="METHOD.KEY=VALUE"):
        RunConfig.load("smoke", {"method_options": bad}, pyproject=tmp_path / "none.toml")


def test_method_options_reach_the_method_config() -> None:
    from quant_impl.methods import make_config

    assert make_config("static-int8", {"observer": "minmax"}).observer == "minmax"
    assert make_config("dynamic-int8").engine == "pt2e"
    with pytest.raises(QuantbenchError, match="unknown key.*observr.*static-int8 accepts .*observer"):
        make_config("static-int8", {"observr": "minmax"})
    with pytest.raises(QuantbenchError, match="method_options for 'static-int8'.*observer must be one of"):
        make_config("static-int8", {"observer": "percentile"})


@pytest.mark.parametrize("options,message", [
    ("static-int8.observer=nope",
     r"method_options for 'static-int8': StaticInt8Config\.observer must be one of \('histogram', 'minmax'\), got 'nope'"),
    ("dynamic-int8.quantize_embedding=yes",
     r"method_options for 'dynamic-int8': DynamicInt8Config\.quantize_embedding must be true or false, got 'yes'"),
    ("qat-int8.epochs=0", r"method_options for 'qat-int8': QatInt8Config\.epochs must be >= 1"),
    ("static-int8.observr=minmax", r"method_options for 'static-int8': unknown key\(s\) observr; static-int8 accepts"),
    ("static-int9.observer=minmax", r"method 'static-int9' is not registered\. Did you mean static-int8"),
], ids=["bad-choice", "bad-bool", "bad-count", "unknown-key", "unknown-method"])
def test_method_options_are_checked_when_the_run_config_is_built(tmp_path, options, message) -> None:
    """Before any model work: a typo must not surface half-way through a run, when its method is built."""
    (tmp_path / "none.toml").write_text("")
    with pytest.raises(QuantbenchError, match=message):
        RunConfig.load("smoke", {"method_options": options}, pyproject=tmp_path / "none.toml")
    path = tmp_path / "pyproject.toml"
    method, _, rest = options.partition(".")
    key, _, value = rest.partition("=")
    path.write_text(f'[tool.quantbench.method_options.{method}]\n{key} = "{value}"\n')  # a TOML string, as typed
    with pytest.raises(QuantbenchError, match=message):
        RunConfig.load("smoke", pyproject=path)
    with pytest.raises(QuantbenchError, match=message):
        RunConfig.load("smoke", pyproject=tmp_path / "none.toml").replace(method_options={method: {key: value}})


# ------------------------------------------------------------------- profiles of your own, several per run
def test_a_profile_of_your_own_extends_a_built_in_one(tmp_path: Path) -> None:
    path = _pyproject(tmp_path, '[tool.quantbench.profiles.mine]\nextends = "smoke"\nseed = 7\n'
                                '[tool.quantbench.profiles.plain]\ntest_size = 500\n')
    mine = RunConfig.load("mine", pyproject=path)
    assert (mine.profile, mine.model, mine.seed, mine.train_size) == ("mine", "tiny", 7, PROFILES["smoke"]["train_size"])
    plain = RunConfig.load("plain", pyproject=path)  # extends quick unless told
    assert plain.train_size == PROFILES["quick"]["train_size"] and plain.test_size == 500
    assert profile_names(path) == [*PROFILES, "mine", "plain"]
    with pytest.raises(QuantbenchError, match="profile 'other' is unknown.*mine, plain"):
        RunConfig.load("other", pyproject=path)


@pytest.mark.parametrize(("body", "message"), [
    ('[tool.quantbench.profiles.mine]\nextends = "fast"\n', "extends = 'fast' is not a built-in profile"),
    ('[tool.quantbench.profiles.smoke]\nextends = "quick"\n', "'extends' is for profiles of your own"),
])
def test_a_bad_extends_names_the_table(tmp_path: Path, body: str, message: str) -> None:
    path = _pyproject(tmp_path, body)
    with pytest.raises(QuantbenchError, match=message):
        RunConfig.load("mine" if "mine" in body else "smoke", pyproject=path)


def test_bench_profiles_come_from_the_option_then_pyproject(tmp_path: Path) -> None:
    path = _pyproject(tmp_path, 'bench_profiles = ["quick", "base"]\nprofile = "smoke"\n')
    assert bench_profiles(pyproject=path) == ("quick", "base")
    assert bench_profiles("smoke,quick", pyproject=path) == ("smoke", "quick")
    assert bench_profiles(None, "seed", pyproject=path) == ("seed",)  # --quant-profile: one profile
    assert RunConfig.load(pyproject=path).profile == "smoke"  # bench_profiles is not a RunConfig setting
    assert bench_profiles(pyproject=_pyproject(tmp_path, "")) == (None,)  # None: RunConfig.load's default


@pytest.mark.parametrize(("profiles", "profile", "message"), [
    ("quick,fast", None, r"--quant-profiles: unknown profile\(s\) fast; choose from quick, base"),
    ("quick,quick", None, "profile named twice"),
    ("quick,base", "smoke", "both given"),
    (",", None, r"unknown profile\(s\) \(none given\)"),
])
def test_bad_bench_profiles_get_one_clear_error(tmp_path: Path, profiles, profile, message) -> None:
    with pytest.raises(QuantbenchError, match=message):
        bench_profiles(profiles, profile, pyproject=_pyproject(tmp_path, ""))


class _Options:
    def __init__(self, **values) -> None:
        self.values = values

    def getoption(self, name: str):
        return self.values.get(name)


def test_pytest_options_give_one_config_per_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _pyproject(tmp_path, "")
    cfgs = configs_from_pytest(_Options(quant_profiles="smoke,quick", quant_methods="fp32,bf16"))
    assert [(c.profile, c.model, c.methods) for c in cfgs] == [("smoke", "tiny", ("fp32", "bf16")),
                                                                ("quick", "bundled", ("fp32", "bf16"))]
    with pytest.raises(QuantbenchError, match="--quant-model tiny with several profiles"):
        configs_from_pytest(_Options(quant_profiles="smoke,quick", quant_model="tiny"))


def test_main_in_a_method_list_is_the_main_jobs_methods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from quant_impl.methods import registry

    monkeypatch.chdir(tmp_path)
    _pyproject(tmp_path, 'methods = ["main", "qat-int8"]\n')
    # read from the registrations (main_job), not from a list: choose two and the word follows
    monkeypatch.setattr(registry, "_REGISTRY", {name: dataclasses.replace(spec, main_job=name in ("fp32", "bf16"))
                                                for name, spec in registry._REGISTRY.items()})
    assert RunConfig.load("smoke").methods == ("fp32", "bf16", "qat-int8")
    # a name given twice (bf16 is in main) is measured once; order follows the list
    [cfg] = configs_from_pytest(_Options(quant_methods="static-int8,main,bf16"))
    assert cfg.methods == ("static-int8", "fp32", "bf16")


def test_quant_tasks_give_one_config_per_profile_and_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.quantbench]\nprofile = \"smoke\"\n")
    cfgs = configs_from_pytest(_Options(quant_profiles="smoke", quant_tasks="imdb,trec-6", quant_methods="fp32"))
    assert [(c.profile, c.task, c.setup) for c in cfgs] == [("smoke", "imdb", "smoke"),
                                                           ("smoke", "trec-6", "smoke/trec-6")]
    assert bench_tasks(None) == (None,)
    with pytest.raises(QuantbenchError, match="--quant-tasks: task 'nope' is not registered"):
        bench_tasks("imdb,nope")
    with pytest.raises(QuantbenchError, match="task named twice"):
        bench_tasks("imdb,imdb")
    (tmp_path / "pyproject.toml").write_text("[tool.quantbench]\nbench_tasks = [\"trec-6\"]\n")
    assert bench_tasks(None) == ("trec-6",)
