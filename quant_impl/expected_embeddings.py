"""The absolute gate of an embedding task: a committed record of FP32's own 10 nearest neighbours of every corpus
text, and of each method's per-text recall of them.

Today's embeddings of every method, FP32's included, are scored against the *recorded* neighbours, so a change
that moves FP32 itself (a pooling or tokenizer change) shows up as FP32 losing recall, which a drop measured
against today's FP32 could never show. Each method is compared with its record paired, text by text: it fails
when the seeded bootstrap 95 % interval of (recorded - measured) mean recall lies wholly above zero. Identical
embeddings (same CPU kind, same libraries) give exactly zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quant_impl.errors import QuantbenchError
from quant_impl.expected import _DIGITS, REFRESH, RECORD_VERSION, NotInRecord, Verdict, identity
from quant_impl.measure.embedding_quality import bootstrap_mean, top_k

K = 10
_ID_WIDTH = 3  # base-36 digits per neighbour id: corpora of up to 46,656 texts


def _encode_ids(ids: np.ndarray) -> str:
    if ids.size and int(ids.max()) >= 36 ** _ID_WIDTH:
        raise ValueError(f"corpus too large for the record: ids up to {36 ** _ID_WIDTH - 1}")
    return "".join(np.base_repr(int(i), 36).lower().rjust(_ID_WIDTH, "0") for i in ids.ravel())


def _decode_ids(text: str, k: int) -> np.ndarray:
    flat = [int(text[i:i + _ID_WIDTH], 36) for i in range(0, len(text), _ID_WIDTH)]
    return np.array(flat, dtype=np.int64).reshape(-1, k)


def _encode_recall(recall: np.ndarray, k: int) -> str:
    return "".join(_DIGITS[int(round(r * k))] for r in recall)


def _decode_recall(text: str, k: int) -> np.ndarray:
    return np.array([int(c, 36) / k for c in text])


def recall_of(neighbours: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Per text: the share of the given neighbours that ``embeddings`` rank among their own top ``k``."""
    k = neighbours.shape[1]
    ours = top_k(embeddings, k)
    return np.array([len(set(a) & set(b)) / k for a, b in zip(neighbours, ours)])


def build(cfg: Any, baseline: Any, embeddings: dict[str, np.ndarray], machine: dict[str, Any]) -> dict[str, Any]:
    """A record of FP32's neighbours and each method's per-text recall of them (``embeddings``: method -> corpus
    embeddings, FP32's among them)."""
    neighbours = top_k(embeddings["fp32"], K)
    return {
        "version": RECORD_VERSION,
        "kind": "embedding",
        "written_by": REFRESH,
        "identity": identity(cfg, baseline),
        "machine": machine,
        "k": K,
        "neighbours": _encode_ids(neighbours),
        "methods": {name: {"recall_at_10": float(recall.mean()), "per_text": _encode_recall(recall, K)}
                    for name, recall in ((n, recall_of(neighbours, e)) for n, e in embeddings.items())},
    }


def check(method: str, record: dict[str, Any], embeddings: np.ndarray, seed: int = 0) -> Verdict:
    """``method``'s corpus embeddings today against its record (see the module docstring)."""
    if record.get("kind") != "embedding":
        raise QuantbenchError(f"{record.get('path', 'the record')} is a classification record, not an embedding "
                              f"one: {REFRESH} --task <the embedding task>")
    entry = record["methods"].get(method)
    if entry is None:
        raise NotInRecord(f"{method}: not in the record {record.get('path', '')}: run `{REFRESH}` (a method added "
                          "since the record was written; the absolute gate cannot judge it until then)")
    k = int(record["k"])
    neighbours = _decode_ids(record["neighbours"], k)
    if len(neighbours) != len(embeddings):
        raise QuantbenchError(f"{method}: the record holds {len(neighbours)} corpus texts, this run "
                              f"{len(embeddings)}; the corpus changed: {REFRESH}")
    recorded = _decode_recall(entry["per_text"], k)
    measured = recall_of(neighbours, embeddings)
    lo, hi = bootstrap_mean(recorded - measured, seed)
    changed = int(np.sum(recorded != measured))
    return Verdict(method, float(recorded.mean()), float(measured.mean()), (100 * lo, 100 * hi), changed)
