"""A --dataset file that is empty or not UTF-8 is named as such, with the fix (issue 23 item 8), instead of datasets'
"An error occurred while generating the dataset" or 'Instruction "train" corresponds to no data!'."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from quant_impl import data
from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError

ROWS = "text,label\nun film très réussi,1\na dull film,0\n"


def _fails(cfg: RunConfig, path: Path, match: str) -> str:
    with pytest.raises(QuantbenchError, match=match) as exc:
        data.load_splits(cfg.replace(dataset=str(path)))
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_latin1_csv_names_the_byte_and_the_fix(tmp_path: Path, smoke_cfg: RunConfig) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(ROWS.encode("latin-1"))
    offset = ROWS.encode("latin-1").index(b"\xe8")
    message = _fails(smoke_cfg, path, rf"{path} is not UTF-8: byte 0xe8 at offset {offset} \(line 2\)")
    assert f"iconv -f latin1 -t utf-8 {path} > {tmp_path / 'reviews.utf8.csv'}" in message


def test_custom_task_reads_the_same_check(tmp_path: Path, smoke_cfg: RunConfig) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_bytes('{"text": "café", "label": "a"}\n'.encode("cp1252"))
    with pytest.raises(QuantbenchError, match=r"mine.jsonl is not UTF-8: byte 0xe9 at offset 13 \(line 1\)"):
        data.task_of(smoke_cfg.replace(task="custom", dataset=str(path)))


def test_utf16_file_is_told_to_convert_from_utf16(tmp_path: Path, smoke_cfg: RunConfig) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(ROWS.encode("utf-16"))
    _fails(smoke_cfg, path, "byte 0xff at offset 0 .*iconv -f utf-16 -t utf-8")


def test_bad_byte_after_the_first_block_and_a_character_across_blocks(tmp_path: Path, smoke_cfg: RunConfig) -> None:
    """The check decodes a block at a time: a character split between blocks is fine, offsets count every block."""
    head = b"text,label\n" + b"a" * ((1 << 20) - 12) + "é".encode() + b",1\n"  # é straddles the 1 MiB boundary
    assert head[(1 << 20) - 1 : (1 << 20) + 1] == "é".encode()
    path = tmp_path / "big.csv"
    path.write_bytes(head + b"caf\xe9,0\n")
    _fails(smoke_cfg, path, rf"byte 0xe9 at offset {len(head) + 3} \(line 3\)")
    path.write_bytes(head + b"caf\xc3")  # a character cut off by the end of the file
    _fails(smoke_cfg, path, rf"byte 0xc3 at offset {len(head) + 3} \(line 3\)")


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl", "empty.json", "empty.parquet"])
def test_zero_byte_file_is_empty(tmp_path: Path, smoke_cfg: RunConfig, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    _fails(smoke_cfg, path, rf"{path} is empty \(0 bytes\); give it rows with 'text'")


def test_header_only_csv_and_blank_jsonl_are_empty(tmp_path: Path, smoke_cfg: RunConfig) -> None:
    (tmp_path / "header.csv").write_text("text,label\n", encoding="utf-8")
    _fails(smoke_cfg, tmp_path / "header.csv", r"header.csv is empty: it has no rows \(at most a header\)")
    (tmp_path / "blank.jsonl").write_text("\n\n  \n", encoding="utf-8")
    _fails(smoke_cfg, tmp_path / "blank.jsonl", r"blank.jsonl is empty \(only blank lines\)")
    with pytest.raises(QuantbenchError, match="header.csv is empty"):
        data.task_of(smoke_cfg.replace(task="custom", dataset=str(tmp_path / "header.csv")))


def test_utf8_files_with_accents_or_a_bom_still_load(tmp_path: Path, smoke_cfg: RunConfig) -> None:
    rows = ["text,label"] + [f"critique n°{i} — {'très bien' if i % 2 else 'nul'},{i % 2}" for i in range(120)]
    path = tmp_path / "reviews.csv"
    path.write_bytes(codecs.BOM_UTF8 + "\n".join(rows).encode("utf-8"))
    splits = data.load_splits(smoke_cfg.replace(dataset=str(path), train_size=60, test_size=30, calibration_size=10))
    assert {k: len(v) for k, v in splits.items()} == {"train": 60, "calibration": 10, "test": 30}
    assert any("très bien" in t for t in splits["train"]["text"])
