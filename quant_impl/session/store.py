"""The session cache of one ``pytest bench`` run: per setup (profile = model, and task), the baseline, each built method, each
evaluation and each memory figure, made once and reused by every (method, hardware, batch, seq_len) cell.

bench/conftest.py reaches it through quant_impl.session.plugin, so the same code is unit-tested without
pytest-benchmark; ``quantbench speed``, ``profile`` and ``expected`` use BenchSession alone.
"""

from __future__ import annotations

import json
import time
from typing import Any

import torch

from quant_impl.cache import entry_lock, trusted, write_json_atomic, write_manifest
from quant_impl.cache_keys import evaluation_key
from quant_impl.cells import Cell
from quant_impl.config import RunConfig
from quant_impl.hardware import Hardware, get_hardware
from quant_impl.data import task_of
from quant_impl.measure.accuracy import EvalResult, evaluate, metric_function, primary_value, scores
from quant_impl.measure.memory import Memory, measure_in_fresh_process
from quant_impl.measure.stats import (
    BOOTSTRAP_RESAMPLES, agreement, mcnemar_exact, paired_bootstrap_drop, paired_drop_interval, wilson_interval,
)
from quant_impl.methods import QuantizedModel, apply
from quant_impl.schema import FIELD_NAMES, REFERENCE, SCHEMA_VERSION
from quant_impl.session import memory_child
from quant_impl.session.results import methods_metadata


def primary_drop_interval(task: Any, reference: EvalResult, result: EvalResult, labels: list[int],
                          seed: int) -> list[float]:
    """95 % interval of the primary metric's drop vs ``reference``, in points: for accuracy the paired (McNemar-style)
    interval, otherwise a seeded paired bootstrap."""
    if task.primary_metric == "accuracy":
        # Discordant rows: exactly one of the two right (with > 2 labels both may be wrong and differ).
        n = result.examples
        discordant = sum((r == y) != (c == y) for r, c, y in zip(reference.predictions, result.predictions, labels))
        lo, hi = paired_drop_interval(reference.accuracy - result.accuracy, discordant / n, n)
    else:
        lo, hi = paired_bootstrap_drop(reference.predictions, result.predictions, labels,
                                       metric_function(task.primary_metric, task.labels), seed=seed)
    return [100 * lo, 100 * hi]


class BenchRun:
    """The sessions of one ``pytest bench`` run, one per setup (profile = model, and task): each has its own
    baseline and FP32 reference, so nothing is shared or compared across models or tasks."""

    def __init__(self, cfgs: list[RunConfig]) -> None:
        self.sessions = {cfg.setup: BenchSession(cfg) for cfg in cfgs}

    def __getitem__(self, profile: str) -> "BenchSession":
        return self.sessions[profile]

    def start(self, cell: Cell) -> "BenchSession":
        """The session of ``cell``, after dropping every build but its method's: cells run method by method and
        profile by profile, so a run holds one built method at a time (a two-model run that kept them all was
        killed for memory at 21.5 GB on 24)."""
        for setup, session in self.sessions.items():
            session.release(keep=cell.method if setup == cell.setup else None)
        return self.sessions[str(cell.setup)]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return [entry for session in self.sessions.values() for entry in session.skipped]

    def run_summary(self) -> dict[str, Any]:
        """The saved JSON's ``quantbench`` table: the first setup's baseline at the top (single-model readers),
        every setup's RunConfig, methods, task and baseline under ``profiles`` (keyed by setup), and all skipped
        cells."""
        first = next(iter(self.sessions.values()))
        summary = first.run_summary()
        summary["skipped"] = self.skipped
        summary["profiles"] = {
            name: {"run_config": session.cfg.to_dict(), "methods": methods_metadata(session.cfg),
                   "task": task_of(session.cfg).metadata(),
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
        self._kernels: dict[tuple[str, str], dict[str, int] | None] = {}
        self._intervals: dict[tuple[str, str], list[float]] = {}
        self.cached_evaluations: set[tuple[str, str]] = set()
        self.skipped: list[dict[str, Any]] = []  # cells a method cannot run, with its reason
        self._judge: Any = None  # an embedding task's EmbeddingJudge, made on first use

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
        summary: dict[str, Any] = {"skipped": list(self.skipped), "task": task_of(self.cfg).metadata()}
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
        self._evals[key], cached = self.evaluate_built(self.built(method, hardware), "test")
        if cached:
            self.cached_evaluations.add(key)
        return self._evals[key]

    def evaluate_built(self, built: QuantizedModel, split: str) -> tuple[EvalResult, bool]:
        """``built`` scored on ``split`` of the baseline's data, cached on disk as :meth:`evaluation` says (the
        split is in the key); returns the result and whether it came from the cache."""
        device = "cuda" if built.hardware == "cuda" else "cpu"
        path = self.cfg.cache_dir / "evaluations" / f"{built.method}-{device}-{self._eval_key(built, split)}.json"
        with entry_lock(path):
            cached, ok = trusted(path, lambda p: EvalResult.from_dict(json.loads(p.read_text(encoding="utf-8"))))
            if ok:
                return cached, True
            get_hardware("cpu").activate() if device == "cpu" else None
            result = evaluate(built, self.baseline.data[split], self.cfg.eval_batch_size,
                              desc=built.method if split == "test" else f"{built.method} on {split}")
            write_json_atomic(path, result.to_dict())
            write_manifest(path)
        return result, False

    def labels(self, split: str = "test") -> list[int]:
        labels = self.baseline.data[split]["label"]
        return labels.tolist() if hasattr(labels, "tolist") else list(labels)

    def primary(self, result: EvalResult, split: str = "test") -> float:
        """The task's primary metric (accuracy, macro-F1 or one class's F1) of an evaluation on ``split``."""
        task = task_of(self.cfg)
        full = scores(torch.tensor(result.predictions), torch.tensor(self.labels(split)), num_labels=len(task.labels))
        return primary_value(full, task.primary_metric, task.labels)

    def primary_drop_ci95(self, method: str, hardware: Hardware) -> list[float]:
        """The paired 95 % interval (points) of ``method``'s primary-metric drop vs FP32 on the test split."""
        labels = self.baseline.data["test"]["label"]
        labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
        return self._primary_interval(method, hardware, self.evaluation(REFERENCE, get_hardware("cpu")),
                                      self.evaluation(method, hardware), labels, task_of(self.cfg))

    def _primary_interval(self, method: str, hardware: Hardware, reference: EvalResult, result: EvalResult,
                          labels: list[int], task: Any) -> list[float]:
        """95 % interval of the primary metric's drop vs FP32, in points: for accuracy the paired (McNemar-style)
        interval, otherwise a seeded paired bootstrap; once per method and device."""
        key = (method, hardware.device)
        if key not in self._intervals:
            self._intervals[key] = primary_drop_interval(task, reference, result, labels, self.cfg.seed)
        return self._intervals[key]

    def _eval_key(self, built: QuantizedModel, split: str = "test") -> str:
        return evaluation_key(self.cfg, self.baseline, built.settings.get("config"), split=split)

    def memory(self, method: str, hardware: Hardware) -> Memory:
        """Peak memory of a fresh process building the method and running the largest benchmarked batch."""
        key = (method, hardware.device)
        if key not in self._memory:
            self.baseline  # the child needs the cached checkpoint
            self._memory[key] = measure_in_fresh_process(
                memory_child.CALL, config=self.cfg.to_dict(), method=method, hardware=hardware.id,
                batch_size=max(self.cfg.batch_sizes), seq_len=max(self.cfg.seq_lens),
            )
        return self._memory[key]

    def kernels_run(self, method: str, hardware: Hardware) -> dict[str, int] | None:
        """The kernel implementations one call at the largest benchmarked batch runs (quant_impl.measure.profile),
        once per method and device; None on CUDA, whose kernels none of these reports name."""
        key = (method, hardware.device)
        if key not in self._kernels:
            if hardware.device != "cpu":
                self._kernels[key] = None
            else:
                from quant_impl.measure.profile import kernels

                hardware.activate()
                self._kernels[key] = kernels(self.built(method, hardware),
                                             self.batch(max(self.cfg.batch_sizes), max(self.cfg.seq_lens)))
        return self._kernels[key]

    def batch(self, batch_size: int, seq_len: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Real test reviews, ``batch_size`` of them (repeated if the split is smaller), cut to ``seq_len``."""
        test = self.baseline.data["test"]
        rows = test[[i % len(test) for i in range(batch_size)]]
        return rows["input_ids"][:, :seq_len].to(device), rows["attention_mask"][:, :seq_len].to(device)

    def extra_info(self, cell: Cell, hardware: Hardware) -> dict[str, Any]:
        """Everything but latency for one cell (speedups are added from the saved stats at the end)."""
        built = self.built(cell.method, hardware)
        fp32_size = self.size_bytes(REFERENCE, get_hardware("cpu"))
        memory = self.memory(cell.method, hardware)
        quality = self._embedding_quality(cell, hardware) if self.cfg.embedding else self._quality(cell, hardware)
        info = {
            "schema_version": SCHEMA_VERSION,
            "method": cell.method,
            "hardware": cell.hardware,
            "threads": hardware.threads,
            "batch_size": cell.batch_size,
            "seq_len": cell.seq_len,
            "profile": self.cfg.profile,
            "task": self.cfg.task,
            "model": self.cfg.model,
            "dataset": self.cfg.dataset,
            **quality,
            "size_bytes": built.size_bytes,
            "size_note": built.size_note,
            "compression_ratio": fp32_size / built.size_bytes,
            "peak_rss_mb": memory.peak_rss_mb,
            "peak_rss_sampled_mb": memory.sampled_peak_mb,
            "load_seconds": self.load_seconds,
            "build_seconds": built.build_seconds,
            # Filled from the timed calls (bench/test_methods.py) and the run's medians (results.add_speedups).
            "timed_calls": None,
            "latency_p50_s": None,
            "latency_p90_s": None,
            "latency_p99_s": None,
            "other_cores": None,
            "throughput_samples_per_s": None,
            "speedup_vs_fp32": None,
            "speedup_reference": REFERENCE,
            "speedup_vs_fp32_compiled": None,
            "method_settings": built.settings,
            "kernel": built.settings.get("kernel"),
            "kernels_run": self.kernels_run(cell.method, hardware),
        }
        missing = set(FIELD_NAMES) - set(info)
        assert not missing, f"extra_info lacks schema fields {missing}"
        return info

    def _quality(self, cell: Cell, hardware: Hardware) -> dict[str, Any]:
        """A classification cell's accuracy, F1 and primary-metric fields, each against FP32 on the test split."""
        result = self.evaluation(cell.method, hardware)
        reference = self.evaluation(REFERENCE, get_hardware("cpu"))
        labels = self.baseline.data["test"]["label"]
        labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
        correct = round(result.accuracy * result.examples)
        task = task_of(self.cfg)
        full = scores(torch.tensor(result.predictions), torch.tensor(labels), num_labels=len(task.labels))
        primary = primary_value(full, task.primary_metric, task.labels)
        reference_primary = primary_value(scores(torch.tensor(reference.predictions), torch.tensor(labels),
                                                 num_labels=len(task.labels)), task.primary_metric, task.labels)
        return {
            "eval_examples": result.examples,
            "accuracy": result.accuracy,
            "accuracy_ci95": list(wilson_interval(correct, result.examples)),
            "f1": result.f1,
            "accuracy_drop_pts": 100 * (reference.accuracy - result.accuracy),
            "agreement_with_fp32": agreement(reference.predictions, result.predictions),
            "mcnemar_p": mcnemar_exact(reference.predictions, result.predictions, labels),
            "primary_metric": task.primary_metric,
            "primary_value": primary,
            "primary_drop_pts": 100 * (reference_primary - primary),
            "primary_drop_ci95": self._primary_interval(cell.method, hardware, reference, result, labels, task),
            "bootstrap_resamples": None if task.primary_metric == "accuracy" else BOOTSTRAP_RESAMPLES,
            "per_class_f1": full.per_class_f1,
            "confusion_matrix": full.confusion_matrix,
            "evaluation_cached": (cell.method, hardware.device) in self.cached_evaluations,
            "embedding": None,
        }

    def _embedding_quality(self, cell: Cell, hardware: Hardware) -> dict[str, Any]:
        """An embedding cell's fields: no labels, so no accuracy; the primary metric and ``embedding`` (fidelity
        and downstream drops vs FP32, quant_impl.session.embeddings) instead."""
        from quant_impl.session.embeddings import EmbeddingJudge

        if self._judge is None:
            self._judge = EmbeddingJudge(self)
        result = self._judge.scores(cell.method, hardware)
        primary = result["primary"]
        return {
            "eval_examples": result["fidelity"]["texts"], "accuracy": None, "accuracy_ci95": None, "f1": None,
            "accuracy_drop_pts": None, "agreement_with_fp32": None, "mcnemar_p": None,
            "primary_metric": primary["metric"], "primary_value": primary["value"],
            "primary_drop_pts": 100 * primary["drop"], "primary_drop_ci95": [100 * v for v in primary["ci95"]],
            "bootstrap_resamples": BOOTSTRAP_RESAMPLES, "per_class_f1": None, "confusion_matrix": None,
            "evaluation_cached": None, "embedding": result,
        }

