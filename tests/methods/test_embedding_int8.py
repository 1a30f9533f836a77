"""Int8 per-row word embeddings (quant_impl/methods/embedding.py): the table is qmath's, lookups are exact,
the bytes are a quarter of FP32's, and a model using it still runs close to FP32 and exports."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from quant_impl import qmath
from quant_impl.measure.size import serialized_bytes
from quant_impl.methods._common import LogitsModel, fp32_copy
from quant_impl.methods.embedding import ROW_SPEC, Int8RowEmbedding, embedding_bytes, quantize_word_embeddings

EPS32 = torch.finfo(torch.float32).eps
# Logit SQNR vs FP32 of the tiny model with only its word embeddings in int8: measured 60.1 dB (8-bit rows with
# one scale each, then LayerNorm and two layers that barely react on this tiny model); 35 dB is a loose bound.
MIN_TINY_SQNR_DB = 35.0


def _embedding(rows: int = 2000, dim: int = 64, seed: int = 0) -> torch.nn.Embedding:
    torch.manual_seed(seed)
    embedding = torch.nn.Embedding(rows, dim, padding_idx=0)
    with torch.no_grad():
        embedding.weight.normal_(0.0, 0.05)
        embedding.weight[0] = 0.0  # the padding row: an all-zero row gets the smallest scale and stays zero
        embedding.weight[5, 7] = 3.0  # an outlier only widens its own row's scale
    return embedding


def test_table_is_qmath_per_row_quantization() -> None:
    fp32 = _embedding()
    quantized = Int8RowEmbedding.from_embedding(fp32)
    assert ROW_SPEC == qmath.QuantSpec(bits=8, signed=True, symmetric=True, axis=0)
    qp = qmath.qparams_from_tensor(fp32.weight.detach(), ROW_SPEC)
    assert torch.equal(quantized.weight_int8, qmath.quantize(fp32.weight.detach(), qp))
    assert torch.equal(quantized.scale, qp.scale) and quantized.scale.dtype == torch.float32
    assert quantized.padding_idx == 0 and not quantized.weight_int8[0].any()
    # per row: |w - w'| <= s/2 (+ the float tolerance of tests/test_qmath.py)
    w, approx = fp32.weight.detach().double(), quantized.dequantized_weight().double()
    bound = quantized.scale.double().unsqueeze(1) / 2 + 2 * EPS32 * torch.maximum(w.abs(), approx.abs())
    assert bool(((w - approx).abs() <= bound).all())


def test_lookup_equals_the_dequantized_rows_exactly() -> None:
    fp32 = _embedding()
    quantized = Int8RowEmbedding.from_embedding(fp32)
    qp = qmath.qparams_from_tensor(fp32.weight.detach(), ROW_SPEC)
    table = qmath.dequantize(qmath.quantize(fp32.weight.detach(), qp), qp)
    ids = torch.tensor([[0, 5, 1999, 5], [7, 7, 3, 1]])
    out = quantized(ids)
    assert out.dtype == torch.float32 and out.shape == (2, 4, 64)
    assert torch.equal(out, table[ids])
    assert torch.equal(quantized(ids[0]), table[ids[0]])  # 1-D ids too


def test_state_dict_is_a_quarter_of_fp32_plus_the_scales() -> None:
    fp32 = _embedding(rows=2000, dim=64)
    quantized = Int8RowEmbedding.from_embedding(fp32)
    state = quantized.state_dict()
    assert set(state) == {"weight_int8", "scale"} and state["weight_int8"].dtype == torch.int8
    assert embedding_bytes(quantized) == 2000 * 64 + 2000 * 4
    # 1/4 of the FP32 table + 4 bytes a row (1/64 here); torch.save's framing adds a few hundred bytes
    ratio = serialized_bytes(state) / serialized_bytes(fp32.state_dict())
    assert 0.25 + 1 / 64 <= ratio <= 0.25 + 1 / 64 + 0.01


def test_quantize_word_embeddings_on_the_tiny_model(tiny_baseline, tiny_batch) -> None:
    model = fp32_copy(tiny_baseline)
    info = quantize_word_embeddings(model)
    assert isinstance(model.get_input_embeddings(), Int8RowEmbedding)
    assert model.bert.embeddings.word_embeddings is model.get_input_embeddings()
    assert info["scheme"] == "int8 per-row symmetric" and info["scale_dtype"] == "float32"
    assert (info["num_embeddings"], info["embedding_dim"]) == (30522, 32)
    assert info["fp32_bytes"] == 30522 * 32 * 4 and info["int8_bytes"] == 30522 * (32 + 4)
    assert info["bytes_ratio"] == 0.25 + 4 / (32 * 4)  # int8 rows + a float32 scale per 32 values
    with torch.inference_mode():
        reference = tiny_baseline.model(input_ids=tiny_batch[0], attention_mask=tiny_batch[1]).logits
        logits = model(input_ids=tiny_batch[0], attention_mask=tiny_batch[1]).logits
    assert qmath.sqnr_db(reference, logits) >= MIN_TINY_SQNR_DB
    assert isinstance(tiny_baseline.model.get_input_embeddings(), torch.nn.Embedding)  # the baseline is untouched
    with pytest.raises(ValueError, match="already quantized"):
        quantize_word_embeddings(model)


def test_int8_embedding_model_exports(tiny_baseline, tiny_batch) -> None:
    model = fp32_copy(tiny_baseline)
    quantize_word_embeddings(model)
    module = LogitsModel(model).eval()
    exported = torch.export.export(module, tiny_batch)
    with torch.inference_mode():
        assert torch.equal(exported.module()(*tiny_batch), module(*tiny_batch))
    assert exported.state_dict["model.bert.embeddings.word_embeddings.weight_int8"].dtype == torch.int8


def test_tied_or_unsupported_embeddings_are_refused() -> None:
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    with pytest.raises(ValueError, match="tied to the output embeddings"):
        quantize_word_embeddings(BertForMaskedLM(config))
    embedding = torch.nn.Embedding(10, 4, max_norm=1.0)
    with pytest.raises(ValueError, match="max_norm"):
        Int8RowEmbedding.from_embedding(embedding)
    with pytest.raises(ValueError, match="2-D int8"):
        Int8RowEmbedding(torch.zeros(3, 4), torch.ones(3))


@pytest.mark.parametrize(
    "method, options",
    [
        ("dynamic-int8", {}),
        ("dynamic-int8", {"engine": "torch-ao"}),
        ("static-int8", {"calibration_batches": 1}),
        ("qat-int8", {"train_size": 16}),
        ("int4-weight-only", {"kernel": "reference"}),  # tinygemm casts the table to bf16 (tested there)
    ],
)
def test_every_int8_and_int4_method_can_ship_an_int8_embedding(tiny_baseline, tiny_batch, method, options) -> None:
    """``quantize_embedding=true`` swaps the table before the method runs: the bytes drop by the table's 3/4
    less its scales, the settings say so, and the logits stay near the same method without it."""
    from quant_impl.hardware import get_hardware
    from quant_impl.methods import apply, make_config

    plain = apply(method, tiny_baseline, get_hardware("cpu"), make_config(method, {**options, "quantize_embedding": False}))
    shrunk = apply(method, tiny_baseline, get_hardware("cpu"), make_config(method, {**options, "quantize_embedding": True}))
    assert plain.settings["word_embeddings"] == "fp32"
    info = shrunk.settings["word_embeddings"]
    assert info["scheme"] == "int8 per-row symmetric" and shrunk.settings["config"]["_data"]["quantize_embedding"]
    saved = info["fp32_bytes"] - info["int8_bytes"]
    assert saved == 30522 * 32 * 4 - 30522 * (32 + 4)
    # the serialized sizes differ by the table's saving, within torch.save framing and per-tensor headers
    assert abs((plain.size_bytes - shrunk.size_bytes) - saved) <= 0.01 * saved
    with torch.inference_mode():
        assert qmath.sqnr_db(plain(*tiny_batch), shrunk(*tiny_batch)) >= MIN_TINY_SQNR_DB - 10


def test_quantize_embedding_must_be_a_bool() -> None:
    from quant_impl.errors import QuantbenchError
    from quant_impl.methods import make_config

    # Refused when the config is made (before any model work), naming the method and the field.
    with pytest.raises(QuantbenchError, match="static-int8.*StaticInt8Config.quantize_embedding must be true or false"):
        make_config("static-int8", {"quantize_embedding": "yes"})
    with pytest.raises(QuantbenchError, match="unknown key"):
        make_config("fp32", {"quantize_embedding": True})
