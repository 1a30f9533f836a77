from __future__ import annotations

from pathlib import Path

import pytest
import torch

from quant_impl.errors import QuantbenchError
from quant_impl.models import bundled_model_path, load_model, load_tokenizer, tiny_model


def test_tiny_model_runs_a_batch() -> None:
    model = tiny_model()
    logits = model(input_ids=torch.randint(0, 1000, (3, 16)), attention_mask=torch.ones(3, 16, dtype=torch.long)).logits
    assert logits.shape == (3, 2) and logits.dtype == torch.float32


def test_tiny_model_is_seeded() -> None:
    a, b, c = tiny_model(seed=1), tiny_model(seed=1), tiny_model(seed=2)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_bundled_minilm_loads_offline() -> None:
    assert (bundled_model_path() / "model.safetensors").is_file()
    model = load_model("bundled")
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    params = sum(p.numel() for p in model.parameters())
    assert 22_500_000 < params < 23_000_000  # 22.7M: pretrained encoder plus a new 2-way head
    tokenizer = load_tokenizer("bundled")
    assert tokenizer("a great film")["input_ids"][0] == tokenizer.cls_token_id


def test_local_directory_round_trip(tmp_path: Path) -> None:
    model = tiny_model(seed=3)
    model.save_pretrained(tmp_path)
    reloaded = load_model(str(tmp_path))
    ids = torch.randint(0, 1000, (2, 12))
    assert torch.equal(model(input_ids=ids).logits, reloaded(input_ids=ids).logits)


def test_missing_local_directory(tmp_path: Path) -> None:
    with pytest.raises(QuantbenchError, match="no such model directory.*'bundled'"):
        load_model(str(tmp_path / "nope"))


def test_unreachable_hub_id_suggests_bundled() -> None:
    # conftest sets HF_HUB_OFFLINE=1 and blocks sockets: the hub is unreachable, as on this machine.
    with pytest.raises(QuantbenchError, match="--model bert-base-uncased: could not load it.*--model bundled"):
        load_model("bert-base-uncased")
    with pytest.raises(QuantbenchError, match="--model bert-base-uncased: could not load it"):
        load_tokenizer("bert-base-uncased")
