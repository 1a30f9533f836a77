from __future__ import annotations

from pathlib import Path

import pytest

from quant_impl.config import RunConfig


@pytest.fixture
def smoke_cfg(tmp_path: Path) -> RunConfig:
    """The smoke profile (tiny model, a few dozen real reviews) with a private cache."""
    return RunConfig.load("smoke", {"cache_dir": tmp_path / "cache"})
