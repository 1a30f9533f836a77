"""What one ``pytest bench`` session shares: the baseline, each built method, each evaluation and each memory
figure, made once and reused by every (method, hardware, batch, seq_len) cell; plus the JSON post-processing
(speedups from the run's own stats) and the machine description.

bench/conftest.py is a thin layer over this module, so the same code is unit-tested without pytest-benchmark.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import itertools
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from quant_impl.cache import cache_key, entry_lock, source_fingerprint, trusted, write_json_atomic, write_manifest
from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError
from quant_impl.data import data_identity, tokenization_identity
from quant_impl.hardware import Hardware, get_hardware
from quant_impl.measure.accuracy import EvalResult, evaluate
from quant_impl.measure.memory import Memory, measure_in_fresh_process
from quant_impl.measure.stats import agreement, mcnemar_exact, wilson_interval
from quant_impl.methods import QuantizedModel, apply, get_method, method_names
from quant_impl.schema import FIELD_NAMES, SCHEMA_VERSION

REFERENCE = "fp32"
COMPILED_REFERENCE = "fp32-compiled"
ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_bf16",
             "amx_int8", "amx_tile")


@dataclass(frozen=True)
class Cell:
    method: str
    hardware: str
    batch_size: int
    seq_len: int
    profile: str

    @property
    def id(self) -> str:
        return f"{self.method}-{self.hardware}-b{self.batch_size}-s{self.seq_len}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def group(self) -> str:
        """Benchmarks in one group share model, hardware and shape, so pytest-benchmark's table compares methods."""
        return f"{self.profile}: {self.hardware} batch {self.batch_size} x {self.seq_len} tokens"


def cells(cfgs: RunConfig | list[RunConfig]) -> list[Cell]:
    """Every cell of the run: per profile, methods in registry order, the FP32 reference first."""
    out = []
    for cfg in [cfgs] if isinstance(cfgs, RunConfig) else cfgs:
        methods = list(cfg.methods) or method_names()
        for name in methods:
            get_method(name)  # an unknown name fails here with the list of registered ones
        out += [Cell(*combo, profile=cfg.profile)
                for combo in itertools.product(methods, cfg.hardware, cfg.batch_sizes, cfg.seq_lens)]
    return out


def cell_ids(run_cells: list[Cell]) -> list[str]:
    """pytest ids: ``method-hardware-bN-sL``, prefixed by the profile when the run holds several."""
    several = len({c.profile for c in run_cells}) > 1
    return [f"{c.profile}-{c.id}" if several else c.id for c in run_cells]


class BenchRun:
    """The sessions of one ``pytest bench`` run, one per profile (model): each has its own baseline and FP32
    reference, so nothing is shared or compared across models."""

    def __init__(self, cfgs: list[RunConfig]) -> None:
        self.sessions = {cfg.profile: BenchSession(cfg) for cfg in cfgs}

    def __getitem__(self, profile: str) -> "BenchSession":
        return self.sessions[profile]

    def start(self, cell: Cell) -> "BenchSession":
        """The session of ``cell``, after dropping every build but its method's: cells run method by method and
        profile by profile, so a run holds one built method at a time (a two-model run that kept them all was
        killed for memory at 21.5 GB on 24)."""
        for profile, session in self.sessions.items():
            session.release(keep=cell.method if profile == cell.profile else None)
        return self.sessions[cell.profile]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return [entry for session in self.sessions.values() for entry in session.skipped]

    def run_summary(self) -> dict[str, Any]:
        """The saved JSON's ``quantbench`` table: the first profile's baseline at the top (single-model readers),
        every profile's RunConfig, methods and baseline under ``profiles``, and all skipped cells."""
        first = next(iter(self.sessions.values()))
        summary = first.run_summary()
        summary["skipped"] = self.skipped
        summary["profiles"] = {
            name: {"run_config": session.cfg.to_dict(), "methods": methods_metadata(session.cfg),
                   **{k: v for k, v in session.run_summary().items() if k != "skipped"}}
            for name, session in self.sessions.items()
        }
        return summary


class BenchSession:
    """Lazily built, session-wide shared work of a benchmark run."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self._baseline: Any = None
        self.load_seconds: float | None = None
        self._built: dict[tuple[str, str], QuantizedModel] = {}
        self._sizes: dict[tuple[str, str], int] = {}  # kept when a build is released
        self._evals: dict[tuple[str, str], EvalResult] = {}
        self._memory: dict[tuple[str, str], Memory] = {}
        self.cached_evaluations: set[tuple[str, str]] = set()
        self.skipped: list[dict[str, Any]] = []  # cells a method cannot run, with its reason

    @property
    def baseline(self) -> Any:
        if self._baseline is None:
            from quant_impl.train import get_baseline

            start = time.perf_counter()
            self._baseline = get_baseline(self.cfg)
            self.load_seconds = time.perf_counter() - start
        return self._baseline

    def run_summary(self) -> dict[str, Any]:
        """What the saved JSON's ``quantbench`` table holds beyond the RunConfig: the baseline (when one was
        loaded) and the skipped cells, so the report can show both without live objects."""
        summary: dict[str, Any] = {"skipped": list(self.skipped)}
        if self._baseline is not None:
            data = self._baseline.data
            summary["baseline"] = {
                **self._baseline.summary(),
                "split_sizes": {name: len(data[name]) for name in data},
                "load_seconds": self.load_seconds,
            }
        return summary

    def built(self, method: str, hardware: Hardware) -> QuantizedModel:
        """The method built once per device: CPU thread counts share one build (threads are set per call)."""
        key = (method, hardware.device)
        if key not in self._built:
            self._built[key] = apply(method, self.baseline, hardware)
            self._sizes[key] = self._built[key].size_bytes
        return self._built[key]

    def size_bytes(self, method: str, hardware: Hardware) -> int:
        """The method's size, from its build (made now only if it was never built)."""
        key = (method, hardware.device)
        return self._sizes[key] if key in self._sizes else self.built(method, hardware).size_bytes

    def release(self, keep: str | None = None) -> None:
        """Drop the builds of every method but ``keep``; their evaluations, sizes and memory figures stay."""
        dropped = [key for key in self._built if key[0] != keep]
        for key in dropped:
            del self._built[key]
        if dropped:
            import gc

            torch._dynamo.reset()  # compiled graphs hold their modules
            gc.collect()

    def evaluation(self, method: str, hardware: Hardware) -> EvalResult:
        """Test-split evaluation of the method on the device, once (all threads).

        FP32's comes with the checkpoint. Others are cached on disk by everything that can change a prediction:
        the checkpoint, the method and its config, the test split, library versions and the source of the code
        that builds and runs methods. Predictions are deterministic, so a cache hit is the same measurement.
        """
        key = (method, hardware.device)
        if key in self._evals:
            return self._evals[key]
        if method == REFERENCE and hardware.device == "cpu":
            self._evals[key] = self.baseline.eval
            return self._evals[key]
        built = self.built(method, hardware)
        path = self.cfg.cache_dir / "evaluations" / f"{method}-{hardware.device}-{self._eval_key(built)}.json"
        with entry_lock(path):
            cached, ok = trusted(path, lambda p: EvalResult.from_dict(json.loads(p.read_text(encoding="utf-8"))))
            if ok:
                self._evals[key] = cached
                self.cached_evaluations.add(key)
            else:
                get_hardware("cpu").activate() if hardware.device == "cpu" else None
                self._evals[key] = evaluate(built, self.baseline.data["test"], self.cfg.eval_batch_size, desc=method)
                write_json_atomic(path, self._evals[key].to_dict())
                write_manifest(path)
        return self._evals[key]

    def _eval_key(self, built: QuantizedModel) -> str:
        return evaluation_key(self.cfg, self.baseline, built.settings.get("config"))

    def memory(self, method: str, hardware: Hardware) -> Memory:
        """Peak memory of a fresh process building the method and running the largest benchmarked batch."""
        key = (method, hardware.device)
        if key not in self._memory:
            self.baseline  # the child needs the cached checkpoint
            self._memory[key] = measure_in_fresh_process(
                f"{__name__}:build_and_run_once", config=self.cfg.to_dict(), method=method, hardware=hardware.id,
                batch_size=max(self.cfg.batch_sizes), seq_len=max(self.cfg.seq_lens),
            )
        return self._memory[key]

    def batch(self, batch_size: int, seq_len: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Real test reviews, ``batch_size`` of them (repeated if the split is smaller), cut to ``seq_len``."""
        test = self.baseline.data["test"]
        rows = test[[i % len(test) for i in range(batch_size)]]
        return rows["input_ids"][:, :seq_len].to(device), rows["attention_mask"][:, :seq_len].to(device)

    def extra_info(self, cell: Cell, hardware: Hardware) -> dict[str, Any]:
        """Everything but latency for one cell (speedups are added from the saved stats at the end)."""
        built = self.built(cell.method, hardware)
        result = self.evaluation(cell.method, hardware)
        reference = self.evaluation(REFERENCE, get_hardware("cpu"))
        fp32_size = self.size_bytes(REFERENCE, get_hardware("cpu"))
        memory = self.memory(cell.method, hardware)
        labels = self.baseline.data["test"]["label"]
        labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
        correct = round(result.accuracy * result.examples)
        info = {
            "schema_version": SCHEMA_VERSION,
            "method": cell.method,
            "hardware": cell.hardware,
            "threads": hardware.threads,
            "batch_size": cell.batch_size,
            "seq_len": cell.seq_len,
            "profile": self.cfg.profile,
            "model": self.cfg.model,
            "dataset": self.cfg.dataset,
            "eval_examples": result.examples,
            "accuracy": result.accuracy,
            "accuracy_ci95": list(wilson_interval(correct, result.examples)),
            "f1": result.f1,
            "accuracy_drop_pts": 100 * (reference.accuracy - result.accuracy),
            "agreement_with_fp32": agreement(reference.predictions, result.predictions),
            "mcnemar_p": mcnemar_exact(reference.predictions, result.predictions, labels),
            "size_bytes": built.size_bytes,
            "size_note": built.size_note,
            "compression_ratio": fp32_size / built.size_bytes,
            "peak_rss_mb": memory.peak_rss_mb,
            "peak_rss_sampled_mb": memory.sampled_peak_mb,
            "load_seconds": self.load_seconds,
            "build_seconds": built.build_seconds,
            "throughput_samples_per_s": None,
            "speedup_vs_fp32": None,
            "speedup_reference": REFERENCE,
            "speedup_vs_fp32_compiled": None,
            "method_settings": built.settings,
            "evaluation_cached": (cell.method, hardware.device) in self.cached_evaluations,
        }
        missing = set(FIELD_NAMES) - set(info)
        assert not missing, f"extra_info lacks schema fields {missing}"
        return info


def build_and_run_once(config: dict[str, Any], method: str, hardware: str, batch_size: int, seq_len: int) -> None:
    """What a method's peak-memory figure covers (run in a fresh process by measure_in_fresh_process): load the
    cached baseline, build the method, run one batch. It refuses to fine-tune, so a figure never includes training."""
    from quant_impl.train import checkpoint_path, get_baseline

    overrides = dict(config)
    cfg = RunConfig.load(profile=overrides.pop("profile", None), overrides=overrides)
    if not (checkpoint_path(cfg) / "quantbench_baseline.json").is_file():
        raise QuantbenchError(f"no cached baseline at {checkpoint_path(cfg)}; build it first (quantbench baseline)")
    baseline = get_baseline(cfg)
    built = apply(method, baseline, get_hardware(hardware))
    rows = baseline.data["test"][:batch_size]
    built(rows["input_ids"][:, :seq_len], rows["attention_mask"][:, :seq_len])
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# The package's sources that build, feed or score a method: a change to any of them invalidates cached evaluations
# (tests/test_cache.py checks that each one reaches the key).
EVALUATION_SOURCES = ("methods/*.py", "qmath.py", "measure/accuracy.py", "data.py", "models.py", "train.py")


def evaluation_sources(package: Path = Path(__file__).parent) -> list[Path]:
    return sorted({path for pattern in EVALUATION_SOURCES for path in package.glob(pattern)})


def evaluation_key(cfg: RunConfig, baseline: Any, method_config: Any, package: Path = Path(__file__).parent) -> str:
    """Cache key of a method's test-split evaluation: the checkpoint, the method's config, the token ids of the
    test split (reviews, tokenizer, truncation), the eval batch size, library versions and the code."""
    return cache_key({
        "checkpoint": baseline.checkpoint.name,
        "config": method_config,
        "test": data_identity(cfg),
        "tokens": tokenization_identity(cfg, baseline.tokenizer),
        "eval_batch_size": cfg.eval_batch_size,
        "versions": machine_versions(),
        "code": source_fingerprint(evaluation_sources(package)),
    })


def methods_metadata(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Each benchmarked method's registration (threshold after pyproject overrides, section, seed expectation,
    engine...), saved with the run so the report and the gate judge it by the rules it ran under."""
    names = list(cfg.methods) or method_names()
    return {
        name: get_method(name).metadata(cfg.thresholds.get(name))
        for name in names
    }


def add_speedups(benchmarks: list[dict[str, Any]]) -> None:
    """Fill throughput and speedups from the run's own medians: same profile (model), hardware, batch size and
    length only."""
    medians = {
        (b["extra_info"]["method"], b["extra_info"].get("profile"), b["extra_info"]["hardware"],
         b["extra_info"]["batch_size"], b["extra_info"]["seq_len"]): b["stats"]["median"]
        for b in benchmarks
        if "method" in b.get("extra_info", {}) and b.get("stats")
    }
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        if "method" not in info or not bench.get("stats"):
            continue
        median = bench["stats"]["median"]
        shape = (info.get("profile"), info["hardware"], info["batch_size"], info["seq_len"])
        info["throughput_samples_per_s"] = info["batch_size"] / median
        for field, reference in (("speedup_vs_fp32", REFERENCE), ("speedup_vs_fp32_compiled", COMPILED_REFERENCE)):
            ref = medians.get((reference, *shape))
            info[field] = ref / median if ref else None


def machine_versions() -> dict[str, str | None]:
    """Versions of the libraries that decide what a method computes and how fast."""
    versions: dict[str, str | None] = {}
    packages = ("torch", "transformers", "torchao", "datasets", "pytest-benchmark", "onnx", "onnxruntime", "openvino",
                "nncf")
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def machine_info() -> dict[str, Any]:
    """CPU model, ISA flags that decide int8/bf16/fp16 speed, library versions, threads and GPU."""
    flags: set[str] = set()
    model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    versions = machine_versions()
    return {
        "cpu_model": model,
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "versions": versions,
        "threads": torch.get_num_threads(),
        "cpu_count": __import__("os").cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
