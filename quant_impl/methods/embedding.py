"""Int8 word embeddings: one symmetric int8 row per token with one float32 scale per row.

The word-embedding table is half of MiniLM's bytes (30522 x 384 FP32 = 47 MB) and every Linear-only method
leaves it in FP32. :func:`quantize_word_embeddings` swaps it, in place, for an :class:`Int8RowEmbedding` that
ships the int8 table and the scales (a quarter of the FP32 bytes, plus 4 bytes a row) and dequantizes only the
rows a batch looks up. It is a standalone step on the Hugging Face model, to run before any other transform;
the forward is plain torch ops (gather, cast, multiply), so the model still exports with ``torch.export`` and
runs on any device.

Example:
    >>> from quant_impl.models import tiny_model
    >>> info = quantize_word_embeddings(tiny_model(vocab_size=100))
    >>> info["scheme"], info["num_embeddings"], info["bytes_ratio"]  # 1/4 + a float32 scale per 32 values
    ('int8 per-row symmetric', 100, 0.28125)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from quant_impl import qmath

# Symmetric signed int8, one scale per row (axis 0), torch's/torchao's scale convention amax / 127.5.
ROW_SPEC = qmath.QuantSpec(bits=8, signed=True, symmetric=True, axis=0)


class Int8RowEmbedding(torch.nn.Module):
    """An embedding table stored as int8 rows with one float32 scale per row (symmetric, zero point 0).

    ``forward(ids)`` gathers the int8 rows of ``ids`` and their scales and returns ``row * scale`` in float32:
    exactly ``qmath.dequantize`` of the looked-up rows. The state_dict holds ``weight_int8`` (int8,
    ``(num_embeddings, embedding_dim)``) and ``scale`` (float32, ``(num_embeddings,)``), nothing else.
    """

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor, padding_idx: int | None = None) -> None:
        super().__init__()
        if weight_int8.dtype != torch.int8 or weight_int8.dim() != 2:
            raise ValueError(
                f"weight_int8 must be a 2-D int8 tensor, got {weight_int8.dtype} {tuple(weight_int8.shape)}"
            )
        if scale.dtype != torch.float32 or scale.shape != weight_int8.shape[:1]:
            raise ValueError(
                f"scale must be float32 of shape ({weight_int8.shape[0]},), got {scale.dtype} {tuple(scale.shape)}"
            )
        self.num_embeddings, self.embedding_dim = weight_int8.shape
        self.padding_idx = padding_idx  # kept for reference: the table is frozen, so it changes nothing here
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scale", scale)

    @classmethod
    def from_embedding(cls, embedding: torch.nn.Embedding) -> Int8RowEmbedding:
        """Quantize an ``nn.Embedding``'s table per row with :data:`ROW_SPEC` (via ``quant_impl.qmath``)."""
        if not isinstance(embedding, torch.nn.Embedding):
            raise ValueError(f"expected an nn.Embedding, got {type(embedding).__name__}")
        if embedding.max_norm is not None:
            raise ValueError("an nn.Embedding with max_norm renormalises rows at lookup; it cannot be stored as int8")
        weight = embedding.weight.detach().to("cpu", torch.float32)
        qp = qmath.qparams_from_tensor(weight, ROW_SPEC)
        device = embedding.weight.device
        return cls(qmath.quantize(weight, qp).to(device), qp.scale.to(device), embedding.padding_idx)

    def dequantized_weight(self) -> torch.Tensor:
        """The whole table in float32 (for tests and inspection; ``forward`` never builds it)."""
        return self.weight_int8.to(torch.float32) * self.scale.unsqueeze(1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(input_ids, self.weight_int8)
        # in the scale's dtype: float32 as built, bf16 once a bf16 model (int4's tinygemm path) casts its buffers
        return rows.to(self.scale.dtype) * F.embedding(input_ids, self.scale.unsqueeze(1))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 per-row, {str(self.scale.dtype).removeprefix('torch.')} scales"


def quantize_word_embeddings(model: Any) -> dict[str, Any]:
    """Replace ``model``'s input (word) embeddings by an :class:`Int8RowEmbedding`, in place; return what was done.

    Works on any Hugging Face model (``get_input_embeddings``/``set_input_embeddings``) whose input embedding is
    an ``nn.Embedding``. Refuses a table tied to the output embeddings (an LM head would lose its weight).
    The returned dict is JSON-ready: the scheme, the table's shape and the raw bytes of the table before
    (FP32) and after (int8 + scales), and their ratio.
    """
    embedding = model.get_input_embeddings()
    if not isinstance(embedding, torch.nn.Embedding):
        raise ValueError(
            f"quantize_word_embeddings needs an nn.Embedding input embedding, got {type(embedding).__name__} "
            "(already quantized?)"
        )
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and getattr(output, "weight", None) is embedding.weight:
        raise ValueError("the input embeddings are tied to the output embeddings; quantizing them would untie the head")
    fp32_bytes = embedding.weight.numel() * 4
    quantized = Int8RowEmbedding.from_embedding(embedding)
    model.set_input_embeddings(quantized)
    int8_bytes = embedding_bytes(quantized)
    return {
        "scheme": "int8 per-row symmetric",
        "scale_dtype": "float32",
        "num_embeddings": quantized.num_embeddings,
        "embedding_dim": quantized.embedding_dim,
        "fp32_bytes": fp32_bytes,
        "int8_bytes": int8_bytes,
        "bytes_ratio": int8_bytes / fp32_bytes,
    }


def word_embeddings(model: Any, quantize: bool, owner: str) -> dict[str, Any] | str:
    """The ``word_embeddings`` setting of a method: quantize the table in place when asked, else ``"fp32"``.

    Method configs refuse a non-bool ``quantize_embedding`` when they are made (``options.check_bool``); this
    check is for other callers, and ``owner`` names the config in its error.
    """
    if not isinstance(quantize, bool):
        raise ValueError(f"{owner}.quantize_embedding must be true or false, got {quantize!r}")
    return quantize_word_embeddings(model) if quantize else "fp32"


def embedding_bytes(embedding: Int8RowEmbedding) -> int:
    """Raw bytes of the int8 table plus its scales (what the state_dict ships, before torch.save's framing)."""
    return sum(t.numel() * t.element_size() for t in (embedding.weight_int8, embedding.scale))
