"""Inductor freezing is a setting of each compiled method's own compiles, never of the process: a method built
before another must not change how the other compiles (int4-weight-only's tinygemm graphs must not freeze)."""

from __future__ import annotations

import pytest
import torch
import torch._inductor.config as inductor_config
import torch._inductor.freezing as inductor_freezing

from quant_impl.hardware import get_hardware
from quant_impl.methods import apply
from quant_impl.methods._common import compiled_predictor


class _Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 8)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids) * attention_mask.unsqueeze(-1)).mean(1)


@pytest.fixture
def freezes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The freezing flag seen by each Inductor freeze pass (compile_fx imports ``freeze`` when it runs it)."""
    seen: list[bool] = []
    real = inductor_freezing.freeze

    def spy(*args, **kwargs):
        seen.append(inductor_config.freezing)
        return real(*args, **kwargs)

    monkeypatch.setattr(inductor_freezing, "freeze", spy)
    return seen


@pytest.mark.parametrize("before,freezing", [(False, True), (True, True), (False, False)])
def test_compiled_predictor_freezes_its_own_compiles_only(freezes, before, freezing) -> None:
    ids = torch.randint(0, 10, (2, 5), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 5, dtype=torch.long)
    with inductor_config.patch(freezing=before):
        predict = compiled_predictor(_Toy().eval(), (ids, mask), freezing=freezing)
        assert inductor_config.freezing is before
        # a float mask fails Dynamo's dtype guard: the recompile, at a later call, must freeze (or not) alike
        predict(ids, mask.float())
        assert inductor_config.freezing is before
    assert freezes == ([True, True] if freezing else [])


def test_building_a_compiled_method_leaves_the_process_setting(tiny_baseline, freezes) -> None:
    before = inductor_config.freezing
    apply("fp32-compiled", tiny_baseline, get_hardware("cpu"))
    assert inductor_config.freezing is before and freezes and all(freezes)
