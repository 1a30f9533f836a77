"""What quantizing an embedding model loses, each as a drop vs its FP32 embeddings with a paired 95 % interval.

- Fidelity, no labels needed: the cosine between each text's FP32 and quantized embedding (mean, 5th
  percentile), and neighbour agreement: the share of FP32's own top-``k`` neighbours of each text (over the
  corpus, itself excluded) that the quantized embeddings also rank in their top ``k`` (recall@k).
- Downstream, MTEB's protocols: classification = logistic regression (``max_iter=100``) on frozen embeddings,
  trained on ``samples_per_label`` rows per class drawn from a fixed training sample, repeated over
  ``experiments`` seeds (MTEB's defaults: 8 and 10), scored by accuracy and macro-F1 on a fixed test sample;
  clustering = MiniBatchKMeans with as many clusters as labels, scored by V-measure, over the same seeds.

Intervals are percentile bootstraps, seeded, resampling texts (fidelity, classification: FP32 and quantized
rows resampled together) or seeds (clustering, where one run scores the whole set). Numpy only, but for the
downstream protocols, which need scikit-learn (the ``embeddings`` extra).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from quant_impl.measure.stats import BOOTSTRAP_RESAMPLES as BOOTSTRAP_SAMPLES
# MTEB's AbsTaskClassification defaults (n_experiments, samples_per_label) and its LogisticRegression(max_iter=100).
EXPERIMENTS = 10
SAMPLES_PER_LABEL = 8
MAX_ITER = 100
CLUSTER_BATCH = 500


@dataclass(frozen=True)
class Drop:
    """A drop vs FP32 (in the metric's own unit: points for accuracy/F1/V-measure, fractions for cosine and
    recall) with its paired 95 % interval and the FP32 and method values it is the difference of."""

    reference: float
    value: float
    drop: float
    ci95: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ci95": list(self.ci95)}


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def cosines(reference: np.ndarray, quantized: np.ndarray) -> np.ndarray:
    """Per-text cosine between the FP32 and the quantized embedding of the same text."""
    if reference.shape != quantized.shape:
        raise ValueError(f"embeddings of different shapes: {reference.shape} vs {quantized.shape}")
    return np.sum(_unit(reference) * _unit(quantized), axis=1)


def top_k(embeddings: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` nearest other rows by cosine (itself excluded), nearest first; ties by row order."""
    if not 1 <= k < len(embeddings):
        raise ValueError(f"k must be between 1 and the corpus size - 1 = {len(embeddings) - 1}, got {k}")
    unit = _unit(embeddings)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    # a stable sort of the negated scores keeps the lower index first among equals, for reproducible neighbours
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def neighbour_recall(reference: np.ndarray, quantized: np.ndarray, k: int = 10) -> np.ndarray:
    """Per text: the share of FP32's top-``k`` neighbours that are also in the quantized top ``k``."""
    ours, theirs = top_k(reference, k), top_k(quantized, k)
    return np.array([len(set(a) & set(b)) / k for a, b in zip(ours, theirs)])


def bootstrap_mean(values: np.ndarray, seed: int, samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """Percentile 95 % interval of the mean of ``values`` (resampled with replacement, seeded)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(samples, len(values)))
    means = values[picks].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def fidelity(reference: np.ndarray, quantized: np.ndarray, k: int = 10, seed: int = 0) -> dict[str, Any]:
    """Cosine (mean, 5th percentile, drop = 1 - mean with interval) and recall@k (drop = 1 - recall)."""
    cos = cosines(reference, quantized)
    recall = neighbour_recall(reference, quantized, k)
    lo, hi = bootstrap_mean(1 - cos, seed)
    rlo, rhi = bootstrap_mean(1 - recall, seed + 1)
    return {
        "texts": int(len(cos)),
        "k": k,
        "cosine_mean": float(cos.mean()),
        "cosine_p5": float(np.percentile(cos, 5)),
        "cosine": Drop(1.0, float(cos.mean()), float(1 - cos.mean()), (lo, hi)).to_dict(),
        f"recall_at_{k}": Drop(1.0, float(recall.mean()), float(1 - recall.mean()), (rlo, rhi)).to_dict(),
    }


def mteb_samples(labels: np.ndarray, seed: int, per_label: int = SAMPLES_PER_LABEL) -> np.ndarray:
    """MTEB's undersampling: shuffle the training rows with ``seed``, keep the first ``per_label`` of each class."""
    order = np.random.default_rng(seed).permutation(len(labels))
    kept, counts = [], {}
    for row in order:
        label = int(labels[row])
        if counts.get(label, 0) < per_label:
            counts[label] = counts.get(label, 0) + 1
            kept.append(row)
    return np.array(sorted(kept))


def classification(reference: tuple[np.ndarray, np.ndarray], quantized: tuple[np.ndarray, np.ndarray],
                   train_labels: np.ndarray, test_labels: np.ndarray, seed: int = 0,
                   experiments: int = EXPERIMENTS, per_label: int = SAMPLES_PER_LABEL) -> dict[str, Any]:
    """MTEB classification of FP32 and quantized (train, test) embeddings with the same samples and seeds:
    accuracy and macro-F1 (in points), their drops, and the accuracy drop's interval (test rows resampled)."""
    from sklearn.linear_model import LogisticRegression

    from quant_impl.measure.accuracy import metric_function

    k = int(max(train_labels.max(), test_labels.max())) + 1
    macro_f1 = metric_function("macro_f1", tuple(str(c) for c in range(k)))
    correct = {"fp32": [], "method": []}
    f1 = {"fp32": [], "method": []}
    for experiment in range(experiments):
        rows = mteb_samples(train_labels, seed + experiment, per_label)
        for side, (train, test) in (("fp32", reference), ("method", quantized)):
            model = LogisticRegression(max_iter=MAX_ITER, random_state=seed + experiment)
            model.fit(train[rows], train_labels[rows])
            pred = model.predict(test).astype(np.int64)
            correct[side].append(pred == test_labels)
            f1[side].append(macro_f1(pred, test_labels))
    ref_rows, our_rows = np.mean(correct["fp32"], axis=0), np.mean(correct["method"], axis=0)
    lo, hi = bootstrap_mean(ref_rows - our_rows, seed)
    accuracy = Drop(100 * ref_rows.mean(), 100 * our_rows.mean(), 100 * (ref_rows.mean() - our_rows.mean()),
                    (100 * lo, 100 * hi))
    f1_ref, f1_ours = 100 * float(np.mean(f1["fp32"])), 100 * float(np.mean(f1["method"]))
    return {"accuracy": accuracy.to_dict(), "macro_f1": {"reference": f1_ref, "value": f1_ours, "drop": f1_ref - f1_ours},
            "experiments": experiments, "samples_per_label": per_label, "test_texts": int(len(test_labels))}


def clustering(reference: np.ndarray, quantized: np.ndarray, labels: np.ndarray, seed: int = 0,
               experiments: int = EXPERIMENTS) -> dict[str, Any]:
    """k-means V-measure (points) of FP32 and quantized embeddings over the same seeds, and the drop's interval
    (seeds resampled)."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import v_measure_score

    k = len(np.unique(labels))
    scores = {"fp32": [], "method": []}
    for experiment in range(experiments):
        for side, rows in (("fp32", reference), ("method", quantized)):
            model = MiniBatchKMeans(n_clusters=k, batch_size=CLUSTER_BATCH, n_init="auto", random_state=seed + experiment)
            scores[side].append(100 * v_measure_score(labels, model.fit_predict(_unit(rows))))
    ref, ours = np.array(scores["fp32"]), np.array(scores["method"])
    lo, hi = bootstrap_mean(ref - ours, seed)
    return {"v_measure": Drop(float(ref.mean()), float(ours.mean()), float(ref.mean() - ours.mean()), (lo, hi)).to_dict(),
            "experiments": experiments, "texts": int(len(labels))}
