"""The ``quantbench`` command line. Flags come from RunConfig's fields, so ``--help`` and the config agree."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from typing import Any, Sequence

from quant_impl import quiet
from quant_impl.config import PROFILES, RunConfig, config_fields
from quant_impl.errors import QuantbenchError


_TYPES = {"int": int, "float": float, "int | None": int, "str": str, "Path": str}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantbench",
        description="Quantization benchmark and regression suite for BERT-class models (offline by default).",
        epilog="Benchmarks themselves run under pytest: pytest bench --benchmark-save=NAME (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    baseline = commands.add_parser(
        "baseline",
        help="fine-tune (or load the cached) FP32 baseline and print its test accuracy",
        description=(
            "Fine-tune the FP32 classifier on the task's training split (--task, default imdb), or load it from the "
            "cache when every setting that shapes it is unchanged, then print the task's primary metric, accuracy, "
            "macro F1, test size, training time and checkpoint. "
            "Settings come from the profile, then pyproject.toml [tool.quantbench], then these flags."
        ),
    )
    _add_config_flags(baseline)
    baseline.add_argument(
        "--json", action="store_true", help="print the result as one JSON object on the last line of stdout"
    )
    baseline.add_argument("--key", action="store_true",
                          help="print only the baseline's cache key (its folder name under <cache>/baselines) and "
                          "exit without loading or training: a CI cache key for the checkpoint")
    baseline.set_defaults(handler=_cmd_baseline)

    tasks = commands.add_parser(
        "tasks",
        help="list the classification tasks: labels, primary metric, sizes and where the data comes from",
        description="List every registered task (--task NAME) with its kind, label names, primary metric and why, "
        "text length, split sizes per profile, data source and licence, and whether its data is installed here. "
        "Your own data is --task custom --dataset FILE.",
    )
    tasks.add_argument("--json", action="store_true", help="print the list as one JSON object")
    tasks.set_defaults(handler=_cmd_tasks)

    methods = commands.add_parser(
        "methods",
        help="list the quantization methods and where each runs",
        description="List every registered method with, per hardware target, whether it runs on this machine "
        "and why not.",
    )
    methods.add_argument("--json", action="store_true", help="print the list as one JSON object")
    methods.set_defaults(handler=_cmd_methods)

    speed = commands.add_parser(
        "speed",
        help="time methods side by side, interleaved in one process (medians and ratios vs FP32)",
        description="Build each method from the cached baseline, then time them round-robin on one batch of real "
        "test reviews so VM drift hits all alike; print median latency, speedup vs fp32, size and whether each "
        "method's kernel is native or simulated. Build and "
        "compile time are reported apart, never inside the latency.",
    )
    # The baseline is selected as for `quantbench baseline`; training flags are not offered here.
    _add_config_flags(speed, only=("profile", "model", "task", "dataset", "threads", "cache_dir"))
    speed.add_argument("--method-options", default=None, metavar="METHOD.KEY=VALUE,...",
                       help="method settings, e.g. static-int8.quantize_embedding=true,dynamic-int8.engine=torch-ao "
                       "(default: [tool.quantbench.method_options] in pyproject.toml)")
    speed.add_argument("--methods", default=None,
                       help="comma-separated method names; a method this machine cannot run (a peer engine without "
                       "the 'peers' extra) is skipped with its reason (default: the methods whose registration sets "
                       "speed_default: torch's CPU paths and the peer engines; `quantbench methods` marks them). "
                       "A name may carry options in brackets, ';'-separated, to time two settings of one method "
                       "side by side: \"dynamic-int8,dynamic-int8[quantize_lowering=torch]\"")
    speed.add_argument("--batch-size", dest="speed_batch", default="32",
                       help="texts per call; several, comma-separated (e.g. 1,32), are timed one after the other "
                       "(default 32)")
    speed.add_argument("--accuracy", action="store_true",
                       help="also score each method on the test split (cached evaluations, as pytest bench) and "
                       "print the task's primary metric (accuracy, macro-F1 or a class's F1) and its drop vs fp32 "
                       "with its paired 95 %% interval; on an embedding task (--task embeddings): cosine and "
                       "recall@10 vs fp32's embeddings and the downstream accuracy and V-measure drops, with paired "
                       "95 %% intervals")
    speed.add_argument("--seq-len", type=int, default=None,
                       help="tokens per text (default: the task's benchmark length, 128 for imdb)")
    speed.add_argument("--rounds", type=int, default=10,
                       help="timed calls per method and batch size (default 10; the p90 is shown from 10, the p99 "
                            "is in --json from 100)")
    speed.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    speed.set_defaults(handler=_cmd_speed)

    profile = commands.add_parser(
        "profile",
        help="where each method's time goes, per op kind (torch.profiler; OpenVINO's own per-layer counters)",
        description="Build the methods and profile a few calls of each: milliseconds per call by op kind (int8 "
        "linear, attention, float matmul, quantize/dequantize, softmax, layer norm, embedding, fused elementwise, "
        "other), side by side. Profilers slow what they watch: compare shares, take latencies from quantbench speed.",
    )
    _add_config_flags(profile, only=("profile", "model", "task", "dataset", "threads", "cache_dir"))
    profile.add_argument("--methods", default="static-int8,openvino-int8",
                         help="comma-separated method names, each may carry options in brackets, e.g. "
                         "dynamic-int8[quantize_lowering=torch;attention=sdpa] (default: %(default)s)")
    profile.add_argument("--method-options", default=None, metavar="METHOD.KEY=VALUE,...",
                         help="method settings (default: [tool.quantbench.method_options] in pyproject.toml)")
    profile.add_argument("--batch-size", dest="speed_batch", default="1,32",
                         help="texts per call, comma-separated (default %(default)s)")
    profile.add_argument("--seq-len", type=int, default=None,
                         help="tokens per text (default: the task's benchmark length, 128 for imdb)")
    profile.add_argument("--rounds", type=int, default=5, help="profiled calls per method and batch size (default 5)")
    profile.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    profile.set_defaults(handler=_cmd_profile)

    from quant_impl.cache_entries import add_cache_parser

    add_cache_parser(commands, lambda parser: _add_config_flags(parser, only=("cache_dir",)))
    from quant_impl.expected import add_expected_parser

    add_expected_parser(commands, lambda parser: _add_config_flags(
        parser, only=("profile", "model", "task", "dataset", "threads", "cache_dir")))
    from quant_impl.tune.cli import add_tune_parser

    add_tune_parser(commands, lambda parser: _add_config_flags(
        parser, only=("profile", "model", "task", "dataset", "epochs", "threads", "cache_dir")))
    from quant_impl.history import add_compare_parser

    add_compare_parser(commands)
    from quant_impl.report.cli import add_report_parser

    add_report_parser(commands)
    _add_verbose_flags(parser)
    return parser


_VERBOSE_HELP = ("show everything: quantbench's log of what is loaded and cached, and the third-party warnings "
                 "hidden by default (torch, transformers and torchao notices you cannot act on, listed in "
                 "quant_impl/quiet.py)")


def _add_verbose_flags(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` on the program and on every command and sub-command, wherever it is typed."""
    # SUPPRESS: a command's parser that was not given -v must not reset the value the program's parser read.
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP)
    for action in parser._actions:  # argparse offers no public list of a parser's sub-commands
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):  # an alias maps to its command's parser
                _add_verbose_flags(command)


def _add_config_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    group = parser.add_argument_group("run settings (default: the profile's value)")
    for f in config_fields():
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name == "profile":
            group.add_argument(flag, metavar="NAME", help=f"named set of defaults: {', '.join(PROFILES)}, or one of "
                               "your own in [tool.quantbench.profiles.<name>] (default: quick)")
            continue
        group.add_argument(
            flag,
            dest=f.name,
            type=_TYPES.get(str(f.type), str),
            choices=f.metadata.get("choices"),
            default=None,
            help=f.metadata["help"],
        )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    overrides = {f.name: getattr(args, f.name, None) for f in config_fields() if f.name != "profile"}
    overrides["method_options"] = getattr(args, "method_options", None)
    return RunConfig.load(profile=args.profile, overrides=overrides)


def _cmd_baseline(args: argparse.Namespace) -> int:
    from quant_impl.train import checkpoint_path, get_baseline  # heavy imports only once the arguments are valid

    cfg = config_from_args(args)
    if args.key:
        print(checkpoint_path(cfg).name)
        return 0
    base = get_baseline(cfg)
    summary = base.summary()
    if args.json:
        print(json.dumps(summary, sort_keys=True))
        return 0
    task = base.task
    if cfg.embedding:
        print(f"FP32 reference ({cfg.profile} profile, embedding task {task.name}): the encoder as given, never trained")
        print(f"  model        {cfg.model} ({summary['pooling']} pooling"
              f"{', normalized' if summary['normalize'] else ''}, {summary['dimension']} dimensions) from "
              f"{base.checkpoint}")
        print(f"  corpus       {summary['corpus_texts']} texts ({', '.join(task.labels)}), max_length "
              f"{cfg.max_length} ({cfg.truncation}); the model declares {summary['model_max_seq_length']}")
        print(f"  judged by    {task.primary_metric} ({task.metric_reason}); downstream: {', '.join(task.downstream)}")
        return 0
    state = "loaded from cache" if base.cached else "fine-tuned now"
    print(f"FP32 baseline ({cfg.profile} profile, task {task.name}, {state})")
    print(f"  model        {cfg.model} on {cfg.dataset} data, max_length {cfg.max_length} ({cfg.truncation})")
    print(f"  labels       {', '.join(task.labels)}; primary metric {task.primary_metric} ({task.metric_reason})")
    if task.primary_metric not in ("accuracy", "macro_f1"):
        print(f"  {task.primary_metric:<12} {summary['primary_value']:.4f}")
    print(f"  accuracy     {base.eval.accuracy:.4f} on {base.eval.examples} held-out test texts")
    print(f"  macro F1     {base.eval.f1:.4f}")
    if cfg.epochs == 0:
        print("  training     none: the model is used as given (epochs = 0)")
    else:
        print(f"  training     {len(base.data['train'])} texts x {cfg.epochs} epoch(s) in {base.train.seconds:.0f} s")
    print(f"  checkpoint   {base.checkpoint}")
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    from quant_impl.tasks import CUSTOM, get_task, task_names

    table = {}
    for name in task_names():
        spec = get_task(name)
        table[name] = {**spec.metadata(), "installed": spec.missing_package() or "yes"}
        if not spec.offline:
            table[name]["installed"] = "online only: --dataset hub, or a local save_to_disk copy"
    if args.json:
        print(json.dumps(table, sort_keys=True))
        return 0
    for name, row in table.items():
        sizes = ", ".join(f"{profile}: " + " / ".join(f"{k.removesuffix('_size')} {v or 'rest'}" for k, v in sz.items()
                                                       if k.endswith("_size"))
                          for profile, sz in row["profiles"].items())
        length = row["settings"].get("max_length", 128)
        print(f"{name:<18} {row['summary']}")
        print(f"  labels   {', '.join(row['labels'])}{' (text pairs)' if row['text_pair'] else ''}")
        print(f"  metric   {row['primary_metric']}: {row['metric_reason']}")
        print(f"  length   {length} tokens; sizes {sizes or 'the profile defaults'}")
        print(f"  data     {row['source']} [{', '.join(row['sources']) or 'local only'}]; installed: {row['installed']}")
    print(f"{CUSTOM:<18} your own data: --task {CUSTOM} --dataset FILE (labels, pairs and metric read from the file)")
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from quant_impl.hardware import HARDWARE_IDS, get_hardware
    from quant_impl.methods import get_method, method_names

    table = {}
    for name in method_names():
        spec = get_method(name)
        table[name] = {
            **spec.metadata(),  # the registration's facts, as every saved run carries them
            "summary": spec.summary,
            "hardware": {hw: spec.supports(get_hardware(hw)) or "runs" for hw in HARDWARE_IDS},
            "kernels": {hw: spec.kernel_on(get_hardware(hw)).as_dict() for hw in HARDWARE_IDS
                        if get_hardware(hw).device in spec.devices},
            "speed_default": spec.speed_default,
            "main_job": spec.main_job,
        }
    if args.json:
        print(json.dumps(table, sort_keys=True))
        return 0
    for name, row in table.items():
        timed = ("  [main job]" if row["main_job"] else "") + ("  [quantbench speed default]" if row["speed_default"] else "")
        print(f"{name:<18} {row['summary']}{timed}")
        for hw, state in row["hardware"].items():
            kernel = row["kernels"].get(hw)
            print(f"  {hw:<8} {state}" + (f"; {kernel['kind']}: {kernel['name']}" if kernel and state == "runs" else ""))
    return 0


def _cmd_speed(args: argparse.Namespace) -> int:
    from quant_impl.schema import REFERENCE
    from quant_impl.session.store import BenchSession
    from quant_impl.hardware import get_hardware
    from quant_impl.measure.contention import OtherLoad, contention_warning
    from quant_impl.measure.latency import P90_CALLS, interleaved_latency
    from quant_impl.measure.machine import machine_info
    from quant_impl.methods import get_method

    names, batch_sizes, cfg, hardware = _timing_args(args)
    kind = "embedding" if cfg.embedding else "classification"
    reasons = {name: get_method(name).supports(hardware, kind) for name in names}
    skipped = {name: reason for name, reason in reasons.items() if reason}
    for name, reason in skipped.items():
        print(f"skipping {reason}", file=sys.stderr)
    names = [name for name in names if name not in skipped]
    session = BenchSession(cfg)
    built = {name: session.built(name, hardware) for name in names}
    embedding_scores: dict[str, Any] = {}
    if args.accuracy and cfg.embedding:  # judged against FP32's embeddings, not by labels
        from quant_impl.session.embeddings import EmbeddingJudge

        judge = EmbeddingJudge(session)
        embedding_scores = {name: judge.scores(name, hardware) for name in names}
    classify = args.accuracy and not cfg.embedding
    evals = {name: session.evaluation(name, hardware) for name in names} if classify else {}
    reference_eval = session.evaluation(REFERENCE, get_hardware("cpu")) if classify else None
    accuracy = {name: _primary(session, result) for name, result in evals.items()}
    accuracy.update({name: scores["primary"]["value"] for name, scores in embedding_scores.items()})
    reference_accuracy = _primary(session, reference_eval) if reference_eval else 1.0
    metric = session.baseline.task.primary_metric if args.accuracy else None
    cells: dict[int, dict[str, Any]] = {}
    with OtherLoad() as load:
        for batch_size in batch_sizes:
            inputs = session.batch(batch_size, args.seq_len)
            hardware.activate()
            cells[batch_size] = interleaved_latency({n: b.predict for n, b in built.items()}, inputs, rounds=args.rounds)
        real = _real_length_throughput(session, built, batch_sizes, hardware) if cfg.embedding else {}
    contended = contention_warning(load.cores)
    if contended:
        print(f"warning: {contended}", file=sys.stderr)
    machine = machine_info()
    result: dict[str, Any] = {
        "hardware": hardware.describe(),
        "cpu_model": machine["cpu_model"],
        "cpu_class": machine["cpu_class"],
        "forced_cpu_class": machine["forced_cpu_class"],
        "other_cores": load.cores,
        "batch_sizes": batch_sizes,
        "seq_len": args.seq_len,
        "rounds": args.rounds,
        "skipped": skipped,
        "methods": {},
    }
    for name in names:
        row: dict[str, Any] = {
            "size_bytes": built[name].size_bytes,
            "build_seconds": round(built[name].build_seconds, 1),
            "cells": {},
        }
        for batch_size, latency in cells.items():
            reference = latency[REFERENCE].median_s if REFERENCE in latency else None
            row["cells"][str(batch_size)] = {
                "median_ms": 1000 * latency[name].median_s,
                "min_ms": 1000 * latency[name].min_s,
                "p90_ms": None if latency[name].p90_s is None else 1000 * latency[name].p90_s,
                "p99_ms": None if latency[name].p99_s is None else 1000 * latency[name].p99_s,
                "speedup_vs_fp32": reference / latency[name].median_s if reference else None,
            }
        row["kernel"] = built[name].settings.get("kernel")
        if name in accuracy:
            row["primary_metric"] = metric
            row["primary_value"] = accuracy[name]
            row["primary_drop_pts"] = 100 * (reference_accuracy - accuracy[name])
        if name in evals:
            row["primary_drop_ci95"] = session.primary_drop_ci95(name, hardware)
        if name in evals:
            row["accuracy"] = evals[name].accuracy
            row["accuracy_drop_pts"] = 100 * (reference_eval.accuracy - evals[name].accuracy)
        if name in embedding_scores:
            row["embedding"] = embedding_scores[name]
        if real:
            row["real_lengths"] = {str(bs): dataclasses.asdict(per[name]) for bs, per in real.items()}
        result["methods"][name] = row
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    tails = args.rounds >= P90_CALLS
    forced = (f", forced to {machine['forced_cpu_class']}: its kernels at this CPU's speed"
              if machine["forced_cpu_class"] else "")
    print(f"{machine['cpu_model']} ({machine['cpu_class']} class{forced}), {hardware.describe()}, {args.seq_len} tokens, "
          f"{args.rounds} interleaved rounds per batch size (medians{', p90' if tails else ''})"
          f"; task {cfg.task}" + (f", {metric} on {len(session.baseline.data['test'])} test texts" if metric else ""))
    width = max([18] + [len(name) + 1 for name in result["methods"]])
    header = f"{'method':<{width}}" + "".join(f"{f'b{b} ms':>11}" + (f"{'p90':>8}" if tails else "") + f"{'vs fp32':>9}"
                                         for b in batch_sizes)
    header += f"{'size MB':>9}{'build s':>9}" + (f"{metric[:8] + ' %':>11}{'drop pt':>9}" if args.accuracy else "")
    header += f"{'95 % CI':>16}" if classify else ""
    print(header + "  kernel")
    for name, row in result["methods"].items():
        line = f"{name:<{width}}"
        for batch_size in batch_sizes:
            cell = row["cells"][str(batch_size)]
            ratio = f"{cell['speedup_vs_fp32']:.2f}x" if cell["speedup_vs_fp32"] else "-"
            line += f"{cell['median_ms']:>11.1f}" + (f"{cell['p90_ms']:>8.1f}" if tails else "") + f"{ratio:>9}"
        line += f"{row['size_bytes'] / 1e6:>9.1f}{row['build_seconds']:>9.1f}"
        if args.accuracy:
            line += f"{100 * row['primary_value']:>11.2f}{row['primary_drop_pts']:>9.2f}"
        if "primary_drop_ci95" in row:
            lo, hi = row["primary_drop_ci95"]
            line += f"{f'{lo:.2f} to {hi:.2f}':>16}"
        kernel = row["kernel"] or {}
        print(line + f"  {kernel.get('kind', '-')}")
    _print_bits_curve(result, batch_sizes)
    if real:
        _print_real_lengths(real)
    if embedding_scores:
        _print_embedding_quality(embedding_scores, session.baseline.task)
    return 0


def _print_bits_curve(result: dict[str, Any], batch_sizes: list[int]) -> None:
    """The weight-only methods (their registration's ``weight_bits``) against the fastest int8 method of this run
    (int8 activations; within its accuracy threshold when accuracy was scored), per batch size."""
    from quant_impl.methods import get_method

    rows = result["methods"]
    curve = sorted((n for n in rows if get_method(n).weight_bits is not None),
                   key=lambda n: (get_method(n).engine, -get_method(n).weight_bits, n))
    if not curve:
        return

    def within(name: str) -> bool:
        threshold = get_method(name).threshold
        return "primary_drop_pts" not in rows[name] or threshold is None or rows[name]["primary_drop_pts"] <= threshold

    int8 = [n for n in rows if get_method(n).precision == "int8" and get_method(n).weight_bits is None and within(n)]
    fastest = {b: min(int8, key=lambda n, b=b: rows[n]["cells"][str(b)]["median_ms"], default=None)
               for b in batch_sizes}
    named = ", ".join(f"b{b} {fastest[b] or '-'}" for b in batch_sizes)
    print(f"\nbits curve: weight-only methods vs the fastest int8 ({named}; x > 1: faster than it)")
    print(f"{'method':<24}{'engine':<13}{'bits':>5}{'kernel':>11}{'size MB':>9}" +
          "".join(f"{f'b{b} vs fp32':>13}{f'b{b} vs int8':>13}" for b in batch_sizes))
    for name in curve:
        spec, row = get_method(name), rows[name]
        line = f"{name:<24}{spec.engine:<13}{spec.weight_bits:>5}{(row['kernel'] or {}).get('kind', '-'):>11}"
        line += f"{row['size_bytes'] / 1e6:>9.1f}"
        for b in batch_sizes:
            cell = row["cells"][str(b)]
            best = fastest[b]
            vs_int8 = rows[best]["cells"][str(b)]["median_ms"] / cell["median_ms"] if best else None
            speedup = f"{cell['speedup_vs_fp32']:.2f}x" if cell["speedup_vs_fp32"] else "-"
            line += f"{speedup:>13}" + f"{f'{vs_int8:.2f}x' if vs_int8 else '-':>13}"
        print(line)


# Real-length batches per batch size: enough texts that lengths vary (256), at least 4 and at most 64 calls.
REAL_LENGTH_TEXTS, REAL_LENGTH_ROUNDS = 256, 2


def _real_length_throughput(session: Any, built: dict[str, Any], batch_sizes: list[int], hardware: Any) -> dict[int, Any]:
    """An embedding task's sentences per second at each batch size, over corpus texts cut per batch to the longest
    one (as a server that pads per batch runs them), interleaved across methods."""
    from quant_impl.measure.latency import interleaved_throughput, trimmed_batches

    corpus = session.baseline.data["test"][:]  # the whole split as tensors
    out = {}
    for batch_size in batch_sizes:
        count = min(64, max(4, REAL_LENGTH_TEXTS // batch_size))
        batches = trimmed_batches(corpus["input_ids"], corpus["attention_mask"], batch_size, count)
        hardware.activate()
        out[batch_size] = interleaved_throughput({n: b.predict for n, b in built.items()}, batches,
                                                 rounds=REAL_LENGTH_ROUNDS)
    return out


def _print_real_lengths(real: dict[int, Any]) -> None:
    sizes = list(real)
    first = next(iter(real.values()))
    names = list(first)
    print(f"\nreal lengths: corpus texts, each batch cut to its longest text ({REAL_LENGTH_ROUNDS} interleaved rounds; "
          "texts/s; graphs = TorchDynamo graphs compiled after the build, warm-up s apart from the speed)")
    header = f"{'method':<18}" + "".join(f"{f'b{b} texts/s':>15}{'vs fp32':>9}{'lengths':>9}" for b in sizes)
    print(header + f"{'graphs':>8}{'warm-up s':>11}")
    for name in names:
        line = f"{name:<18}"
        for b in sizes:
            t, ref = real[b][name], real[b].get("fp32")
            ratio = f"{t.texts_per_s / ref.texts_per_s:.2f}x" if ref and ref.texts_per_s else "-"
            line += f"{t.texts_per_s:>15.1f}{ratio:>9}{t.distinct_lengths:>9}"
        graphs = sum(real[b][name].graphs for b in sizes)
        warm = sum(real[b][name].warmup_s for b in sizes)
        print(line + f"{graphs:>8}{warm:>11.1f}")


def _print_embedding_quality(scores: dict[str, Any], task: Any) -> None:
    """The embedding task's quality table: fidelity, then downstream drops (points), each with its interval."""
    def cell(drop: dict[str, Any], scale: float = 1.0) -> str:
        lo, hi = drop["ci95"]
        return f"{scale * drop['drop']:.2f} [{scale * lo:.2f}, {scale * hi:.2f}]"

    first = next(iter(scores.values()))
    print(f"\nembedding quality vs fp32 (drops in points, paired 95 % intervals; corpus of "
          f"{first['fidelity']['texts']} texts; downstream: MTEB's logistic regression and k-means protocols)")
    columns = ["cos mean", "cos p5", "recall@10 drop"]
    columns += [f"{name} acc drop" for name in first.get("classification", {})]
    columns += [f"{name} V drop" for name in first.get("clustering", {})]
    rows = {}
    for name, result in scores.items():
        fidelity = result["fidelity"]
        values = [f"{fidelity['cosine_mean']:.4f}", f"{fidelity['cosine_p5']:.4f}",
                  cell(fidelity["recall_at_10"], 100)]
        values += [cell(v["accuracy"]) for v in result.get("classification", {}).values()]
        values += [cell(v["v_measure"]) for v in result.get("clustering", {}).values()]
        rows[name] = values
    widths = [2 + max(len(c), *(len(v[i]) for v in rows.values())) for i, c in enumerate(columns)]
    print(f"{'method':<18}" + "".join(f"{c:>{w}}" for c, w in zip(columns, widths)))
    for name, values in rows.items():
        print(f"{name:<18}" + "".join(f"{v:>{w}}" for v, w in zip(values, widths)))
    if "downstream_skipped" in first:
        print(f"downstream skipped: {first['downstream_skipped']}")


def _primary(session: Any, result: Any) -> float:
    """The task's primary metric of one test-split evaluation (accuracy, macro-F1 or one class's F1)."""
    return session.primary(result, "test")


KERNELS_SHOWN = 8  # kernel names per method in the text table (most executed first); --json has them all


def _cmd_profile(args: argparse.Namespace) -> int:
    from quant_impl.session.store import BenchSession
    from quant_impl.measure.profile import KINDS, OTHER, kernel_profiling, kernels, op_times
    from quant_impl.methods import get_method

    names, batch_sizes, cfg, hardware = _timing_args(args)
    for name in names:
        reason = get_method(name).supports(hardware)
        if reason:
            raise QuantbenchError(reason)
    session = BenchSession(cfg)
    result: dict[str, Any] = {"hardware": hardware.describe(), "seq_len": args.seq_len, "rounds": args.rounds,
                              "profilers": {}, "batches": {}, "kernels": {}}
    with kernel_profiling():  # Inductor's kernels are recorded only if compiled with it on
        built = {name: session.built(name, hardware) for name in names}
        for batch_size in batch_sizes:
            inputs = session.batch(batch_size, args.seq_len)
            hardware.activate()
            per_method, per_kernel = {}, {}
            for name in names:
                per_method[name], result["profilers"][name] = op_times(built[name], inputs, args.rounds)
                per_kernel[name] = kernels(built[name], inputs)
            result["batches"][str(batch_size)] = per_method
            result["kernels"][str(batch_size)] = per_kernel
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    kinds = [kind for kind, _pattern in KINDS] + [OTHER]
    print(f"{hardware.describe()}, {args.seq_len} tokens, {args.rounds} profiled calls: ms per call by op kind "
          "(profiled: compare shares, not latencies)")
    for name, profiler in result["profilers"].items():
        print(f"  {name}: {profiler}")
    for batch_size, per_method in result["batches"].items():
        print(f"\nbatch {batch_size}")
        print(f"{'op kind':<30}" + "".join(f"{name:>18}" for name in names))
        for kind in kinds:
            if any(per_method[name].get(kind) for name in names):
                print(f"{kind:<30}" + "".join(f"{per_method[name].get(kind, 0.0):>18.2f}" for name in names))
        print(f"{'total':<30}" + "".join(f"{sum(per_method[name].values()):>18.2f}" for name in names))
        print("kernels of one call (torch: oneDNN's implementations; OpenVINO: each layer's execution type; ONNX "
              "Runtime: op types, its MLAS kernels being picked by cpuid inside them):")
        for name, found in result["kernels"][batch_size].items():
            ranked = sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))
            listed = ", ".join(f"{kernel} x{count}" for kernel, count in ranked[:KERNELS_SHOWN])
            more = f" (and {len(ranked) - KERNELS_SHOWN} more in --json)" if len(ranked) > KERNELS_SHOWN else ""
            print(f"  {name}: {listed or '(none reported)'}{more}")
    return 0


def _timing_args(args: argparse.Namespace) -> tuple[list[str], list[int], RunConfig, Any]:
    """The checked methods, batch sizes, RunConfig and CPU target of `speed` and `profile`."""
    from quant_impl.hardware import get_hardware
    from quant_impl.methods import get_method

    if args.methods is None:
        from quant_impl.methods import speed_methods

        args.methods = ",".join(speed_methods())
    # commas inside brackets separate a variant's options, not methods: static-int8[observer=minmax, ...]
    names = [n.strip() for n in re.findall(r"(?:[^,\[]|\[[^\]]*\])+", args.methods) if n.strip()]
    for name in names:
        get_method(name)
    batch_sizes = _batch_sizes(args.speed_batch)
    if args.rounds < 1:
        raise QuantbenchError("--rounds must be >= 1")
    cfg = config_from_args(args)
    if args.seq_len is None:
        args.seq_len = max(cfg.seq_lens)
    if not 1 <= args.seq_len <= cfg.max_length:
        raise QuantbenchError(f"--seq-len must be between 1 and max_length {cfg.max_length}, got {args.seq_len}")
    return names, batch_sizes, cfg, get_hardware(f"cpu-{cfg.threads}t" if cfg.threads else "cpu")


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(b) for b in str(text).split(",") if b.strip()]
    except ValueError:
        raise QuantbenchError(f"--batch-size must be whole numbers separated by commas, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise QuantbenchError(f"every --batch-size must be >= 1, got {text!r}")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")
    # Before the commands import torch, transformers and torchao, some of whose notices come at import time.
    quiet.install(verbose)
    try:
        return int(args.handler(args))
    except QuantbenchError as exc:
        print(f"quantbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("quantbench: interrupted; no partial cache entry was kept", file=sys.stderr)
        return 130


def _run(argv: Sequence[str] | None = None) -> Any:  # pragma: no cover - module entry point
    sys.exit(main(argv))


if __name__ == "__main__":  # pragma: no cover
    _run()
