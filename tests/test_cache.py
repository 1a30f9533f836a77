from __future__ import annotations

import json
from pathlib import Path

import pytest

from quant_impl.cache import atomic_dir, cache_key, write_json_atomic


def test_cache_key_ignores_key_order_and_sees_values() -> None:
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})


def test_atomic_dir_publishes_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with atomic_dir(final) as tmp:
        (tmp / "weights").write_text("w")
        assert not final.exists()
    assert (final / "weights").read_text() == "w"
    assert list(tmp_path.iterdir()) == [final]


def test_atomic_dir_leaves_nothing_when_interrupted(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(final) as tmp:
            (tmp / "half").write_text("x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_write_json_atomic_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "r.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


class _Tokenizer:
    def __init__(self, vocab: int = 100, name: str = "tok") -> None:
        self.vocab, self.name_or_path = vocab, name

    def __len__(self) -> int:
        return self.vocab


def _package_copy(tmp_path: Path) -> Path:
    import shutil

    import quant_impl

    source = Path(quant_impl.__file__).parent
    target = tmp_path / "quant_impl"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_evaluation_key_covers_every_input(tmp_path: Path) -> None:
    """Each thing that can change a cached evaluation changes its key: sources, settings, tokenizer, method config."""
    import dataclasses
    from types import SimpleNamespace

    from quant_impl.cache_keys import EVALUATION_SOURCES, evaluation_key, evaluation_sources
    from quant_impl.config import RunConfig

    package = _package_copy(tmp_path)
    cfg = RunConfig.load("smoke", {"cache_dir": tmp_path / "cache"})
    baseline = SimpleNamespace(checkpoint=Path("bundled-0123"), tokenizer=_Tokenizer())
    method_config = {"_type": "StaticInt8Config", "observer": "histogram"}

    def key(cfg=cfg, baseline=baseline, method_config=method_config) -> str:
        return evaluation_key(cfg, baseline, method_config, package)

    reference = key()
    assert key() == reference
    names = {p.relative_to(package).as_posix() for p in evaluation_sources(package)}
    for required in ("data.py", "models.py", "qmath.py", "measure/accuracy.py", "methods/static_int8.py"):
        assert required in names, f"{required} is not in EVALUATION_SOURCES {EVALUATION_SOURCES}"
    for name in sorted(names):
        path = package / name
        original = path.read_bytes()
        path.write_bytes(original + b"\n# changed\n")
        assert key() != reference, f"a change to {name} leaves the evaluation key as it was"
        path.write_bytes(original)
    assert key() == reference
    for field, value in (("max_length", cfg.max_length + 8), ("truncation", "head"), ("head_tokens", 7),
                         ("eval_batch_size", cfg.eval_batch_size + 1), ("test_size", cfg.test_size + 1),
                         ("seed", cfg.seed + 1), ("model", "tiny-other"), ("dataset", str(tmp_path / "x.csv"))):
        if field == "head_tokens" and cfg.truncation != "head+tail":
            continue
        assert key(cfg=dataclasses.replace(cfg, **{field: value})) != reference, field
    assert key(baseline=SimpleNamespace(checkpoint=Path("bundled-4567"), tokenizer=_Tokenizer())) != reference
    assert key(baseline=SimpleNamespace(checkpoint=Path("bundled-0123"), tokenizer=_Tokenizer(101))) != reference
    assert key(method_config={**method_config, "observer": "minmax"}) != reference
