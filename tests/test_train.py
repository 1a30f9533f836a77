from __future__ import annotations

import json
import warnings

import pytest
import torch

from quant_impl import train
from quant_impl.cache_entries import select
from quant_impl.config import RunConfig
from quant_impl.data import load_imdb
from quant_impl.errors import QuantbenchError
from quant_impl.measure.machine import FORCE_CPU_CLASS_ENV
from quant_impl.models import load_model, load_tokenizer


def test_smoke_fine_tune_caches_and_reuses(smoke_cfg: RunConfig) -> None:
    first = train.get_baseline(smoke_cfg)
    assert not first.cached
    assert first.eval.examples == smoke_cfg.test_size and len(first.eval.predictions) == smoke_cfg.test_size
    assert first.train.steps == smoke_cfg.train_size // smoke_cfg.batch_size
    files = {p.name for p in first.checkpoint.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", train.META_FILE} <= files
    meta = json.loads((first.checkpoint / train.META_FILE).read_text())
    assert meta["config"]["profile"] == "smoke" and meta["eval"]["accuracy"] == first.eval.accuracy

    second = train.get_baseline(smoke_cfg)
    assert second.cached and second.checkpoint == first.checkpoint
    assert second.eval == first.eval
    for name, weight in first.model.state_dict().items():
        assert torch.equal(weight, second.model.state_dict()[name]), name


def test_fine_tune_changes_weights_deterministically(smoke_cfg: RunConfig) -> None:
    tokenizer = load_tokenizer(smoke_cfg.model)
    split = load_imdb(smoke_cfg, tokenizer)["train"]
    models = [load_model("tiny", seed=smoke_cfg.seed) for _ in range(2)]
    before = models[0].classifier.weight.detach().clone()
    for model in models:
        train.fine_tune(model, split, smoke_cfg)
    assert not torch.equal(before, models[0].classifier.weight)
    assert torch.equal(models[0].classifier.weight, models[1].classifier.weight)


def test_interrupted_fine_tune_leaves_no_cache_entry(smoke_cfg: RunConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.TrainStats, "__init__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.get_baseline(smoke_cfg)
    assert select(smoke_cfg.cache_dir, "baselines") == select(smoke_cfg.cache_dir, "partial") == []


def test_interrupted_save_leaves_no_cache_entry(smoke_cfg: RunConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "write_json_atomic", interrupted)  # the last write into the entry
    with pytest.raises(KeyboardInterrupt):
        train.get_baseline(smoke_cfg)
    assert select(smoke_cfg.cache_dir, "baselines") == select(smoke_cfg.cache_dir, "partial") == []


def test_cache_key_tracks_what_shapes_the_weights(smoke_cfg: RunConfig) -> None:
    path = train.checkpoint_path(smoke_cfg)
    assert train.checkpoint_path(smoke_cfg.replace(eval_batch_size=7, threads=1)) == path
    for change in ({"learning_rate": 1e-4}, {"seed": 1}, {"train_size": 32}, {"max_length": 64},
                   {"truncation": "head"}, {"test_size": 40}, {"train_precision": "bf16"}):
        assert train.checkpoint_path(smoke_cfg.replace(**change)) != path, change
    # fp32 checkpoints cached before --train-precision existed keep their keys
    assert "train_precision" not in train._key_parts(smoke_cfg)["hyper"]


def test_bf16_fine_tune_trains_fp32_weights_deterministically(smoke_cfg: RunConfig, monkeypatch) -> None:
    monkeypatch.setattr(train, "effective_cpu_class", lambda: "avx512-bf16")  # native here: nothing to warn about
    split = load_imdb(smoke_cfg, load_tokenizer(smoke_cfg.model))["train"]
    bf16 = smoke_cfg.replace(train_precision="bf16")
    models = [load_model("tiny", seed=smoke_cfg.seed) for _ in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train.fine_tune(models[0], split, bf16)
        train.fine_tune(models[1], split, bf16)
    train.fine_tune(models[2], split, smoke_cfg)
    assert all(p.dtype == torch.float32 for p in models[0].parameters())  # autocast: the master weights stay fp32
    assert torch.equal(models[0].classifier.weight, models[1].classifier.weight)
    # the forward pass really ran in bf16: its updates differ from the fp32 fine-tune's
    assert not torch.equal(models[0].classifier.weight, models[2].classifier.weight)


def test_bf16_fine_tune_says_where_bf16_is_emulated(smoke_cfg: RunConfig, monkeypatch) -> None:
    monkeypatch.setenv(FORCE_CPU_CLASS_ENV, "avx2")  # the forced-fallback switch: as on a CPU without bf16
    split = load_imdb(smoke_cfg, load_tokenizer(smoke_cfg.model))["train"]
    with pytest.warns(UserWarning, match=r"bf16 is emulated on this CPU \(class avx2"):
        train.fine_tune(load_model("tiny", seed=smoke_cfg.seed), split, smoke_cfg.replace(train_precision="bf16"))


def test_freeze_layers_trains_only_the_layers_above(smoke_cfg: RunConfig) -> None:
    split = load_imdb(smoke_cfg, load_tokenizer(smoke_cfg.model))["train"]
    model = load_model("tiny", seed=smoke_cfg.seed)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train.fine_tune(model, split, smoke_cfg.replace(freeze_layers=1))
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    frozen = {name for name in before if "embeddings." in name or ".layer.0." in name}
    assert frozen and not moved & frozen, moved & frozen
    # every parameter above the frozen prefix trained (the tiny BERT has 2 layers, a pooler and a classifier)
    assert moved == set(before) - frozen, set(before) - frozen - moved
    # the returned classifier is an ordinary one again (QAT and the methods fine-tune or export it as a whole)
    assert all(p.requires_grad for p in model.parameters())


def test_freeze_layers_keys_its_checkpoint_and_refuses_too_many(smoke_cfg: RunConfig) -> None:
    assert "freeze_layers" not in train._key_parts(smoke_cfg)["hyper"]  # older checkpoints keep their keys
    assert train.checkpoint_path(smoke_cfg.replace(freeze_layers=1)) != train.checkpoint_path(smoke_cfg)
    split = load_imdb(smoke_cfg, load_tokenizer(smoke_cfg.model))["train"]
    with pytest.raises(QuantbenchError, match=r"--freeze-layers.*2 encoder layers; choose 0 to 2"):
        train.fine_tune(load_model("tiny", seed=smoke_cfg.seed), split, smoke_cfg.replace(freeze_layers=3))
    with pytest.raises(QuantbenchError, match="freeze_layers must be >= 0"):
        RunConfig.load("smoke", overrides={"freeze_layers": -1})


def test_train_precision_refuses_an_unknown_type() -> None:
    with pytest.raises(QuantbenchError, match=r"--train-precision.*'fp32', 'bf16'"):
        RunConfig.load("smoke", overrides={"train_precision": "fp16"})


def test_unreadable_cache_entry_is_set_aside_and_rebuilt(smoke_cfg: RunConfig, caplog) -> None:
    path = train.checkpoint_path(smoke_cfg)
    path.mkdir(parents=True)
    (path / train.META_FILE).write_text("{not json")
    with caplog.at_level("WARNING"):
        base = train.get_baseline(smoke_cfg)
    assert not base.cached and base.checkpoint == path and json.loads((path / train.META_FILE).read_text())
    assert "is damaged (reading it failed" in caplog.text
    assert [e.path.name.startswith(f".{path.name}.damaged-") for e in select(smoke_cfg.cache_dir, "partial")] == [True]


# ------------------------------------------------------------------- a fine-tuned model used as given
def _saved(tmp_path, model, name: str = "mine"):
    folder = tmp_path / name
    model.save_pretrained(folder)
    load_tokenizer("tiny").save_pretrained(folder)
    return folder


def test_epochs_zero_evaluates_the_given_classifier_and_never_trains(tmp_path, smoke_cfg: RunConfig) -> None:
    torch.manual_seed(7)
    given = load_model("tiny", seed=7)
    folder = _saved(tmp_path, given)
    cfg = smoke_cfg.replace(model=str(folder), epochs=0)
    first = train.get_baseline(cfg)
    assert not first.cached and first.train.steps == 0 and first.train.seconds == 0.0
    assert first.summary()["train_examples"] == 0 and first.eval.examples == cfg.test_size
    for name, weight in given.state_dict().items():  # head included: nothing re-initialised, nothing trained
        assert torch.equal(weight, first.model.state_dict()[name]), name
    again = train.get_baseline(cfg)
    assert again.cached and again.checkpoint == first.checkpoint and again.eval == first.eval


def test_epochs_zero_refuses_a_head_that_does_not_fit_the_task(tmp_path, smoke_cfg: RunConfig) -> None:
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    three = BertForSequenceClassification(BertConfig(**small, num_labels=3))
    with pytest.raises(QuantbenchError, match=r"head has 3 labels \(LABEL_0, LABEL_1, LABEL_2\) but the data has 2 "
                                              r"\(neg, pos\)"):
        train.get_baseline(smoke_cfg.replace(model=str(_saved(tmp_path, three, "three")), epochs=0))
    swapped = BertForSequenceClassification(BertConfig(**small, id2label={0: "pos", 1: "neg"}, label2id={}))
    with pytest.raises(QuantbenchError, match="id2label does not match the data's labels .0 = pos vs neg, 1 = neg vs pos"):
        train.get_baseline(smoke_cfg.replace(model=str(_saved(tmp_path, swapped, "swapped")), epochs=0))
    encoder = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    with pytest.raises(QuantbenchError, match="not a fine-tuned sequence classifier .architectures: BertModel"):
        train.get_baseline(smoke_cfg.replace(model=str(_saved(tmp_path, encoder, "encoder")), epochs=0))


def test_fine_tuning_a_classifier_of_another_task_gives_it_a_new_head(tmp_path, smoke_cfg: RunConfig) -> None:
    from quant_impl.models import tiny_model

    three = tiny_model(seed=5, labels=("a", "b", "c"))
    base = train.get_baseline(smoke_cfg.replace(model=str(_saved(tmp_path, three, "three")), epochs=1))
    assert base.model.config.num_labels == 2 and base.model.config.id2label == {0: "neg", 1: "pos"}
    assert base.eval.examples == smoke_cfg.test_size
