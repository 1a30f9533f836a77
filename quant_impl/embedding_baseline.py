"""The FP32 reference of an embedding task: the sentence-transformers encoder of ``--model`` as given (never
fine-tuned), its tokenizer and the task's tokenized corpus splits. Nothing is trained or cached here: the
model folder is the checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from quant_impl.config import RunConfig
from quant_impl.data import load_task_data
from quant_impl.models import load_tokenizer
from quant_impl.sentence_encoder import Pooling, load_sentence_encoder, tiny_sentence_encoder
from quant_impl.train import Baseline, TrainStats


@dataclass
class EmbeddingBaseline(Baseline):
    """A :class:`~quant_impl.train.Baseline` whose model outputs embeddings (``.logits``) and has no test
    evaluation of its own (``eval`` is None: the embedding judge compares every method with it)."""

    pooling: Pooling = Pooling()

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "embedding",
            "checkpoint": str(self.checkpoint),
            "pooling": self.pooling.mode,
            "normalize": self.pooling.normalize,
            "model_max_seq_length": self.pooling.max_seq_length,
            "dimension": int(self.model.config.hidden_size),
            "corpus_texts": len(self.data["test"]),
            "epochs": 0,
            **self.setup_fields(),
        }


def embedding_baseline(cfg: RunConfig) -> EmbeddingBaseline:
    """The encoder of ``cfg.model`` with its pooling (``tiny``: a random 2-layer one, for tests)."""
    torch.set_num_threads(cfg.effective_threads())
    tokenizer = load_tokenizer(cfg.model, cfg.cache_dir)
    data = load_task_data(cfg, tokenizer)
    if cfg.model == "tiny":
        pooling = Pooling()
        model, folder = tiny_sentence_encoder(cfg.seed, pooling), Path("tiny-sentence-encoder")
    else:
        model, pooling, folder = load_sentence_encoder(cfg.model, cfg.cache_dir)
    untrained = TrainStats(seconds=0.0, steps=0, examples_seen=0, final_loss=None)
    return EmbeddingBaseline(model, tokenizer, data, cfg, folder, None, untrained, cached=True, pooling=pooling)
