"""The one JSON schema quantbench writes: pytest-benchmark's own file, with these keys in every benchmark's
``extra_info``. The report and ``quantbench compare`` read only this (never live objects).

A value that was not measured is ``None``, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1
# The method every drop, speedup and compression is measured against, and the compiled FP32 of the second speedup.
REFERENCE = "fp32"
COMPILED_REFERENCE = "fp32-compiled"

# The report's chapter 4 (the seed report's): (number, key of its heading in reports_templates/lang/*.toml). A method
# names one of these, or a number of its own with its heading per language (saved with the run, like its other facts).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("4.1", "baseline"), ("4.2", "dynamic"), ("4.3", "static"), ("4.4", "qat"), ("4.5", "half_mixed"),
    ("4.5p", "peers"),
)
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "mixed", "int4", "int3", "int2")
# What runs saved before the bench wrote each method's registration (``quantbench.methods``) are judged by: the
# registrations as they were then, frozen (never today's code, which may have changed or dropped a method).
LEGACY_METHODS_FILE = Path(__file__).with_name("legacy_methods.json")


@dataclass(frozen=True)
class Field:
    name: str
    unit: str
    description: str
    higher_is_better: bool | None = None  # None: not a quality metric (an identifier or a setting)


EXTRA_INFO_FIELDS: tuple[Field, ...] = (
    Field("schema_version", "", "version of this key set"),
    Field("method", "", "registered method name (quant_impl.methods)"),
    Field("hardware", "", "hardware id: cpu (all cores), cpu-1t, cuda"),
    Field("threads", "threads", "torch intra-op threads on CPU (None on CUDA)"),
    Field("batch_size", "texts", "texts per timed call"),
    Field("seq_len", "tokens", "tokens per text in the timed call"),
    Field("profile", "", "RunConfig profile of the baseline"),
    Field("task", "", "registered task (quant_impl.tasks) or custom: what the classifier predicts"),
    Field("model", "", "model spec of the baseline"),
    Field("dataset", "", "dataset spec of the baseline"),
    Field("eval_examples", "texts", "test texts the accuracy was measured on"),
    Field("accuracy", "fraction", "test accuracy", True),
    Field("accuracy_ci95", "fraction", "[lo, hi] Wilson 95 % interval of accuracy"),
    Field("f1", "fraction", "macro F1 on the test split", True),
    Field("accuracy_drop_pts", "points", "FP32 accuracy minus this method's, in percentage points", False),
    Field("agreement_with_fp32", "fraction", "share of test texts predicted as FP32 predicts them", True),
    Field("mcnemar_p", "probability", "exact McNemar test p-value of the paired predictions vs FP32"),
    Field("primary_metric", "", "the task's primary metric: accuracy, macro_f1 or f1:<label> (its registration says "
          "why); recall_at_10 or cosine for an embedding task"),
    Field("primary_value", "fraction", "the primary metric on the test split", True),
    Field("primary_drop_pts", "points", "FP32's primary metric minus this method's, in points (what the gate judges)",
          False),
    Field("primary_drop_ci95", "points", "[lo, hi] paired 95 % interval of primary_drop_pts: the McNemar-style "
          "interval for accuracy, a seeded paired bootstrap otherwise"),
    Field("bootstrap_resamples", "", "resamples of that bootstrap (None: accuracy's closed-form interval)"),
    Field("per_class_f1", "fraction", "F1 of each label id on the test split (None: class absent)"),
    Field("confusion_matrix", "", "test counts [true label][predicted label]"),
    Field("size_bytes", "bytes", "serialized bytes a deployment ships (see size_note)", False),
    Field("size_note", "", "what size_bytes counts"),
    Field("compression_ratio", "x", "FP32 size_bytes / this size_bytes", True),
    Field("peak_rss_mb", "MB", "peak resident memory (VmHWM, else ru_maxrss) of a fresh process that loads the baseline, "
          "builds the method and runs the largest benchmarked batch", False),
    Field("peak_rss_sampled_mb", "MB", "memory-profiler's highest 0.1 s RSS sample in that process", False),
    Field("load_seconds", "s", "time to load the FP32 baseline the method starts from", False),
    Field("build_seconds", "s", "time to build the method (quantize, calibrate, train, compile)", False),
    Field("timed_calls", "calls", "timed calls of the cell (pytest-benchmark's rounds, one call each)"),
    Field("latency_p50_s", "s", "median seconds per timed call", False),
    Field("latency_p90_s", "s", "90th percentile seconds per call (MLPerf's single-stream figure); None under "
          "10 calls", False),
    Field("latency_p99_s", "s", "99th percentile seconds per call; None under 100 calls, where it would be the maximum",
          False),
    Field("other_cores", "cores", "CPU time other processes used during the timed calls, in cores (None: unknown); "
          "above 0.25 the timings were contended"),
    Field("throughput_samples_per_s", "texts/s", "batch_size / median latency", True),
    Field("speedup_vs_fp32", "x", "median latency of speedup_reference / this median, same cell", True),
    Field("speedup_reference", "", "the FP32 variant speedup_vs_fp32 is against (fp32 = eager)"),
    Field("speedup_vs_fp32_compiled", "x", "median latency of fp32-compiled / this median, same cell", True),
    Field("method_settings", "", "the method's config (torchao-style {_type, _version, _data}) and settings"),
    Field("evaluation_cached", "", "accuracy figures read from the evaluation cache (same checkpoint, config, "
          "test split, library versions and method code) instead of evaluated again"),
    Field("kernel", "", "{kind, name}: native (a real kernel computes at the stated precision) or simulated "
          "(stored low-bit, computed after converting back), and the kernel that ran (quant_impl.methods.kernels)"),
    Field("kernels_run", "", "the kernel implementations one call at the run's largest batch ran, with how many "
          "times: oneDNN's for torch (matmul: brg_matmul:avx512_core_vnni), OpenVINO's execution type per layer, ONNX "
          "Runtime's op types; None on CUDA (quant_impl.measure.profile.kernels)"),
    Field("embedding", "", "embedding tasks only (None otherwise; their accuracy fields are None): cosine (mean, p5) "
          "and recall@10 vs FP32's embeddings over the corpus, MTEB classification accuracy and k-means V-measure "
          "drops per downstream task, each with its paired 95 % interval (quant_impl.measure.embedding_quality)"),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in EXTRA_INFO_FIELDS)
# Fields added with tasks: a run saved before them measured IMDB by accuracy, so it lacks them without missing anything.
TASK_FIELDS = ("task", "primary_metric", "primary_value", "primary_drop_pts", "primary_drop_ci95", "bootstrap_resamples",
               "per_class_f1", "confusion_matrix")
# Fields added with tail latency: runs saved before them lack them without missing anything.
LATENCY_FIELDS = ("timed_calls", "latency_p50_s", "latency_p90_s", "latency_p99_s", "other_cores")
# Added with embedding tasks: runs saved before them lack it without missing anything.
EMBEDDING_FIELDS = ("embedding",)
# Added with the native/simulated kernel fact.
KERNEL_FIELDS = ("kernel",)
# Added with the kernels one call ran (the evidence behind a CPU's verdicts).
KERNELS_RUN_FIELDS = ("kernels_run",)
# A kernel fact's kinds (quant_impl.methods.kernels): computed at the stated precision, or after converting back.
KERNEL_KINDS = ("native", "simulated")


def kernel_fact(value: object) -> dict[str, str] | None:
    """A saved ``kernel`` fact ({kind, name}), or None when the value is not one (older runs have none)."""
    if isinstance(value, dict) and value.get("kind") in KERNEL_KINDS and isinstance(value.get("name"), str):
        return {"kind": value["kind"], "name": value["name"]}
    return None
FIELDS: dict[str, Field] = {f.name: f for f in EXTRA_INFO_FIELDS}
