"""Judging a method on an embedding task: its embeddings of the corpus and of each downstream task's texts,
compared with FP32's (``quant_impl.measure.embedding_quality``), cached per method, device and split.

Downstream tasks are read with their own data and cleaning but tokenized like the corpus (the embedding task's
``max_length`` and truncation), ``test_size // 2`` texts for the test sample and as many for the training
sample MTEB's undersampling draws from (quick: 1,000 and 1,000 per task).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from quant_impl.cache import cache_key, entry_lock, source_fingerprint, trusted, write_bytes_atomic, write_manifest
from quant_impl.cache_keys import evaluation_key
from quant_impl.data import load_splits, tokenize
from quant_impl.errors import QuantbenchError
from quant_impl.hardware import Hardware, get_hardware
from quant_impl.measure import embedding_quality as quality
from quant_impl.schema import REFERENCE

_SOURCES = [Path(__file__).parent.parent / name for name in
            ("sentence_encoder.py", "embedding_baseline.py", "session/embeddings.py", "tasks/embeddings.py")]
RECALL_K = 10


def embed(predict: Any, split: Dataset, batch_size: int, desc: str) -> np.ndarray:
    """Embeddings (float32, one row per text, the split's order) of a tokenized split."""
    rows = []
    with torch.inference_mode():
        for first in tqdm(range(0, len(split), batch_size), desc=desc, unit="batch", leave=False):
            batch = split[first: first + batch_size]
            rows.append(predict(batch["input_ids"], batch["attention_mask"]).float().cpu().numpy())
    return np.concatenate(rows).astype(np.float32)


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as .npy to ``path`` atomically (a full disk: one DiskFull line)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_bytes_atomic(path, buffer.getvalue())


def downstream_config(cfg: Any, task: str) -> Any:
    """The config that reads a downstream task's samples: its data, the embedding task's lengths, ``test_size // 2``
    texts each for test and training (epochs only to pass the classifier's checks: nothing is trained)."""
    half = max(2, cfg.test_size // 2)
    return cfg.replace(task=task, test_size=half, train_size=half, calibration_size=1, epochs=1)


class EmbeddingJudge:
    """Embeds with the builds of a :class:`~quant_impl.session.store.BenchSession` whose task is an embedding
    task, and scores each method against FP32."""

    def __init__(self, session: Any) -> None:
        if not session.cfg.embedding:
            raise QuantbenchError(f"task {session.cfg.task} is not an embedding task")
        self.session = session
        self.cfg = session.cfg
        self.task = session.baseline.task
        self._downstream: dict[str, DatasetDict] = {}
        self._scores: dict[tuple[str, str], dict[str, Any]] = {}

    # ------------------------------------------------------------------ data
    def downstream(self, name: str) -> DatasetDict:
        """A downstream task's train and test samples, tokenized like the corpus."""
        if name not in self._downstream:
            cfg = downstream_config(self.cfg, name)
            splits = load_splits(cfg)
            tokenized = tokenize(DatasetDict(train=splits["train"], test=splits["test"]), self.session.baseline.tokenizer, cfg)
            self._downstream[name] = tokenized
        return self._downstream[name]

    def splits(self) -> dict[str, Dataset]:
        """Every split a method embeds: ``corpus`` and ``<task>/train``, ``<task>/test`` per downstream task."""
        out = {"corpus": self.session.baseline.data["test"]}
        for name in dict.fromkeys(self.task.downstream + self.task.clustering):
            data = self.downstream(name)
            out[f"{name}/train"], out[f"{name}/test"] = data["train"], data["test"]
        return out

    # ------------------------------------------------------------------ embeddings
    def embeddings(self, method: str, hardware: Hardware, split: str) -> np.ndarray:
        """``method``'s embeddings of one split (see :meth:`splits`), cached on disk by everything that can
        change them."""
        built = self.session.built(method, hardware)
        rows = self.splits()[split]
        key = cache_key({"evaluation": evaluation_key(self.cfg, self.session.baseline, built.settings.get("config")),
                         "split": split, "rows": len(rows), "texts": rows._fingerprint,
                         "code": source_fingerprint(_SOURCES)})
        path = self.cfg.cache_dir / "embeddings" / f"{method}-{hardware.device}-{split.replace('/', '.')}-{key}.npy"
        with entry_lock(path):
            cached, ok = trusted(path, lambda p: np.load(p, allow_pickle=False))
            if ok:
                return cached
            if hardware.device == "cpu":
                get_hardware("cpu").activate()
            array = embed(built.predict, rows, self.cfg.eval_batch_size, desc=f"{method}: {split}")
            save_npy_atomic(path, array)
            write_manifest(path)
        return array

    def labels(self, split: str) -> np.ndarray:
        return np.asarray(self.splits()[split]["label"], dtype=np.int64)

    # ------------------------------------------------------------------ scores
    def scores(self, method: str, hardware: Hardware) -> dict[str, Any]:
        """Fidelity (cosine, recall@10 over the corpus), downstream classification and clustering drops of
        ``method`` vs FP32 on the CPU, each with its paired 95 % interval; ``primary`` is the task's metric."""
        key = (method, hardware.device)
        if key in self._scores:
            return self._scores[key]
        cpu = get_hardware("cpu")
        seed = self.cfg.seed
        ours = self.embeddings(method, hardware, "corpus")
        reference = self.embeddings(REFERENCE, cpu, "corpus")
        result: dict[str, Any] = {"fidelity": quality.fidelity(reference, ours, k=RECALL_K, seed=seed)}
        missing = _sklearn_missing()
        if missing:
            result["downstream_skipped"] = missing
        else:
            result["classification"] = {}
            for name in self.task.downstream:
                pair = [tuple(self.embeddings(m, h, f"{name}/{s}") for s in ("train", "test"))
                        for m, h in ((REFERENCE, cpu), (method, hardware))]
                result["classification"][name] = quality.classification(
                    pair[0], pair[1], self.labels(f"{name}/train"), self.labels(f"{name}/test"), seed=seed)
            result["clustering"] = {}
            for name in self.task.clustering:
                result["clustering"][name] = quality.clustering(
                    self.embeddings(REFERENCE, cpu, f"{name}/test"), self.embeddings(method, hardware, f"{name}/test"),
                    self.labels(f"{name}/test"), seed=seed)
        metric = self.task.primary_metric
        primary = result["fidelity"][metric]
        result["primary"] = {"metric": metric, **primary}
        self._scores[key] = result
        return result


def _sklearn_missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        return ("the downstream protocols (logistic regression, k-means) need scikit-learn, which is not installed: "
                "pip install 'quantbench[embeddings]'")
    return None
