"""``qat-int8``: quantization-aware training from the FP32 baseline, then a real int8 model like static-int8.

torch.export -> torchao ``prepare_qat_pt2e`` (fake quantization of weights and activations) -> a short
fine-tune (seed report: lr 1e-5, batch 16) -> ``convert_pt2e`` -> Inductor with freezing. The trained QAT
state is cached beside the baseline, keyed by the baseline and this config, and written atomically.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from quant_impl.cache import cache_key, entry_lock, trusted, write_manifest
from quant_impl.hardware import Hardware
from quant_impl.methods import _pt2e
from quant_impl.methods._common import export_attention
from quant_impl.methods._pt2e_build import Pt2eOptions, build
from quant_impl.methods.options import check_min, check_positive
from quant_impl.methods.kernels import Kernel
from quant_impl.methods.registry import QuantizedModel, register_method


@dataclass(frozen=True)
class QatInt8Config(Pt2eOptions):
    """``quantize_embedding``: the int8 table is a buffer, so it stays frozen during QAT."""

    learning_rate: float = 1e-5
    batch_size: int = 16
    train_size: int | None = None  # reviews of the training split used; None: the profile's qat_train_size
    epochs: int = 1
    seed: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "learning_rate")
        for field in ("batch_size", "epochs"):
            check_min(self, 1, field)
        check_min(self, 1, "train_size", may_be_none=("train_size",))


# The cache folder of trained states (`quantbench cache` lists and clears it).
QAT_CACHE_KIND = ("qat", "trained quantization-aware state of qat-int8")

@register_method(
    "qat-int8",
    QatInt8Config,
    devices=("cpu",),
    unsupported_reason="it converts to X86InductorQuantizer's x86 CPU int8 (oneDNN) kernels; no CUDA lowering",
    threshold=0.5,
    min_sqnr_db=20.0,
    section="4.4",
    precision="int8",
    seed={"row": "QAT INT8", "compression": (3.5, 4.0), "loss": (0.0, 0.3), "speedup": (1.8, 2.2)},
    order=30,
    cache_kind=QAT_CACHE_KIND,
    needs_labels="it fine-tunes with fake quantization on the task's labels (cross-entropy through the head); an "
                 "objective without labels, e.g. distilling the FP32 embeddings, is not implemented",
    kernel=Kernel("native", "oneDNN qlinear u8 x s8, QAT-trained static scales (pt2e + Inductor)"),
)
def _qat_int8_transform(baseline: Any, hardware: Hardware, config: QatInt8Config) -> QuantizedModel:
    """Int8 weights and activations, fine-tuned with fake quantization before conversion."""
    state_path = qat_state_path(baseline, config)

    def train_and_convert(graph: torch.fx.GraphModule, quantizer: Any,
                          example: Any) -> tuple[torch.fx.GraphModule, dict]:
        with entry_lock(state_path):
            state, cached = trusted(state_path, lambda p: torch.load(p, weights_only=True))

            def train_or_load(prepared: torch.fx.GraphModule) -> None:
                if cached:
                    prepared.load_state_dict(state)
                    return
                _train(prepared, baseline, config)
                _save_atomic(prepared.state_dict(), state_path)
                write_manifest(state_path)

            converted = _pt2e.quantize(graph, quantizer, train=train_or_load)
        return converted, {"qat_examples": _train_rows(baseline, config), "qat_state": str(state_path),
                           "qat_state_cached": cached}

    return build("qat-int8", baseline, hardware, config, quantizer={"is_qat": True}, step=train_and_convert,
                 engine="pt2e prepare_qat_pt2e(X86InductorQuantizer) + inductor freezing",
                 activations="uint8 per-tensor affine, fake-quantized during training")


def qat_state_path(baseline: Any, config: QatInt8Config) -> Path:
    """Cache file of the trained QAT state for this baseline checkpoint and config."""
    # training runs the exported attention; "fused-bf16" only swaps it after conversion, so it shares sdpa's state
    key = cache_key({**asdict(config), "attention": export_attention(config.attention),
                     "rows": _train_rows(baseline, config)})
    return baseline.config.cache_dir / QAT_CACHE_KIND[0] / f"{baseline.checkpoint.name}-{key}.pt"


def _train_rows(baseline: Any, config: QatInt8Config) -> int:
    rows = len(baseline.data["train"])
    wanted = config.train_size if config.train_size is not None else baseline.config.qat_train_size
    return min(rows, wanted) if wanted else rows


def _train(prepared: torch.fx.GraphModule, baseline: Any, config: QatInt8Config) -> None:
    from torchao.quantization.pt2e import move_exported_model_to_train

    torch.manual_seed(config.seed)
    split = baseline.data["train"].select(range(_train_rows(baseline, config)))
    loader = torch.utils.data.DataLoader(
        split, batch_size=config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(config.seed)
    )
    steps = config.epochs * len(loader)
    optimizer = torch.optim.AdamW(prepared.parameters(), lr=config.learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * steps), steps)
    move_exported_model_to_train(prepared)
    with tqdm(total=steps, desc="Quantization-aware training", unit="step") as bar:
        for _epoch in range(config.epochs):
            for batch in loader:
                logits = prepared(batch["input_ids"], batch["attention_mask"])
                loss = torch.nn.functional.cross_entropy(logits, batch["label"])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(prepared.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")


def _save_atomic(state: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
