"""Every method on an MPNet encoder (the architecture of ``--model bundled-base``): it builds and stays close to
FP32, or it declares why not. A tiny random MPNet built in code, never the 438 MB weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import MPNetConfig, MPNetForSequenceClassification

from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError
from quant_impl.hardware import get_hardware
from quant_impl.methods import get_method, method_names
from quant_impl.models import load_tokenizer
from quant_impl.qmath import sqnr_db
from quant_impl.session.store import BenchSession

# MPNet-specific: methods that cannot run on it, with the reason they must give (none today; keep the form).
NOT_ON_MPNET: dict[str, str] = {}


@pytest.fixture(scope="module")
def mpnet_session(tmp_path_factory: pytest.TempPathFactory) -> BenchSession:
    folder: Path = tmp_path_factory.mktemp("tiny-mpnet")
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=30527, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, num_labels=2)
    MPNetForSequenceClassification(config).save_pretrained(folder)
    load_tokenizer("tiny").save_pretrained(folder)
    cfg = RunConfig.load("smoke", {"model": str(folder), "cache_dir": tmp_path_factory.mktemp("cache")})
    return BenchSession(cfg)


@pytest.mark.parametrize("name", method_names())
def test_every_method_runs_on_mpnet_or_says_why(name: str, mpnet_session: BenchSession) -> None:
    reason = get_method(name).supports(get_hardware("cpu"))
    if reason:
        pytest.skip(reason)
    baseline = mpnet_session.baseline
    assert type(baseline.model).__name__ == "MPNetForSequenceClassification"
    rows = baseline.data["test"][:8]
    batch = rows["input_ids"], rows["attention_mask"]
    if name in NOT_ON_MPNET:
        with pytest.raises(QuantbenchError, match=NOT_ON_MPNET[name]):
            mpnet_session.built(name, get_hardware("cpu"))
        return
    built = mpnet_session.built(name, get_hardware("cpu"))
    with torch.inference_mode():
        reference = baseline.model(input_ids=batch[0], attention_mask=batch[1]).logits
    logits = built(*batch).float()
    assert logits.shape == (8, 2)
    assert sqnr_db(reference, logits) >= get_method(name).sqnr_bar(built.settings)
    assert built(batch[0][:1], batch[1][:1]).shape == (1, 2)
