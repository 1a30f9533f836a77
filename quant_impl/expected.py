"""The absolute accuracy gate: a committed record of what FP32 and every method score on a profile's test split,
and the check that today's predictions are not measurably worse than the record.

The relative gate (each method's drop vs FP32 within its threshold) cannot see a regression that lowers FP32 and
every method together. The record can: it keeps each method's accuracy and its per-review predictions, so a
new evaluation is compared with the recorded one *paired*, review by review, like ``quantbench compare`` pairs
methods with FP32. A method fails when its paired 95 % interval of (recorded - measured) accuracy lies wholly
above zero: more reviews flipped from right to wrong than chance explains. That tolerance is set by the test
split itself (2,000 reviews resolve about 0.4 point when a few percent of predictions change), not by the
machine; identical predictions (same CPU kind, same libraries) give a drop of exactly zero.

Refresh the record when a change is meant to move accuracy: ``quantbench expected --write`` (see README, CI).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from quant_impl.errors import QuantbenchError
from quant_impl.measure.stats import agreement, paired_drop_interval

RECORD_VERSION = 1
REFRESH = "quantbench expected --write"


class NotInRecord(QuantbenchError):
    """A method the committed record does not hold (a method added since it was written): not a failure of the
    gate, a record to refresh. The test reports it as a skip with this message; ``--check`` lists such methods."""


@dataclass(frozen=True)
class Verdict:
    """One method against its record: ``ok`` False when the measured accuracy is measurably lower."""

    method: str
    recorded: float
    measured: float
    interval_pts: tuple[float, float]  # paired 95 % interval of recorded - measured, in points
    changed: int  # reviews whose prediction differs from the record's

    @property
    def drop_pts(self) -> float:
        return 100 * (self.recorded - self.measured)

    @property
    def ok(self) -> bool:
        return self.interval_pts[0] <= 0

    def describe(self) -> str:
        lo, hi = self.interval_pts
        verdict = "OK" if self.ok else "FAIL"
        return (f"{verdict} {self.method}: {self.measured:.4f} vs recorded {self.recorded:.4f} "
                f"(drop {self.drop_pts:+.2f} pt, paired 95 % interval {lo:+.2f} to {hi:+.2f} pt, "
                f"{self.changed} prediction(s) changed)")


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def encode(predictions: Sequence[int]) -> str:
    """Class predictions as one base-36 character per test text in split order (binary: a string of 0/1; small,
    diff-able)."""
    if any(not 0 <= int(p) < len(_DIGITS) for p in predictions):
        raise ValueError(f"predictions must be class ids 0..{len(_DIGITS) - 1}")
    return "".join(_DIGITS[int(p)] for p in predictions)


def decode(text: str) -> list[int]:
    return [int(c, 36) for c in text]


def check(method: str, record: dict[str, Any], predictions: Sequence[int], labels: Sequence[int],
          metric: str = "accuracy", label_names: Sequence[str] = ()) -> Verdict:
    """Compare a method's predictions on the test split with its recorded ones (see the module docstring), on the
    task's primary ``metric``: accuracy by its paired interval, another metric (macro-F1, one class's F1) by a
    seeded paired bootstrap of the same rows."""
    entry = record.get("methods", {}).get(method)
    if entry is None:
        raise NotInRecord(f"{method}: not in the record {record.get('path', '')}: run `{REFRESH}` (a method added "
                          "since the record was written; the absolute gate cannot judge it until then)")
    recorded = decode(entry["predictions"])
    if len(recorded) != len(predictions) or len(labels) != len(predictions):
        raise QuantbenchError(f"{method}: the record holds {len(recorded)} test predictions, this run "
                              f"{len(predictions)}; the test split changed: {REFRESH}")
    n = len(labels)
    recorded_accuracy = sum(r == y for r, y in zip(recorded, labels)) / n
    measured = sum(p == y for p, y in zip(predictions, labels)) / n
    changed = n - round(agreement(recorded, list(predictions)) * n)
    # discordant: exactly one of the two right (with more than two labels, two wrong predictions may differ)
    discordant = sum((r == y) != (p == y) for r, p, y in zip(recorded, predictions, labels))
    if metric != "accuracy":
        from quant_impl.measure.accuracy import metric_function
        from quant_impl.measure.stats import paired_bootstrap_drop

        score = metric_function(metric, tuple(label_names))
        true = np.asarray(labels)
        recorded_value, measured_value = score(np.asarray(recorded), true), score(np.asarray(predictions), true)
        lo, hi = paired_bootstrap_drop(recorded, predictions, labels, score)
        return Verdict(method, recorded_value, measured_value, (100 * lo, 100 * hi), changed)
    lo, hi = paired_drop_interval(recorded_accuracy - measured, discordant / n, n)
    return Verdict(method, recorded_accuracy, measured, (100 * lo, 100 * hi), changed)


# The settings that decide which model is trained on which reviews and scored on which test split. Library
# versions are not among them: a torch upgrade that moves predictions is what the paired check is for.
IDENTITY_FIELDS = ("profile", "model", "dataset", "train_size", "test_size", "seed", "epochs", "learning_rate",
                   "batch_size", "max_length", "truncation", "head_tokens")


def identity(cfg: Any, baseline: Any) -> dict[str, Any]:
    """What a record is valid for: the training and split settings of ``cfg`` and the test split's size."""
    from quant_impl.train import RECIPE_VERSION

    settings = cfg.to_dict()
    found = {**{name: settings[name] for name in IDENTITY_FIELDS}, "recipe": RECIPE_VERSION,
             "test_examples": len(baseline.data["test"])}
    if cfg.task != "imdb":  # IMDB's records predate tasks and stay valid
        found["task"] = cfg.task
    if cfg.train_precision != "fp32":  # fp32 records predate the option and stay valid
        found["train_precision"] = cfg.train_precision
    if cfg.frozen_layers:  # records of checkpoints trained with every layer predate the option and stay valid
        found["freeze_layers"] = cfg.frozen_layers
    return found


def load(path: Path, expected_identity: dict[str, Any]) -> dict[str, Any]:
    """The record at ``path``, checked to be for this checkpoint and split; one clear error otherwise."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuantbenchError(f"no accuracy record at {path}; write one with {REFRESH}") from None
    except (OSError, ValueError) as exc:
        raise QuantbenchError(f"{path}: cannot read the accuracy record ({exc}); write it again with {REFRESH}") from None
    if record.get("version") != RECORD_VERSION or not isinstance(record.get("methods"), dict):
        raise QuantbenchError(f"{path}: not a version-{RECORD_VERSION} accuracy record; write it again with {REFRESH}")
    differs = {k: (record.get("identity", {}).get(k), v) for k, v in expected_identity.items()
               if record.get("identity", {}).get(k) != v}
    if differs:
        what = "; ".join(f"{k}: recorded {old!r}, this run {new!r}" for k, (old, new) in differs.items())
        raise QuantbenchError(f"{path} was recorded for another baseline ({what}). If the change that moved it is "
                              f"meant (a new recipe, split or library version), refresh the record: {REFRESH}")
    record["path"] = str(path)
    return record


def build(cfg: Any, baseline: Any, results: dict[str, Any], machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """A record of ``results`` (method -> EvalResult) for ``cfg``'s baseline."""
    return {
        "version": RECORD_VERSION,
        "written_by": REFRESH,
        "identity": identity(cfg, baseline),
        "machine": machine or {"cpu": platform.processor() or platform.machine()},
        "methods": {name: {"accuracy": result.accuracy, "predictions": encode(result.predictions)}
                    for name, result in results.items()},
    }


# ------------------------------------------------------------------------------------------------ CLI
def add_expected_parser(commands: Any, add_config_flags: Any) -> None:
    parser = commands.add_parser(
        "expected",
        help="check today's accuracies against the committed record, or refresh it (--write)",
        description="Evaluate FP32 and every method that runs on this CPU on the profile's test split (cached "
        "evaluations, as pytest bench) and compare each with the committed record, review by review: exit 1 when "
        "one is measurably lower (its paired 95 % interval of the drop lies above zero). --write replaces the "
        "record with today's figures, for a change that is meant to move them.",
        epilog="The record lives in [tool.quantbench] expected_dir (default tests/expected/<profile>.json, "
        "<profile>.<task>.json for a task other than imdb) and is "
        "checked by tests/test_accuracy_thresholds.py in CI.",
    )
    add_config_flags(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="compare with the record (the default): exit 1 when a method is measurably lower; methods "
                      "the record does not hold are listed as 'not in the record', without failing")
    mode.add_argument("--write", action="store_true", help="write today's accuracies as the new record")
    parser.add_argument("--record", default=None, metavar="PATH",
                        help="the record file (default: <expected_dir>/<profile>.json next to pyproject.toml)")
    parser.add_argument("--methods", default=None, metavar="A,B",
                        help="only these methods (default: every method that runs on this CPU)")
    parser.set_defaults(handler=_cmd_expected)


def _cmd_expected(args: Any) -> int:
    from quant_impl.schema import REFERENCE
    from quant_impl.session.store import BenchSession
    from quant_impl.cache import write_json_atomic
    from quant_impl.cli import config_from_args
    from quant_impl.config import expected_record_path
    from quant_impl.hardware import get_hardware
    from quant_impl.methods import get_method, method_names

    cfg = config_from_args(args)
    cpu = get_hardware("cpu")
    names = [n.strip() for n in args.methods.split(",") if n.strip()] if args.methods else method_names()
    for name in names:
        get_method(name)  # an unknown name: one line with the registered ones
    session = BenchSession(cfg)
    path = Path(args.record) if args.record else expected_record_path(cfg.profile, task=cfg.task)
    runnable = []
    kind = "embedding" if cfg.embedding else "classification"
    for name in names:
        spec = get_method(name)
        reason = spec.supports(cpu, kind) if "cpu" in spec.devices else "not a CPU method"
        if reason:
            print(f"skip {name}: {reason}")
        else:
            runnable.append(name)
    if cfg.embedding:
        return _embedding_record(args, cfg, session, runnable, path)
    results = {name: session.evaluation(name, cpu) for name in runnable}
    baseline = session.baseline
    if args.write:
        if REFERENCE not in results:
            raise QuantbenchError(f"--write needs {REFERENCE} among the methods: the record is judged against it")
        from quant_impl.measure.machine import machine_info

        info = machine_info()
        record = build(cfg, baseline, results, {"cpu": info["cpu_model"], "versions": info["versions"],
                                                "checkpoint": Path(str(baseline.checkpoint)).name})
        write_json_atomic(path, record)
        print(f"wrote {path}: {len(results)} method(s) on {len(baseline.data['test'])} test texts")
        return 0
    record = load(path, identity(cfg, baseline))
    task = baseline.task
    labels = baseline.data["test"]["label"]
    labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
    return _judge(runnable, lambda name: check(name, record, results[name].predictions, labels, task.primary_metric,
                                               task.labels), path)


def _embedding_record(args: Any, cfg: Any, session: Any, runnable: list[str], path: Path) -> int:
    """``quantbench expected`` on an embedding task: the record of FP32's neighbours (quant_impl.expected_embeddings)."""
    from quant_impl import expected_embeddings
    from quant_impl.cache import write_json_atomic
    from quant_impl.hardware import get_hardware
    from quant_impl.measure.machine import machine_info
    from quant_impl.schema import REFERENCE
    from quant_impl.session.embeddings import EmbeddingJudge

    judge, cpu = EmbeddingJudge(session), get_hardware("cpu")
    embeddings = {name: judge.embeddings(name, cpu, "corpus") for name in runnable}
    baseline = session.baseline
    if args.write:
        if REFERENCE not in embeddings:
            raise QuantbenchError(f"--write needs {REFERENCE} among the methods: the record holds its neighbours")
        info = machine_info()
        record = expected_embeddings.build(cfg, baseline, embeddings, {"cpu": info["cpu_model"],
                                                                       "versions": info["versions"]})
        write_json_atomic(path, record)
        print(f"wrote {path}: {len(embeddings)} method(s), FP32's {expected_embeddings.K} neighbours of "
              f"{len(baseline.data['test'])} corpus texts")
        return 0
    record = load(path, identity(cfg, baseline))
    return _judge(list(embeddings), lambda name: expected_embeddings.check(name, record, embeddings[name], seed=cfg.seed),
                  path)


def _judge(names: list[str], judge_one: Any, path: Path) -> int:
    """Print each method's verdict against the record, then the last line; exit code 1 when a method is measurably
    below its record (a method the record lacks is listed, not failed)."""
    verdicts, absent = [], []
    for name in names:
        try:
            verdicts.append(judge_one(name))
        except NotInRecord as exc:
            absent.append(name)
            print(f"not in the record: {exc}")
            continue
        print(verdicts[-1].describe())
    failed = [v.method for v in verdicts if not v.ok]
    if failed:
        print(f"FAILED: {', '.join(failed)} measurably below the record {path}; if the change is meant, {REFRESH}")
        return 1
    missing = f"; not in the record: {', '.join(absent)} (run `{REFRESH}`)" if absent else ""
    print(f"OK: {len(verdicts)} method(s) within the record {path}{missing}")
    return 0
