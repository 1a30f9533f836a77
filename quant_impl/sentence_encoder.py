"""A sentence-transformers embedding model as one torch module: the bare encoder plus its pooling (and its
normalisation), read from the model folder's own sentence-transformers files, never fine-tuned.

The folder's ``modules.json`` lists its stages (``Transformer``, ``Pooling``, optionally ``Normalize``);
``1_Pooling/config.json`` names the pooling mode; ``sentence_bert_config.json`` the longest input the model was
trained for. Both bundled encoders (MiniLM-L6 and MPNet-base) are such folders: mean pooling, then L2
normalisation. The module is a subclass of the folder's own transformers class, so every method that works on
an HF encoder (export, per-Linear quantization, attention switches, ``base_model``) works on it unchanged; its
output's ``.logits`` carries the embedding, so every method's ``(input_ids, attention_mask) -> tensor`` wrapper
returns embeddings here (the embedding task reads them as such, never as class scores).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers.modeling_outputs import SequenceClassifierOutput

from quant_impl.errors import QuantbenchError

POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len")
_MODE_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
              "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}
_ST = "sentence_transformers.models."


@dataclass(frozen=True)
class Pooling:
    """How token states become one vector: ``mode`` (one of POOLING_MODES), then L2 ``normalize`` or not;
    ``max_seq_length`` is the longest input the folder declares (None when it declares none)."""

    mode: str = "mean"
    normalize: bool = True
    max_seq_length: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in POOLING_MODES:
            raise ValueError(f"pooling mode {self.mode!r} is not one of {POOLING_MODES}")


def read_pooling(folder: Path) -> Pooling:
    """The pooling a sentence-transformers folder declares; a folder without ``modules.json`` is refused.

    Only one pooling mode at a time is supported (sentence-transformers can concatenate several; none of the
    models this tool ships does)."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        raise QuantbenchError(
            f"--model {folder}: not a sentence-transformers model folder (no modules.json); the embedding task "
            "needs the encoder with its pooling, e.g. --model bundled (all-MiniLM-L6-v2) or bundled-base"
        )
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    kinds = [m.get("type", "").removeprefix(_ST) for m in modules]
    if not kinds or kinds[0] != "Transformer" or "Pooling" not in kinds:
        raise QuantbenchError(f"--model {folder}: modules.json lists {kinds}; the embedding task reads "
                              "Transformer -> Pooling [-> Normalize] models only")
    unknown = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
    if unknown:
        raise QuantbenchError(f"--model {folder}: modules.json has stages {unknown} this tool does not implement "
                              "(it reads Transformer, Pooling and Normalize)")
    pooling_path = next(m.get("path", "") for m in modules if m.get("type", "").endswith("Pooling"))
    pooling_config = json.loads((folder / pooling_path / "config.json").read_text(encoding="utf-8"))
    modes = [mode for key, mode in _MODE_KEYS.items() if pooling_config.get(key)]
    if "pooling_mode" in pooling_config:  # newer sentence-transformers write the mode by name
        modes = [{"mean_sqrt_len_tokens": "mean_sqrt_len"}.get(pooling_config["pooling_mode"],
                                                               pooling_config["pooling_mode"])]
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise QuantbenchError(f"--model {folder}: {pooling_path}/config.json asks for pooling {modes or 'none'}; "
                              f"this tool implements exactly one of {POOLING_MODES}")
    bert_config = folder / "sentence_bert_config.json"
    max_len = json.loads(bert_config.read_text(encoding="utf-8")).get("max_seq_length") if bert_config.is_file() else None
    return Pooling(modes[0], "Normalize" in kinds, max_len)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """sentence-transformers' pooling of token states ``[batch, tokens, dim]`` over the unmasked tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    summed = (hidden * mask).sum(dim=1)
    count = mask.sum(dim=1).clamp(min=1e-9)
    return summed / (count.sqrt() if mode == "mean_sqrt_len" else count)


@functools.lru_cache(maxsize=None)
def embedding_class(encoder_cls: type) -> type:
    """``encoder_cls`` (e.g. BertModel) whose forward pools and normalises: one class per encoder class, so that
    deep copies and exports see a stable type."""

    def forward(self: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> SequenceClassifierOutput:
        hidden = encoder_cls.forward(self, input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
        embedding = pool(hidden, attention_mask, self.config.quantbench_pooling)
        if self.config.quantbench_normalize:
            embedding = torch.nn.functional.normalize(embedding, p=2, dim=-1)
        return SequenceClassifierOutput(logits=embedding)

    return type(f"SentenceEmbedding{encoder_cls.__name__}", (encoder_cls,), {"forward": forward})


def as_sentence_encoder(encoder: torch.nn.Module, pooling: Pooling) -> torch.nn.Module:
    """Turn a loaded bare encoder into the embedding module (in place: its class and config change)."""
    encoder.__class__ = embedding_class(type(encoder))
    encoder.config.quantbench_pooling = pooling.mode
    encoder.config.quantbench_normalize = pooling.normalize
    return encoder.float().eval()


def load_sentence_encoder(spec: str, cache_dir: Path | None = None) -> tuple[torch.nn.Module, Pooling, Path]:
    """The embedding module of ``--model spec`` (bundled, bundled-base or a local sentence-transformers folder),
    its pooling, and the folder it came from."""
    from transformers import AutoModel

    from quant_impl.models import _load_error, _quiet_hf, _resolve

    if spec == "tiny":
        raise QuantbenchError("--model tiny has no sentence-transformers files; tests build one with tiny_sentence_encoder()")
    source, local = _resolve(spec, cache_dir)
    folder = Path(source)
    if not local:
        raise QuantbenchError(f"--model {spec}: the embedding task reads a local sentence-transformers folder "
                              "(its modules.json and pooling config); download it first, e.g. with "
                              "huggingface-cli download, and pass the folder")
    pooling = read_pooling(folder)
    with _quiet_hf():
        try:
            try:  # the BERT-family poolers are never used by sentence-transformers: not loading them saves a Linear
                encoder = AutoModel.from_pretrained(source, local_files_only=True, dtype=torch.float32,
                                                    add_pooling_layer=False)
            except TypeError:
                encoder = AutoModel.from_pretrained(source, local_files_only=True, dtype=torch.float32)
        except OSError as exc:
            raise _load_error(spec, exc) from None
    return as_sentence_encoder(encoder, pooling), pooling, folder


def tiny_sentence_encoder(seed: int = 0, pooling: Pooling = Pooling()) -> torch.nn.Module:
    """A 2-layer, 32-wide random BERT encoder with mean pooling and normalisation, for tests."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    return as_sentence_encoder(BertModel(config, add_pooling_layer=False), pooling)
